//! `lore eval scope`: does lore keep out of questions its knowledge base cannot answer, and
//! still answer the ones it can? A JSONL set of questions marked `in_scope` true or false
//! (tests/fixtures/scope_questions.jsonl for the sample knowledge base) is asked one by one,
//! with no history, in a fresh store of the corpus (or `--store`); a question counts as
//! answered when the answer is grounded and cites something.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::dataset::QaSet;
use super::results::IndexConfig;
use super::retrieval::{build_index, open_index};
use crate::answer::AnswerError;
use crate::kb::KnowledgeBaseSettings;
use crate::progress::Progress;
use crate::store::TenantScope;

/// One line of a scope set.
#[derive(Debug, Clone, Deserialize)]
pub struct ScopeQuestion {
    pub question: String,
    /// Whether the knowledge base holds the answer.
    pub in_scope: bool,
}

/// `lore eval scope`.
#[derive(Debug, Clone)]
pub struct ScopeArgs {
    /// The JSONL set.
    pub questions: PathBuf,
    /// Files or directories to index into a fresh store.
    pub corpus: Vec<String>,
    /// Ask this existing store (its tenant) instead.
    pub store: Option<PathBuf>,
}

/// What lore did with one question.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeCase {
    pub question: String,
    pub in_scope: bool,
    pub answered: bool,
    pub citations: usize,
    pub grounding: f32,
    /// What the evidence gate saw (for tuning it): the best dense cosine and the best
    /// share of the question's terms in a hit.
    pub best_dense: Option<f32>,
    pub best_coverage: f32,
}

/// Answered rates of both halves of the set.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeResult {
    /// Whether answers came from a language model (else: the extractive answer, so the
    /// evidence gate alone decides).
    pub llm: bool,
    pub in_scope: usize,
    pub in_scope_answered: usize,
    pub out_of_scope: usize,
    pub out_of_scope_answered: usize,
    pub cases: Vec<ScopeCase>,
}

/// Reads a scope set: one `{"question": ..., "in_scope": true|false}` per line.
pub fn load(path: &Path) -> Result<Vec<ScopeQuestion>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(EvalError::io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| EvalError::Dataset {
                path: path.to_owned(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Asks every question of the set and counts the answered ones.
pub async fn run(
    settings: &KnowledgeBaseSettings,
    args: &ScopeArgs,
    tenant: &str,
    progress: &dyn Progress,
) -> Result<ScopeResult, EvalError> {
    let questions = load(&args.questions)?;
    let index = match &args.store {
        Some(dir) => open_index(settings, dir, tenant).await?,
        None => {
            if args.corpus.is_empty() {
                return Err(EvalError::Usage(
                    "give the knowledge base as --corpus PATH... or --store DIR".into(),
                ));
            }
            let config = IndexConfig {
                chunk_size: settings.ingest.chunk_size,
                chunk_overlap: settings.ingest.chunk_overlap,
                embedder: settings.embedding.provider.to_string(),
            };
            let empty = QaSet {
                passages: Vec::new(),
                cases: Vec::new(),
            };
            build_index(settings, &empty, &args.corpus, &config, None, progress).await?
        }
    };
    let scope = TenantScope::only(&index.tenant);
    let assistant = &index.kb.assistant;
    let mut cases = Vec::with_capacity(questions.len());
    progress.begin(questions.len() as u64, "questions");
    let retriever = &index.kb.retriever;
    for q in questions {
        let k = retriever.settings().top_k;
        let gate = retriever.search(&scope, &q.question, None, k).await?;
        let answer = assistant
            .answer(&scope, &q.question, &[], None)
            .await
            .map_err(|e| match e {
                AnswerError::Retrieve(e) => EvalError::Retrieve(e),
                AnswerError::Llm(e) => EvalError::Llm(e),
            })?;
        cases.push(ScopeCase {
            answered: answer.grounded && !answer.citations.is_empty(),
            citations: answer.citations.len(),
            grounding: answer.grounding,
            best_dense: gate.best_dense,
            best_coverage: gate.best_coverage,
            question: q.question,
            in_scope: q.in_scope,
        });
        progress.advance(1);
    }
    progress.end();
    let count = |in_scope: bool, answered: bool| {
        cases
            .iter()
            .filter(|c| c.in_scope == in_scope && (!answered || c.answered))
            .count()
    };
    Ok(ScopeResult {
        llm: assistant.has_llm(),
        in_scope: count(true, false),
        in_scope_answered: count(true, true),
        out_of_scope: count(false, false),
        out_of_scope_answered: count(false, true),
        cases,
    })
}

/// The rates, then every question on the wrong side: out-of-scope ones answered, in-scope
/// ones not.
pub fn summary_markdown(r: &ScopeResult) -> String {
    let rate = |a: usize, n: usize| {
        if n == 0 {
            0.0
        } else {
            100.0 * a as f64 / n as f64
        }
    };
    let mut out = format!(
        "answers from: {}\nout of scope answered: {}/{} ({:.0}%)\nin scope answered:     {}/{} ({:.0}%)\n",
        if r.llm {
            "the language model"
        } else {
            "quoted passages (no LLM): the evidence gate decides"
        },
        r.out_of_scope_answered,
        r.out_of_scope,
        rate(r.out_of_scope_answered, r.out_of_scope),
        r.in_scope_answered,
        r.in_scope,
        rate(r.in_scope_answered, r.in_scope),
    );
    for c in r.cases.iter().filter(|c| c.answered != c.in_scope) {
        let what = if c.in_scope { "missed  " } else { "answered" };
        out.push_str(&format!("{what} {}\n", c.question));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_scope_set_has_fifty_of_each() {
        let set = load(&lore_testkit::fixture("scope_questions.jsonl")).unwrap();
        let inside = set.iter().filter(|q| q.in_scope).count();
        assert!(
            inside >= 50 && set.len() - inside >= 50,
            "{inside} of {}",
            set.len()
        );
    }
}
