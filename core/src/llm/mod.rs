//! The LLM vendor layer: one chat interface and vendor embedders over OpenAI-compatible APIs,
//! Zhipu GLM, Baidu Qianfan (ERNIE) and iFlytek Spark, with retries, rate limits and fallbacks
//! written once in [`resilience`] and wrapped around every vendor by [`settings::build_chat_model`].

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub mod breaker;
mod embedding;
mod error;
mod http;
pub mod limits;
pub mod openai;
pub mod qianfan;
pub mod resilience;
pub mod retry;
mod secrets;
pub mod settings;
pub mod spark;
pub mod zhipu;

#[cfg(test)]
mod tests;

pub use breaker::CircuitBreaker;
pub use embedding::{EmbeddingApi, TextKind};
pub use error::{LlmError, Recovery};
pub(crate) use http::Transport;
pub use limits::{VendorLimiter, estimate_tokens};
pub use resilience::{FallbackChatModel, ResilientChatModel};
pub use retry::RetryPolicy;
pub use secrets::{Secret, Secrets};
pub use settings::{LlmSettings, Provider, build_chat_model};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The wire name every vendor uses ("system", "user", "assistant").
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    /// A system prompt.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A chat call; unset sampling options take the model's configured defaults.
#[derive(Clone, Debug, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// A request with these messages and default sampling.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            ..Default::default()
        }
    }
}

/// Token counts as the vendor reported them (every vendor uses these three names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// A complete answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub usage: Option<Usage>,
}

/// Text deltas of a streamed answer, in order.
pub type TextStream = BoxStream<'static, Result<String, LlmError>>;

/// A chat model of any vendor; object-safe so callers hold `Arc<dyn ChatModel>`.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// "vendor:model", for logs and stored answers (e.g. "openai:gpt-4o-mini").
    fn id(&self) -> &str;
    /// The context window in tokens, from settings or the vendor's published figure.
    fn context_window(&self) -> usize;
    /// Answers in one piece.
    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError>;
    /// Answers as a stream of text deltas.
    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError>;
}

/// What every vendor client is configured with, and the defaults it fills into requests.
#[derive(Clone, Debug)]
pub(crate) struct ModelOptions {
    pub model: String,
    pub context_window: usize,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub timeout: Duration,
}

impl ModelOptions {
    pub(crate) fn temperature(&self, req: &ChatRequest) -> Option<f32> {
        req.temperature.or(self.temperature)
    }

    pub(crate) fn max_tokens(&self, req: &ChatRequest) -> Option<u32> {
        req.max_tokens.or(self.max_tokens)
    }
}

/// Keeps a temperature in (0, 1], the range ERNIE and Spark accept: 0 (greedy, common for RAG)
/// becomes the smallest value they take.
pub(crate) fn unit_temperature(t: f32) -> f32 {
    t.clamp(0.01, 1.0)
}

/// Joins a base URL and a path with exactly one slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
