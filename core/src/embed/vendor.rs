//! Vendor embedding APIs as an [`Embedder`]: each vendor (in `llm`) supplies one batch call;
//! batching, limits, retries and the dimension check live here once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{EmbedError, Embedder, EmbeddingSettings};
use crate::llm::settings::{bearer_key, non_empty, spark_creds};
use crate::llm::{
    CircuitBreaker, EmbeddingApi, LlmError, Provider, RetryPolicy, Secrets, TextKind,
    VendorLimiter, estimate_tokens, openai, qianfan, spark, zhipu,
};

/// A vendor embedding API as an [`Embedder`]: batched, rate-limited, retried.
pub struct VendorEmbedder {
    api: Box<dyn EmbeddingApi>,
    id: String,
    dimension: usize,
    batch: usize,
    retry: RetryPolicy,
    limiter: Arc<VendorLimiter>,
    breaker: CircuitBreaker,
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
        breaker: CircuitBreaker,
        max_concurrency: usize,
    ) -> Self {
        VendorEmbedder {
            id: format!("{}:{dimension}", api.name()),
            batch: batch.clamp(1, api.max_batch().max(1)),
            api,
            dimension,
            retry,
            limiter,
            breaker,
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
                self.breaker
                    .call(self.api.name(), || self.api.embed_batch(texts, kind))
                    .await
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

/// Published vector lengths of common embedding models, used when `dimension` is unset.
fn known_dimension(provider: &str, model: &str) -> Option<usize> {
    Some(match (provider, model) {
        (_, "text-embedding-3-small" | "text-embedding-ada-002") => 1536,
        (_, "text-embedding-3-large") => 3072,
        ("zhipu", "embedding-3") => 2048,
        ("zhipu", "embedding-2") => 1024,
        ("qianfan", "embedding-v1") => 384,
        ("qianfan", "bge-large-zh" | "bge-large-en" | "tao-8k") => 1024,
        ("spark", _) => spark::EMBEDDING_DIMENSION,
        _ => return None,
    })
}

/// The configured vendor embedder; `None` when the provider is no vendor ("none", "local").
pub fn build_vendor_embedder(
    settings: &EmbeddingSettings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn Embedder>>, LlmError> {
    let s = settings;
    let Some(vendor) = s.provider.vendor() else {
        return Ok(None);
    };
    let provider = vendor.as_str();
    let model = match (s.model.trim(), vendor) {
        ("", Provider::Openai) => "text-embedding-3-small",
        ("", Provider::Zhipu) => "embedding-3",
        ("", Provider::Qianfan) => "embedding-v1",
        (m, _) => m,
    };
    let published = known_dimension(provider, model);
    let timeout = Duration::from_secs(s.timeout_secs.max(1));
    let base = non_empty(&s.base_url);
    // Ask for shorter vectors only when the configured length differs from the model's own.
    let shorten = s.dimension.filter(|d| Some(*d) != published);
    let api: Box<dyn EmbeddingApi> = match vendor {
        Provider::None => return Ok(None),
        Provider::Openai => {
            let key = bearer_key(
                secrets,
                provider,
                &s.api_key_env,
                "OPENAI_API_KEY",
                base.is_some(),
            )?;
            let http = crate::llm::Transport::new(
                "openai",
                timeout,
                openai::classify_openai_body,
                key.iter().cloned().collect(),
            )?;
            let auth = Arc::new(openai::StaticKey(key));
            Box::new(openai::OpenAiEmbeddings::new(
                "openai",
                base.unwrap_or(openai::DEFAULT_BASE_URL),
                model,
                auth,
                http,
                shorten,
                2048,
            ))
        }
        Provider::Zhipu => {
            let key = secrets.require(
                non_empty(&s.api_key_env).unwrap_or("ZHIPUAI_API_KEY"),
                provider,
            )?;
            Box::new(zhipu::embeddings(
                base.unwrap_or(zhipu::DEFAULT_BASE_URL),
                key,
                model,
                shorten,
                timeout,
            )?)
        }
        Provider::Qianfan => {
            let (ak, sk) = (
                secrets.require("QIANFAN_AK", provider)?,
                secrets.require("QIANFAN_SK", provider)?,
            );
            Box::new(qianfan::QianfanEmbeddings::new(
                base.unwrap_or(qianfan::DEFAULT_BASE_URL),
                ak,
                sk,
                model,
                timeout,
            )?)
        }
        Provider::Spark => Box::new(spark::SparkEmbeddings::new(
            base.unwrap_or(spark::DEFAULT_EMBEDDING_URL),
            spark_creds(secrets)?,
            timeout,
        )?),
    };
    let dimension = s.dimension.or(published).ok_or_else(|| {
        LlmError::config(format!(
            "embedding.dimension is required for {provider} model {model}"
        ))
    })?;
    let limiter = VendorLimiter::new(
        s.requests_per_minute,
        0,
        Duration::from_secs(s.retry_budget_secs.max(30)),
    );
    let retry = RetryPolicy {
        budget: Duration::from_secs(s.retry_budget_secs),
        ..RetryPolicy::default()
    };
    let batch = s.batch_size.unwrap_or(usize::MAX);
    Ok(Some(Arc::new(VendorEmbedder::new(
        api,
        dimension,
        batch,
        retry,
        Arc::new(limiter),
        CircuitBreaker::new(
            s.breaker_failures,
            Duration::from_secs(s.breaker_pause_secs),
        ),
        s.max_concurrency,
    ))))
}
