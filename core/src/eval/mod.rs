//! `lore eval`: score retrieval and answers against a validation set, every configuration
//! in a store of its own, and write a report folder per run.

pub mod answers;
pub mod attribution;
pub mod chart;
pub mod dataset;
#[cfg(test)]
mod fake_llm;
pub mod generate;
pub mod judge;
pub mod metrics;
pub mod report;
pub mod results;
pub mod retrieval;
pub mod scope;
pub mod settings;
pub mod sweep;

use std::path::PathBuf;

use crate::embed::EmbeddingProvider;
use crate::retrieve::SearchMode;

/// Why an evaluation could not run; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    #[error("{path}: not a results.json of lore eval: {err}")]
    Results {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("chart {path}: {reason}")]
    Chart { path: PathBuf, reason: String },
    #[error("evaluation store: {0}")]
    Open(#[from] crate::kb::OpenError),
    #[error("evaluation store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("ingesting {name}: {reason}")]
    Ingest { name: String, reason: String },
    #[error(transparent)]
    Retrieve(#[from] crate::retrieve::RetrieveError),
    #[error("judge model: {0}")]
    Llm(#[from] crate::llm::LlmError),
    #[error("{0}")]
    Usage(String),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |err| EvalError::Io { path, err }
    }
}

/// What to evaluate against and where the report goes.
#[derive(Debug, Clone)]
pub struct SetArgs {
    /// Validation set: SQuAD JSON, JSONL {query, answer?, source?, page?}, or the tutorial's
    /// [{query, answer, page_num}] list.
    pub qa: PathBuf,
    /// Files or directories to index, for sets that do not carry their passages.
    pub corpus: Vec<String>,
    /// Number the set gives the first page (the tutorial's PyMuPDF pages start at 0).
    pub page_base: u32,
    /// Evaluate only the first N questions.
    pub limit: Option<usize>,
    /// Report folder.
    pub out: PathBuf,
}

/// `lore eval retrieval`.
#[derive(Debug, Clone)]
pub struct RetrievalArgs {
    pub set: SetArgs,
    /// Cut-offs for recall@k.
    pub k: Vec<usize>,
    /// Search mode (default: retrieval.mode).
    pub mode: Option<SearchMode>,
    /// Query this existing store (its --tenant) instead of building a fresh one.
    pub store: Option<PathBuf>,
    /// Chunk size of the fresh store (default: ingest.chunk_size).
    pub chunk_size: Option<usize>,
    /// Chunk overlap of the fresh store (default: ingest.chunk_overlap).
    pub chunk_overlap: Option<usize>,
    /// Dense embedder of the fresh store (default: the configured one).
    pub embedder: Option<EmbeddingProvider>,
}

/// `lore eval sweep`.
#[derive(Debug, Clone)]
pub struct SweepArgs {
    pub set: SetArgs,
    pub chunk_sizes: Vec<usize>,
    /// Overlaps as a percentage of the chunk size.
    pub overlaps: Vec<usize>,
    pub modes: Vec<SearchMode>,
    /// Dense embedders, one index each.
    pub embedders: Vec<EmbeddingProvider>,
    pub k: Vec<usize>,
    /// Keep each cell's store under OUT/stores/ instead of a temporary directory.
    pub keep_stores: bool,
    /// Hybrid fusion rules to try (empty: the configured one).
    pub fusions: Vec<crate::retrieve::Fusion>,
    /// Dense weights of the hybrid fusion to try (empty: the configured one).
    pub dense_weights: Vec<f32>,
    /// Whether BM25 reads the question without its instructions (empty: as configured).
    pub cut_instructions: Vec<bool>,
    /// Weights of a numbered reference's word in BM25 to try (empty: as configured).
    pub reference_weights: Vec<f32>,
}
