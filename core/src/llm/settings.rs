//! The `[llm]` settings and the builder that turns them into a wrapped vendor client. Keys
//! and defaults are documented in settings.toml, the one source of defaults.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::spark::SparkCreds;
use super::{
    ChatModel, CircuitBreaker, FallbackChatModel, LlmError, ModelOptions, ResilientChatModel,
    RetryPolicy, Secrets, VendorLimiter, openai, qianfan, spark, zhipu,
};
use crate::setting::SettingError;

crate::choice! {
    /// A chat vendor, or none (answers quote the best passages).
    pub enum Provider {
        None = "none",
        /// Any OpenAI-compatible API (OpenAI, DeepSeek, Qwen, Moonshot, Ollama, vLLM, ...).
        Openai = "openai",
        /// Zhipu GLM (JWT-signed key).
        Zhipu = "zhipu",
        /// Baidu Qianfan / ERNIE (API key + secret key → access token).
        Qianfan = "qianfan",
        /// iFlytek Spark (websocket with an HMAC-signed URL).
        Spark = "spark",
    }
}

/// The `[llm]` section: which chat model to use and how hard to push its vendor. Also the
/// shape of each `[[llm.fallback]]` entry and of `[eval.judge]`, whose missing keys the
/// settings loader fills from `[llm]`'s defaults.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub provider: Provider,
    /// The vendor endpoint; unset means the vendor's public one.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The model name (for Spark, the `domain`); empty means the vendor's default model.
    pub model: String,
    /// Environment variable holding the key, for OpenAI-compatible vendors other than OpenAI.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Default sampling temperature when a request sets none.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Default answer length limit when a request sets none.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The model's context window in tokens; unset means the published figure, or 8192.
    #[serde(default)]
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
    /// Consecutive vendor failures (timeouts, 5xx, 429, garbage) that pause the vendor (0 = never).
    pub breaker_failures: u32,
    /// Seconds a paused vendor is left alone before one trial call; doubles while trials fail.
    pub breaker_pause_secs: u64,
    /// Models tried in order when this one fails (each a full `[llm]`-like table without its own fallback).
    #[serde(default)]
    pub fallback: Vec<LlmSettings>,
}

impl LlmSettings {
    /// Checks serde cannot express; `section` is where the table sits ("llm", "eval.judge").
    pub fn validate(&self, section: &str) -> Result<(), SettingError> {
        let bad = |key: &str, reason: String| SettingError::new(format!("{section}.{key}"), reason);
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(bad("temperature", format!("{t} is outside 0..=2")));
        }
        if self.timeout_secs == 0 {
            return Err(bad("timeout_secs", "must be at least 1".into()));
        }
        if self.max_concurrency == 0 {
            return Err(bad("max_concurrency", "must be at least 1".into()));
        }
        if let Some(0) = self.context_window {
            return Err(bad("context_window", "must be at least 1".into()));
        }
        for (i, fallback) in self.fallback.iter().enumerate() {
            let at = format!("{section}.fallback[{i}]");
            if !fallback.fallback.is_empty() {
                return Err(SettingError::new(
                    at,
                    "has its own fallback; list every model in llm.fallback instead".into(),
                ));
            }
            fallback.validate(&at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl Default for LlmSettings {
    /// settings.toml's `[llm]`, for tests.
    fn default() -> Self {
        crate::test_defaults::section("llm")
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

pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The key for an OpenAI-compatible vendor: `api_key_env` if set, else `default_env`; a custom
/// base URL may run without one (a local server), OpenAI itself may not.
pub(crate) fn bearer_key(
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

pub(crate) fn spark_creds(secrets: &Secrets) -> Result<SparkCreds, LlmError> {
    Ok(SparkCreds {
        app_id: secrets.require("IFLYTEK_SPARK_APP_ID", "spark")?,
        api_key: secrets.require("IFLYTEK_SPARK_API_KEY", "spark")?,
        api_secret: secrets.require("IFLYTEK_SPARK_API_SECRET", "spark")?,
    })
}

/// One vendor client without the resilience wrapper.
fn build_vendor_chat(s: &LlmSettings, secrets: &Secrets) -> Result<Arc<dyn ChatModel>, LlmError> {
    let provider = s.provider.as_str();
    let model = match (s.model.trim(), s.provider) {
        ("", Provider::Openai) => "gpt-4o-mini",
        ("", Provider::Zhipu) => "glm-4-flash",
        ("", Provider::Qianfan) => "ernie-speed-128k",
        ("", Provider::Spark) => "generalv3.5",
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
    Ok(match s.provider {
        Provider::Openai => {
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
        Provider::Zhipu => {
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
        Provider::Qianfan => {
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
        Provider::Spark => {
            let url = match base {
                Some(url) => url.to_string(),
                None => spark::default_url(model).ok_or_else(|| {
                    LlmError::config(format!("spark: unknown model (domain) {model}"))
                })?,
            };
            Arc::new(spark::SparkChat::new(&url, spark_creds(secrets)?, opts)?)
        }
        Provider::None => {
            return Err(LlmError::config("llm.provider \"none\" has no client"));
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
    let breaker = CircuitBreaker::new(
        s.breaker_failures,
        Duration::from_secs(s.breaker_pause_secs),
    );
    Ok(Arc::new(ResilientChatModel::new(
        build_vendor_chat(s, secrets)?,
        Arc::new(limiter),
        Arc::new(breaker),
        s.max_concurrency,
        retry,
    )))
}

/// The configured chat model, wrapped in resilience and the fallback chain; `None` for provider "none".
pub fn build_chat_model(
    settings: &LlmSettings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn ChatModel>>, LlmError> {
    if settings.provider == Provider::None {
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
