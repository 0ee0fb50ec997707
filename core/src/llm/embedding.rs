//! The vendor side of embeddings: each vendor supplies one batch call. Batching, limits,
//! retries and the dimension check live once in `embed::vendor`, behind `Embedder`.

use std::fmt;

use async_trait::async_trait;

use super::LlmError;

/// Whether a text is stored (a passage) or searched with (a query); Spark embeds them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    Document,
    Query,
}

/// One vendor's embedding endpoint.
#[async_trait]
pub trait EmbeddingApi: Send + Sync + fmt::Debug {
    /// "vendor:model".
    fn name(&self) -> &str;
    /// The most inputs the vendor accepts in one call.
    fn max_batch(&self) -> usize;
    /// Embeds at most `max_batch` texts, one vector per text in order.
    async fn embed_batch(
        &self,
        texts: &[String],
        kind: TextKind,
    ) -> Result<Vec<Vec<f32>>, LlmError>;
}
