//! Vendor embedders: each vendor supplies one batch call; batching, limits, retries and the
//! dimension check live here once, behind the crate's `Embedder` trait.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{LlmError, RetryPolicy, VendorLimiter, estimate_tokens};
use crate::embed::{EmbedError, Embedder};

/// Whether a text is stored (a passage) or searched with (a query); Spark embeds them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextKind {
    Document,
    Query,
}

/// One vendor's embedding endpoint.
#[async_trait]
pub(crate) trait EmbeddingApi: Send + Sync + fmt::Debug {
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

/// A vendor embedding API as an [`Embedder`]: batched, rate-limited, retried.
pub struct VendorEmbedder {
    api: Box<dyn EmbeddingApi>,
    id: String,
    dimension: usize,
    batch: usize,
    retry: RetryPolicy,
    limiter: Arc<VendorLimiter>,
    concurrency: Arc<Semaphore>,
}

impl fmt::Debug for VendorEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorEmbedder")
            .field("id", &self.id)
            .field("api", &self.api)
            .finish()
    }
}

impl VendorEmbedder {
    /// `batch` is capped at the vendor's limit.
    pub(crate) fn new(
        api: Box<dyn EmbeddingApi>,
        dimension: usize,
        batch: usize,
        retry: RetryPolicy,
        limiter: Arc<VendorLimiter>,
        max_concurrency: usize,
    ) -> Self {
        VendorEmbedder {
            id: format!("{}:{dimension}", api.name()),
            batch: batch.clamp(1, api.max_batch().max(1)),
            api,
            dimension,
            retry,
            limiter,
            concurrency: Arc::new(Semaphore::new(max_concurrency.max(1))),
        }
    }

    async fn embed(&self, texts: &[String], kind: TextKind) -> Result<Vec<Vec<f32>>, LlmError> {
        let _permit = self
            .concurrency
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let tokens: u32 = texts.iter().map(|t| estimate_tokens(t)).sum();
        // Each attempt is a real request, so each one takes its place in the vendor's budget.
        let vectors = self
            .retry
            .run(self.api.name(), || async {
                self.limiter.acquire(tokens, self.api.name()).await?;
                self.api.embed_batch(texts, kind).await
            })
            .await?;
        let at = self.api.name();
        if vectors.len() != texts.len() {
            return Err(LlmError::protocol(
                at,
                format!("{} vectors for {} texts", vectors.len(), texts.len()),
            ));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dimension) {
            return Err(LlmError::protocol(
                at,
                format!(
                    "a vector of length {} where the configured dimension is {}",
                    v.len(),
                    self.dimension
                ),
            ));
        }
        Ok(vectors)
    }
}

#[async_trait]
impl Embedder for VendorEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed_documents(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch) {
            out.extend(self.embed(chunk, TextKind::Document).await?);
        }
        Ok(out)
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed(&[text.to_string()], TextKind::Query).await?;
        Ok(vectors.pop().unwrap_or_default())
    }
}
