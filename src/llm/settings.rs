//! The `[llm]` and `[embedding]` settings and the builders that turn them into wrapped vendor
//! clients. Keys and defaults are documented in `settings.toml.snippet` beside this file.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::spark::SparkCreds;
use super::{
    ChatModel, FallbackChatModel, LlmError, ModelOptions, ResilientChatModel, RetryPolicy, Secrets,
    VendorEmbedder, VendorLimiter, openai, qianfan, spark, zhipu,
};
use crate::embed::Embedder;

/// The `[llm]` section: which chat model to use and how hard to push its vendor.
#[derive(Deserialize, Clone, Debug)]
#[serde(default)]
pub struct LlmSettings {
    /// "none", "openai" (any OpenAI-compatible API), "zhipu", "qianfan" or "spark".
    pub provider: String,
    /// The vendor endpoint; empty means the vendor's public one.
    pub base_url: Option<String>,
    /// The model name (for Spark, the `domain`); empty means the vendor's default model.
    pub model: String,
    /// Environment variable holding the key, for OpenAI-compatible vendors other than OpenAI.
    pub api_key_env: Option<String>,
    /// Default sampling temperature when a request sets none.
    pub temperature: Option<f32>,
    /// Default answer length limit when a request sets none.
    pub max_tokens: Option<u32>,
    /// The model's context window in tokens; unset means the published figure, or 8192.
    pub context_window: Option<usize>,
    /// Seconds to wait for a connection, the first byte, and each gap in a stream.
    pub timeout_secs: u64,
    /// Requests per minute to the vendor (0 = unlimited).
    pub requests_per_minute: u32,
    /// Estimated tokens per minute to the vendor (0 = unlimited).
    pub tokens_per_minute: u32,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Total seconds spent retrying transient failures of one call (0 = no retries).
    pub retry_budget_secs: u64,
    /// Longest wait in seconds for the local rate limiter before failing the call.
    pub max_limiter_wait_secs: u64,
    /// Models tried in order when this one fails (each a full `[llm]`-like table without its own fallback).
    pub fallback: Vec<LlmSettings>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            provider: "none".into(),
            base_url: None,
            model: String::new(),
            api_key_env: None,
            temperature: None,
            max_tokens: None,
            context_window: None,
            timeout_secs: 60,
            requests_per_minute: 60,
            tokens_per_minute: 0,
            max_concurrency: 4,
            retry_budget_secs: 60,
            max_limiter_wait_secs: 30,
            fallback: Vec::new(),
        }
    }
}

/// The `[embedding]` section's vendor keys; providers this layer does not know (the local model)
/// are left to the caller.
#[derive(Deserialize, Clone, Debug)]
#[serde(default)]
pub struct EmbeddingVendorSettings {
    /// "none", "local" (the in-process model, built elsewhere), "openai", "zhipu", "qianfan" or "spark".
    pub provider: String,
    /// The vendor endpoint; empty means the vendor's public one.
    pub base_url: Option<String>,
    /// The embedding model; empty means the vendor's default.
    pub model: String,
    /// Environment variable holding the key, for OpenAI-compatible vendors other than OpenAI.
    pub api_key_env: Option<String>,
    /// Vector length; unset means the model's published length.
    pub dimension: Option<usize>,
    /// Texts per call, capped at the vendor's limit; unset means the vendor's limit.
    pub batch_size: Option<usize>,
    /// Seconds to wait for a connection and for each reply.
    pub timeout_secs: u64,
    /// Requests per minute to the vendor (0 = unlimited).
    pub requests_per_minute: u32,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Total seconds spent retrying transient failures of one batch.
    pub retry_budget_secs: u64,
}

impl Default for EmbeddingVendorSettings {
    fn default() -> Self {
        EmbeddingVendorSettings {
            provider: "local".into(),
            base_url: None,
            model: String::new(),
            api_key_env: None,
            dimension: None,
            batch_size: None,
            timeout_secs: 60,
            requests_per_minute: 300,
            max_concurrency: 2,
            retry_budget_secs: 120,
        }
    }
}

