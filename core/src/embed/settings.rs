//! `[embedding]`: the dense embedder, local or a vendor's.

use std::path::PathBuf;

use serde::Deserialize;

use crate::llm::Provider;
use crate::setting::SettingError;

crate::choice! {
    /// Which dense embedder to use.
    pub enum EmbeddingProvider {
        /// multilingual-e5-small, in-process.
        Local = "local",
        /// Sparse-only (BM25).
        None = "none",
        Openai = "openai",
        Zhipu = "zhipu",
        Qianfan = "qianfan",
        Spark = "spark",
    }
}

impl EmbeddingProvider {
    /// The vendor behind it; None for the local model and for sparse-only.
    pub fn vendor(self) -> Option<Provider> {
        match self {
            EmbeddingProvider::Local | EmbeddingProvider::None => None,
            EmbeddingProvider::Openai => Some(Provider::Openai),
            EmbeddingProvider::Zhipu => Some(Provider::Zhipu),
            EmbeddingProvider::Qianfan => Some(Provider::Qianfan),
            EmbeddingProvider::Spark => Some(Provider::Spark),
        }
    }
}

/// `[embedding]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    /// The local model file; unset means the per-user data directory
    /// ([`super::local::default_model_path`]).
    #[serde(default)]
    pub model_path: Option<PathBuf>,
    /// Worker threads for the local model; 0 means one per core.
    pub threads: usize,
    /// Vendor endpoint; unset means the vendor's public one.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The vendor's embedding model; empty means the vendor's default.
    pub model: String,
    /// Environment variable holding the key, for OpenAI-compatible vendors other than OpenAI.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Vector length; unset means the model's published length.
    #[serde(default)]
    pub dimension: Option<usize>,
    /// Texts per call, capped at the vendor's limit; unset means the vendor's limit.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Seconds to wait for a connection and for each reply.
    pub timeout_secs: u64,
    /// Requests per minute to the vendor (0 = unlimited).
    pub requests_per_minute: u32,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Total seconds spent retrying transient failures of one batch.
    pub retry_budget_secs: u64,
    /// Consecutive vendor failures that pause the vendor (0 = never).
    pub breaker_failures: u32,
    /// Seconds a paused vendor is left alone before one trial call; doubles while trials fail.
    pub breaker_pause_secs: u64,
}

impl EmbeddingSettings {
    /// The local model file: `model_path`, or the per-user default.
    pub fn local_model_path(&self) -> PathBuf {
        self.model_path
            .clone()
            .unwrap_or_else(super::local::default_model_path)
    }

    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = SettingError::in_section("embedding");
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1".into()));
        }
        if self.max_concurrency == 0 {
            return Err(bad("max_concurrency", "must be at least 1".into()));
        }
        if let Some(0) = self.dimension {
            return Err(bad("dimension", "must be at least 1".into()));
        }
        if let Some(0) = self.batch_size {
            return Err(bad("batch_size", "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
impl Default for EmbeddingSettings {
    /// settings.toml's `[embedding]`, for tests.
    fn default() -> Self {
        crate::test_defaults::section("embedding")
    }
}
