//! Dense embedders behind one trait: the local E5 model and (later) vendor APIs.

pub mod e5;
pub mod local;

use async_trait::async_trait;

/// Why an embedding call failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model file {path}: {reason}")]
    Model { path: String, reason: String },
    #[error("embedding failed: {0}")]
    Compute(String),
    /// A vendor embedding API failed; the inner error says whether retrying can help.
    #[error(transparent)]
    Vendor(#[from] crate::llm::LlmError),
}

/// Turns text into dense vectors. Documents and queries are separate calls because
/// models (E5's `query:`/`passage:` prefixes) and vendors (Spark's `para`/`query`) treat them differently.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// A stable identity (model and dimension), stored with the knowledge base so a
    /// store built with one model is never searched with another.
    fn id(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;
    /// Embeds chunks for storage; the result has one vector per input, in order.
    async fn embed_documents(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Embeds one search query.
    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
}

pub mod bm25;
