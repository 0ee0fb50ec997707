//! Vendor layer tests against local protocol fakes on 127.0.0.1.

use futures::StreamExt;

use super::{ChatMessage, ChatRequest, LlmError, LlmSettings, Secrets, TextStream};

mod fakes;
mod openai;
mod qianfan;
mod resilience;
mod secrets;
mod spark;
mod zhipu;

/// Settings for `provider` at a fake: short timeout, no retries, no rate limit.
fn llm(provider: &str, base_url: &str, model: &str) -> LlmSettings {
    LlmSettings {
        provider: provider.parse().unwrap(),
        base_url: Some(base_url.into()),
        model: model.into(),
        timeout_secs: 1,
        retry_budget_secs: 0,
        requests_per_minute: 0,
        ..Default::default()
    }
}

fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    Secrets::from_pairs(pairs.iter().copied())
}

fn user(text: &str) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user(text)])
}

/// The class of an error, as the vendor tables name it.
fn class(err: &LlmError) -> &'static str {
    match err {
        LlmError::Transient { .. } => "transient",
        LlmError::Permanent { .. } => "permanent",
        LlmError::ContextTooLong { .. } => "context",
        LlmError::Protocol { .. } => "protocol",
        LlmError::Paused { .. } => "paused",
        LlmError::Config(_) => "config",
    }
}

async fn collect(mut stream: TextStream) -> Result<String, LlmError> {
    let mut text = String::new();
    while let Some(delta) = stream.next().await {
        text.push_str(&delta?);
    }
    Ok(text)
}