/// Published context windows of common models, used when `context_window` is unset.
fn known_context_window(provider: &str, model: &str) -> usize {
    match (provider, model) {
        (_, m) if m.starts_with("gpt-4o") || m.starts_with("gpt-4.1") => 128_000,
        (_, m) if m.starts_with("deepseek") => 64_000,
        ("zhipu", m) if m.starts_with("glm-4-long") => 1_000_000,
        ("zhipu", _) => 128_000,
        ("qianfan", m) if m.ends_with("128k") => 128_000,
        ("qianfan", m) if m.ends_with("8k") => 8_000,
        ("spark", "pro-128k") => 128_000,
        ("spark", "max-32k" | "4.0Ultra" | "generalv3.5") => 8_192,
        ("spark", _) => 8_192,
        _ => 8_192,
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

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The key for an OpenAI-compatible vendor: `api_key_env` if set, else `default_env`; a custom
/// base URL may run without one (a local server), OpenAI itself may not.
fn bearer_key(
    secrets: &Secrets,
    provider: &str,
    api_key_env: &Option<String>,
    default_env: &str,
    custom_url: bool,
) -> Result<Option<super::Secret>, LlmError> {
    let env = non_empty(api_key_env).unwrap_or(default_env);
    match secrets.get(env) {
        Some(key) => Ok(Some(key)),
        None if custom_url && non_empty(api_key_env).is_none() => Ok(None),
        None => secrets.require(env, provider).map(Some),
    }
}

fn spark_creds(secrets: &Secrets) -> Result<SparkCreds, LlmError> {
    Ok(SparkCreds {
        app_id: secrets.require("IFLYTEK_SPARK_APP_ID", "spark")?,
        api_key: secrets.require("IFLYTEK_SPARK_API_KEY", "spark")?,
        api_secret: secrets.require("IFLYTEK_SPARK_API_SECRET", "spark")?,
    })
}

/// One vendor client without the resilience wrapper.
fn build_vendor_chat(s: &LlmSettings, secrets: &Secrets) -> Result<Arc<dyn ChatModel>, LlmError> {
    let provider = s.provider.trim();
    let model = match (s.model.trim(), provider) {
        ("", "openai") => "gpt-4o-mini",
        ("", "zhipu") => "glm-4-flash",
        ("", "qianfan") => "ernie-speed-128k",
        ("", "spark") => "generalv3.5",
        (m, _) => m,
    };
    let opts = ModelOptions {
        model: model.to_string(),
        context_window: s
            .context_window
            .unwrap_or_else(|| known_context_window(provider, model)),
        temperature: s.temperature,
        max_tokens: s.max_tokens,
        timeout: Duration::from_secs(s.timeout_secs.max(1)),
    };
    let base = non_empty(&s.base_url);
    Ok(match provider {
        "openai" => {
            let key = bearer_key(
                secrets,
                provider,
                &s.api_key_env,
                "OPENAI_API_KEY",
                base.is_some(),
            )?;
            Arc::new(openai::OpenAiChat::new(
                base.unwrap_or(openai::DEFAULT_BASE_URL),
                key,
                opts,
            )?)
        }
        "zhipu" => {
            let key = secrets.require(
                non_empty(&s.api_key_env).unwrap_or("ZHIPUAI_API_KEY"),
                provider,
            )?;
            Arc::new(zhipu::chat(
                base.unwrap_or(zhipu::DEFAULT_BASE_URL),
                key,
                opts,
            )?)
        }
        "qianfan" => {
            let (ak, sk) = (
                secrets.require("QIANFAN_AK", provider)?,
                secrets.require("QIANFAN_SK", provider)?,
            );
            Arc::new(qianfan::QianfanChat::new(
                base.unwrap_or(qianfan::DEFAULT_BASE_URL),
                ak,
                sk,
                opts,
            )?)
        }
        "spark" => {
            let url = match base {
                Some(url) => url.to_string(),
                None => spark::default_url(model).ok_or_else(|| {
                    LlmError::config(format!("spark: unknown model (domain) {model}"))
                })?,
            };
            Arc::new(spark::SparkChat::new(&url, spark_creds(secrets)?, opts)?)
        }
        other => {
            return Err(LlmError::config(format!(
                "unknown llm.provider {other:?} (none, openai, zhipu, qianfan, spark)"
            )));
        }
    })
}

/// One vendor client inside its concurrency cap, rate limiter and retries.
fn build_resilient(s: &LlmSettings, secrets: &Secrets) -> Result<Arc<dyn ChatModel>, LlmError> {
    let limiter = VendorLimiter::new(
        s.requests_per_minute,
        s.tokens_per_minute,
        Duration::from_secs(s.max_limiter_wait_secs),
    );
    let retry = RetryPolicy {
        budget: Duration::from_secs(s.retry_budget_secs),
        ..RetryPolicy::default()
    };
    Ok(Arc::new(ResilientChatModel::new(
        build_vendor_chat(s, secrets)?,
        Arc::new(limiter),
        s.max_concurrency,
        retry,
    )))
}

/// The configured chat model, wrapped in resilience and the fallback chain; `None` for provider "none".
pub fn build_chat_model(
    settings: &LlmSettings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn ChatModel>>, LlmError> {
    if settings.provider.trim() == "none" {
        return Ok(None);
    }
    let primary = build_resilient(settings, secrets)?;
    if settings.fallback.is_empty() {
        return Ok(Some(primary));
    }
    let mut chain = vec![primary];
    for (i, fallback) in settings.fallback.iter().enumerate() {
        if !fallback.fallback.is_empty() {
            return Err(LlmError::config(format!(
                "llm.fallback[{i}] has its own fallback; list every model in llm.fallback instead"
            )));
        }
        chain.push(build_resilient(fallback, secrets)?);
    }
    Ok(Some(Arc::new(FallbackChatModel::new(chain)?)))
}

/// The configured vendor embedder; `None` when the provider is "none" or the local model ("local", "e5").
pub fn build_vendor_embedder(
    settings: &EmbeddingVendorSettings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn Embedder>>, LlmError> {
    let s = settings;
    let provider = s.provider.trim();
    let model = match (s.model.trim(), provider) {
        ("", "openai") => "text-embedding-3-small",
        ("", "zhipu") => "embedding-3",
        ("", "qianfan") => "embedding-v1",
        (m, _) => m,
    };
    let published = known_dimension(provider, model);
    let timeout = Duration::from_secs(s.timeout_secs.max(1));
    let base = non_empty(&s.base_url);
    // Ask for shorter vectors only when the configured length differs from the model's own.
    let shorten = s.dimension.filter(|d| Some(*d) != published);
    let api: Box<dyn super::embedding::EmbeddingApi> = match provider {
        "none" | "local" | "e5" => return Ok(None),
        "openai" => {
            let key = bearer_key(
                secrets,
                provider,
                &s.api_key_env,
                "OPENAI_API_KEY",
                base.is_some(),
            )?;
            let http = super::http::Transport::new(
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
        "zhipu" => {
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
        "qianfan" => {
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
        "spark" => Box::new(spark::SparkEmbeddings::new(
            base.unwrap_or(spark::DEFAULT_EMBEDDING_URL),
            spark_creds(secrets)?,
            timeout,
        )?),
        other => {
            return Err(LlmError::config(format!(
                "unknown embedding.provider {other:?} (none, local, openai, zhipu, qianfan, spark)"
            )));
        }
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
        s.max_concurrency,
    ))))
}
