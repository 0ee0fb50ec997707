//! Retrieval evaluation: index a set into a store of its own, ask every question, and score
//! where the gold passage or page landed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::dataset::{self, QaSet};
use super::{EvalError, RetrievalArgs, metrics, progress_bar};
use crate::app::App;
use crate::config::Settings;
use crate::ingest::document::DocKind;
use crate::ingest::load;
use crate::retrieve::SearchMode;
use crate::store::TenantScope;

/// Tenant of the stores `lore eval` builds itself.
pub const EVAL_TENANT: &str = "eval";

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
}

/// One question's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub query: String,
    pub gold: String,
    /// 1-based rank of the first relevant chunk within the largest k; `None` is a miss.
    pub rank: Option<usize>,
    /// The relevant chunk shares its score with a chunk ranked above it.
    #[serde(default)]
    pub tied: bool,
    /// Sources (and pages) of the retrieved chunks, best first.
    pub retrieved: Vec<String>,
}

/// Everything one run measured; serialised as results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub config: RunConfig,
    /// Recall keyed by k as a string, as JSON objects need.
    pub recall: BTreeMap<String, f64>,
    pub mrr: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    pub cases: Vec<CaseResult>,
    /// Answer metrics, when the run scored answers too (`lore eval answers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<super::answers::AnswerReport>,
}

impl RunResult {
    /// Recall at `k`, when it was measured.
    pub fn recall_at(&self, k: usize) -> Option<f64> {
        self.recall.get(&k.to_string()).copied()
    }
}

