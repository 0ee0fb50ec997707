//! The schema of results.json, the one record every `lore eval` run writes and
//! `lore eval compare` reads back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::judge::{Faithfulness, JudgeScores};
use crate::retrieve::{Fusion, SearchMode};

/// How an index is built: everything that changes what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexConfig {
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    /// The `embedding.provider` the store was built with.
    pub embedder: String,
}

/// The configuration of one run, as written to results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub label: String,
    pub qa: String,
    pub corpus: Vec<String>,
    /// The store searched; `None` means a fresh temporary one.
    pub store: Option<String>,
    pub index: IndexConfig,
    /// The dense embedder actually loaded (`None`: sparse-only).
    pub embedder_id: Option<String>,
    pub mode: SearchMode,
    /// The mode that really ran (dense modes fall back to sparse without an embedder).
    pub effective_mode: SearchMode,
    pub ks: Vec<usize>,
    pub chunks: usize,
    pub ingest_seconds: f64,
    pub search_seconds: f64,
    /// The query-time knobs of the run.
    #[serde(default)]
    pub query: Option<QueryKnobs>,
}

/// Query-time retrieval settings a run used (the `[retrieval]` keys a sweep varies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryKnobs {
    pub fusion: Fusion,
    pub dense_weight: f32,
    pub cut_instructions: bool,
    /// Absent in runs from before the knob existed (they weighed references as 1).
    #[serde(default)]
    pub reference_weight: Option<f32>,
}

/// One question's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub query: String,
    pub gold: String,
    /// 1-based rank of the first relevant section (distinct sections, as `lore search`
    /// returns them) within the largest k; `None` is a miss.
    pub rank: Option<usize>,
    /// The same among raw chunks.
    #[serde(default)]
    pub chunk_rank: Option<usize>,
    /// The relevant chunk shares its score with a chunk ranked above it.
    #[serde(default)]
    pub tied: bool,
    /// Sources (and pages) of the retrieved sections, best first.
    pub retrieved: Vec<String>,
}

/// Everything one run measured; serialised as results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub config: RunConfig,
    /// Section level (the gold page or section among the top k distinct sections).
    /// Recall keyed by k as a string, as JSON objects need.
    pub recall: BTreeMap<String, f64>,
    pub mrr: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    pub cases: Vec<CaseResult>,
    /// The same figures over raw chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_level: Option<LevelScores>,
    /// Answer metrics, when the run scored answers too (`lore eval answers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<AnswerReport>,
}

/// Recall, MRR and nDCG@10 at one level (sections or chunks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelScores {
    pub recall: BTreeMap<String, f64>,
    pub mrr: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
}

impl LevelScores {
    pub fn recall_at(&self, k: usize) -> Option<f64> {
        self.recall.get(&k.to_string()).copied()
    }
}

impl RunResult {
    /// Recall at `k`, when it was measured.
    pub fn recall_at(&self, k: usize) -> Option<f64> {
        self.recall.get(&k.to_string()).copied()
    }
}

/// One answered case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerCase {
    pub id: String,
    pub answer: String,
    pub grounded: bool,
    pub exact_match: Option<f64>,
    pub f1: Option<f64>,
    pub bleu: Option<f64>,
    /// The tutorial's multiple-choice score, when the reference is option letters.
    pub choice: Option<f64>,
    pub faithfulness: Faithfulness,
    pub judge: Option<JudgeScores>,
    /// Why the judge could not score this case.
    pub judge_error: Option<String>,
    /// Why the assistant gave no answer.
    pub error: Option<String>,
}

/// Answer metrics of a run: means over the cases that have each metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerReport {
    pub model: Option<String>,
    pub judge_model: Option<String>,
    pub exact_match: Option<f64>,
    pub f1: Option<f64>,
    pub bleu: Option<f64>,
    pub choice: Option<f64>,
    pub faithfulness: Option<f64>,
    pub dangling_citations: usize,
    /// Mean judge score per dimension, over the judged cases.
    pub judge: BTreeMap<String, f64>,
    pub judge_failures: usize,
    pub answer_failures: usize,
    pub cases: Vec<AnswerCase>,
}
