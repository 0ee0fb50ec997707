//! Dense embedders behind one trait: the local E5 model and vendor APIs.

pub mod bm25;
pub mod e5;
pub mod local;
mod settings;
pub mod vendor;

use std::sync::Arc;

use async_trait::async_trait;

pub use settings::{EmbeddingProvider, EmbeddingSettings};
pub use vendor::{VendorEmbedder, build_vendor_embedder};

use crate::llm::{LlmError, Secrets};

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

/// Why the configured embedder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Vendor(#[from] LlmError),
}

/// The configured dense embedder, or None (sparse-only, announced once at start-up).
pub fn build_embedder(
    settings: &EmbeddingSettings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn Embedder>>, BuildError> {
    match settings.provider {
        EmbeddingProvider::None => {
            tracing::info!("embedding.provider = \"none\": search is sparse-only (BM25)");
            Ok(None)
        }
        EmbeddingProvider::Local => {
            let path = settings.local_model_path();
            if !path.is_file() {
                tracing::warn!(
                    "local embedding model {} not found: running sparse-only (BM25). \
                     Run scripts/fetch-model.sh to install it, or set embedding.model_path.",
                    path.display()
                );
                return Ok(None);
            }
            let model = local::LocalE5Embedder::load(&path, settings.threads)?;
            Ok(Some(Arc::new(model)))
        }
        _ => Ok(build_vendor_embedder(settings, secrets)?),
    }
}