/// A store ready to query, holding its temporary directory alive.
pub struct Index {
    pub app: App,
    pub tenant: String,
    pub chunks: usize,
    pub ingest_seconds: f64,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// Builds a fresh store for `config` at `at` (a new temporary directory when `None`): the
/// set's own passages, one source each, then the `corpus` files.
pub async fn build_index(
    settings: &Settings,
    set: &QaSet,
    corpus: &[String],
    config: &IndexConfig,
    at: Option<&Path>,
    progress: bool,
) -> Result<Index, EvalError> {
    let (temp, dir) = match at {
        Some(dir) => {
            if dir.exists() {
                return Err(EvalError::Usage(format!(
                    "{} already exists; an evaluation store must start empty",
                    dir.display()
                )));
            }
            (None, dir.to_owned())
        }
        None => {
            let temp = tempfile::tempdir().map_err(EvalError::io(std::env::temp_dir()))?;
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    let mut settings = settings.clone();
    settings.store.data_dir = dir.clone();
    settings.ingest.chunk_size = config.chunk_size;
    settings.ingest.chunk_overlap = config.chunk_overlap;
    settings.embedding.provider = config.embedder.clone();
    let app = App::open(settings).await?;
    let started = Instant::now();
    let mut chunks = 0;
    let bar = progress_bar(progress, set.passages.len(), "passages");
    for passage in &set.passages {
        // The text loader's path (cleaning included), as if the passage were a .txt file.
        let document = load::load_bytes(&passage.id, DocKind::Text, passage.text.as_bytes())
            .map_err(|e| EvalError::Ingest {
                name: passage.id.clone(),
                reason: e.to_string(),
            })?;
        let outcome = app
            .ingestor
            .ingest_document(document, EVAL_TENANT)
            .await
            .map_err(|e| EvalError::Ingest {
                name: passage.id.clone(),
                reason: e.to_string(),
            })?;
        if let crate::ingest::pipeline::SourceOutcome::Stored { chunks: n, .. } = outcome {
            chunks += n;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !corpus.is_empty() {
        let report = app.ingestor.ingest(corpus, EVAL_TENANT, progress).await?;
        if let Some((name, reason)) = report.errors.into_iter().next() {
            return Err(EvalError::Ingest { name, reason });
        }
        chunks += report.chunks;
    }
    app.store.commit().await?;
    Ok(Index {
        app,
        tenant: EVAL_TENANT.into(),
        chunks,
        ingest_seconds: started.elapsed().as_secs_f64(),
        dir,
        _temp: temp,
    })
}

/// Opens an existing store (`--store`) with the configured embedder, for `tenant`.
pub async fn open_index(settings: &Settings, dir: &Path, tenant: &str) -> Result<Index, EvalError> {
    if !dir.is_dir() {
        return Err(EvalError::Usage(format!(
            "--store {}: no such directory",
            dir.display()
        )));
    }
    let mut settings = settings.clone();
    settings.store.data_dir = dir.to_owned();
    let app = App::open(settings).await?;
    let scope = TenantScope::only(tenant);
    let chunks = app
        .store
        .sources(&scope)
        .await?
        .iter()
        .map(|s| s.chunks)
        .sum();
    Ok(Index {
        app,
        tenant: tenant.to_owned(),
        chunks,
        ingest_seconds: 0.0,
        dir: dir.to_owned(),
        _temp: None,
    })
}

/// Asks every question of `set` in `mode` and scores the ranks at each of `ks`.
pub async fn evaluate(
    index: &Index,
    set: &QaSet,
    mode: SearchMode,
    ks: &[usize],
    progress: bool,
) -> Result<(Vec<CaseResult>, f64), EvalError> {
    let k_max = ks.iter().copied().max().unwrap_or(10).max(10);
    let scope = TenantScope::only(&index.tenant);
    let started = Instant::now();
    let bar = progress_bar(progress, set.cases.len(), "queries");
    let mut cases = Vec::with_capacity(set.cases.len());
    for case in &set.cases {
        let retrieval = index
            .app
            .retriever
            .search(&scope, &case.query, Some(mode), k_max)
            .await?;
        let relevant: Vec<bool> = retrieval
            .hits
            .iter()
            .map(|h| case.gold.matches(&h.chunk, &case.answers))
            .collect();
        let scores: Vec<f32> = retrieval.hits.iter().map(|h| h.score).collect();
        let rank = metrics::first_relevant_rank(&relevant);
        cases.push(CaseResult {
            id: case.id.clone(),
            query: case.query.clone(),
            gold: case.gold.label(),
            rank,
            tied: metrics::rank_is_tied(&scores, rank),
            retrieved: retrieval
                .hits
                .iter()
                .map(|h| match h.chunk.page {
                    Some(p) => format!("{} p.{p}", h.chunk.source),
                    None => h.chunk.source.clone(),
                })
                .collect(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((cases, started.elapsed().as_secs_f64()))
}

/// Scores cases into a result; ranks count within the largest k searched.
pub fn score(config: RunConfig, cases: Vec<CaseResult>) -> RunResult {
    let ranks: Vec<Option<usize>> = cases.iter().map(|c| c.rank).collect();
    RunResult {
        recall: config
            .ks
            .iter()
            .map(|k| (k.to_string(), metrics::recall_at(&ranks, *k)))
            .collect(),
        mrr: metrics::mrr(&ranks),
        ndcg10: metrics::ndcg_at(&ranks, 10),
        config,
        cases,
        answers: None,
    }
}

/// Loads the set, keeping the first `limit` questions; every passage is still indexed, so
/// the others stay in as distractors.
pub fn load_set(path: &Path, page_base: u32, limit: Option<usize>) -> Result<QaSet, EvalError> {
    let mut set = dataset::load(path, page_base)?;
    if let Some(n) = limit {
        set.cases.truncate(n);
    }
    Ok(set)
}

/// `lore eval retrieval`: one configuration.
pub async fn run(
    settings: &Settings,
    args: &RetrievalArgs,
    tenant: &str,
    progress: bool,
) -> Result<RunResult, EvalError> {
    Ok(run_keeping_index(settings, args, tenant, progress).await?.0)
}

/// Like [`run`], also handing back the index and the set so answers can be scored on the
/// same store; the index's default search mode is the run's.
pub async fn run_keeping_index(
    settings: &Settings,
    args: &RetrievalArgs,
    tenant: &str,
    progress: bool,
) -> Result<(RunResult, Index, QaSet), EvalError> {
    let set = load_set(&args.set.qa, args.set.page_base, args.set.limit)?;
    let mode = args.mode.unwrap_or(settings.retrieval.mode);
    let mut settings = settings.clone();
    settings.retrieval.mode = mode;
    let config = IndexConfig {
        chunk_size: args.chunk_size.unwrap_or(settings.ingest.chunk_size),
        chunk_overlap: args.chunk_overlap.unwrap_or(settings.ingest.chunk_overlap),
        embedder: args
            .embedder
            .clone()
            .unwrap_or_else(|| settings.embedding.provider.clone()),
    };
    let index = match &args.store {
        Some(dir) => open_index(&settings, dir, tenant).await?,
        None => build_index(&settings, &set, &args.set.corpus, &config, None, progress).await?,
    };
    let (cases, search_seconds) = evaluate(&index, &set, mode, &args.k, progress).await?;
    let mut run_config = run_config(&index, &args.set, config, mode, &args.k, search_seconds);
    run_config.store = args.store.as_ref().map(|d| d.display().to_string());
    Ok((score(run_config, cases), index, set))
}

/// The recorded configuration of a run over `index`.
pub fn run_config(
    index: &Index,
    set: &super::SetArgs,
    config: IndexConfig,
    mode: SearchMode,
    ks: &[usize],
    search_seconds: f64,
) -> RunConfig {
    let effective_mode = index.app.retriever.effective_mode(Some(mode));
    let label = format!(
        "{}/{}/{}/{:?}",
        config.chunk_size,
        config.chunk_overlap,
        match &index.app.embedder {
            Some(_) => config.embedder.as_str(),
            None => "none",
        },
        effective_mode
    )
    .to_lowercase();
    RunConfig {
        label,
        qa: set.qa.display().to_string(),
        corpus: set.corpus.clone(),
        store: None,
        index: config,
        embedder_id: index.app.embedder.as_ref().map(|e| e.id().to_owned()),
        mode,
        effective_mode,
        ks: ks.to_vec(),
        chunks: index.chunks,
        ingest_seconds: index.ingest_seconds,
        search_seconds,
    }
}
