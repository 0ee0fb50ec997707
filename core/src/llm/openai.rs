//! Any OpenAI-compatible API (OpenAI, DeepSeek, vLLM, Ollama's `/v1`...): chat completions with
//! SSE streaming, and `/embeddings`. Zhipu's v4 API speaks the same JSON and reuses this client.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::embedding::{EmbeddingApi, TextKind};
use super::error::Kind;
use super::http::{self, BodyClassifier, Step, Transport};
use super::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, LlmError, ModelOptions, Secret, TextStream,
    Usage, join_url,
};

/// OpenAI's public endpoint, used when no base URL is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Supplies the `Authorization: Bearer` value for each call (a static key, or Zhipu's signed JWT).
pub(crate) trait BearerAuth: Send + Sync + fmt::Debug {
    /// The bearer token, or `None` for servers without authentication (a local vLLM, Ollama).
    fn bearer(&self) -> Result<Option<Secret>, LlmError>;
    /// The long-lived secrets behind the token, to blank out of echoed error bodies.
    fn secrets(&self) -> Vec<Secret>;
}

/// A plain API key.
#[derive(Debug)]
pub(crate) struct StaticKey(pub Option<Secret>);

impl BearerAuth for StaticKey {
    fn bearer(&self) -> Result<Option<Secret>, LlmError> {
        Ok(self.0.clone())
    }

    fn secrets(&self) -> Vec<Secret> {
        self.0.iter().cloned().collect()
    }
}

/// The error vocabulary of OpenAI-style bodies beyond the HTTP status.
pub(crate) fn classify_openai_body(_status: StatusCode, body: &str) -> Option<Kind> {
    if body.contains("context_length_exceeded") || body.contains("maximum context length") {
        Some(Kind::ContextTooLong)
    } else if body.contains("insufficient_quota") {
        // OpenAI sends exhausted credit as a 429, but waiting will not refill it.
        Some(Kind::Permanent)
    } else {
        None
    }
}

/// A chat model behind an OpenAI-compatible `/chat/completions`.
pub struct OpenAiChat {
    id: String,
    http: Transport,
    opts: ModelOptions,
    url: String,
    auth: Arc<dyn BearerAuth>,
}

impl fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("auth", &self.auth)
            .finish()
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
}

#[derive(Deserialize, Default)]
struct WireReply {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireText>,
    delta: Option<WireText>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireText {
    content: Option<String>,
}

/// A finish reason that means the vendor refused to answer.
fn refused(at: &str, reason: Option<&str>) -> Result<(), LlmError> {
    match reason {
        // "sensitive" is Zhipu's name for OpenAI's "content_filter".
        Some(r @ ("content_filter" | "sensitive")) => Err(LlmError::permanent(
            at,
            format!("content refused by the vendor ({r})"),
        )),
        Some("network_error") => Err(LlmError::transient(
            at,
            "the vendor reported a network error mid-answer",
        )),
        _ => Ok(()),
    }
}

/// An `{"error": ...}` object sent with a 200 status (mid-stream, or by lenient servers).
fn body_error(at: &str, error: &serde_json::Value) -> LlmError {
    let text = error.to_string();
    let kind = classify_openai_body(StatusCode::OK, &text).unwrap_or(Kind::Permanent);
    LlmError::of(kind, at, http::snippet(&text))
}

impl OpenAiChat {
    /// A client for `base_url` (e.g. "https://api.openai.com/v1") with a plain key, if any.
    pub(crate) fn new(
        base_url: &str,
        key: Option<Secret>,
        opts: ModelOptions,
    ) -> Result<Self, LlmError> {
        Self::with_auth(
            "openai",
            base_url,
            Arc::new(StaticKey(key)),
            opts,
            classify_openai_body,
        )
    }

    /// A client for a vendor that speaks OpenAI's JSON with its own auth and error codes.
    pub(crate) fn with_auth(
        vendor: &'static str,
        base_url: &str,
        auth: Arc<dyn BearerAuth>,
        opts: ModelOptions,
        classify: BodyClassifier,
    ) -> Result<Self, LlmError> {
        Ok(OpenAiChat {
            id: format!("{vendor}:{}", opts.model),
            http: Transport::new(vendor, opts.timeout, classify, auth.secrets())?,
            url: join_url(base_url, "chat/completions"),
            opts,
            auth,
        })
    }

    async fn post(&self, req: &ChatRequest, stream: bool) -> Result<reqwest::Response, LlmError> {
        let body = WireRequest {
            model: &self.opts.model,
            messages: &req.messages,
            temperature: self.opts.temperature(req),
            max_tokens: self.opts.max_tokens(req),
            stream,
        };
        let mut request = self.http.post_json(&self.url, &body);
        if let Some(token) = self.auth.bearer()? {
            request = request.bearer_auth(token.expose());
        }
        self.http.send(&self.url, request).await
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn id(&self) -> &str {
        &self.id
    }

    fn context_window(&self) -> usize {
        self.opts.context_window
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let at = self.http.at(&self.url);
        let response = self.post(&req, false).await?;
        let reply: WireReply = self.http.json(&self.url, response).await?;
        if let Some(error) = &reply.error {
            return Err(body_error(&at, error));
        }
        let choice = reply
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::protocol(&at, "the reply has no choices"))?;
        refused(&at, choice.finish_reason.as_deref())?;
        let text = choice
            .message
            .and_then(|m| m.content)
            .ok_or_else(|| LlmError::protocol(&at, "the reply has no message content"))?;
        Ok(ChatResponse {
            text,
            usage: reply.usage,
        })
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError> {
        let at = self.http.at(&self.url);
        let response = self.post(&req, true).await?;
        if http::is_json(&response) {
            // Some servers answer a stream request with one JSON body (an error, or no streaming support).
            let reply: WireReply = self.http.json(&self.url, response).await?;
            return Err(match &reply.error {
                Some(error) => body_error(&at, error),
                None => LlmError::protocol(&at, "expected an event stream, got a JSON body"),
            });
        }
        let data = self.http.sse_data(&self.url, response);
        Ok(http::deltas(at.clone(), data, move |data| {
            let data = data.trim();
            if data == "[DONE]" {
                return Ok(Step::Done(None));
            }
            if data.is_empty() {
                return Ok(Step::Skip);
            }
            let chunk: WireReply = http::parse_json(&at, data)?;
            if let Some(error) = &chunk.error {
                return Err(body_error(&at, error));
            }
            let Some(choice) = chunk.choices.into_iter().next() else {
                // Usage-only chunks carry no choices.
                return Ok(Step::Skip);
            };
            refused(&at, choice.finish_reason.as_deref())?;
            let text = choice.delta.and_then(|d| d.content).unwrap_or_default();
            // Some servers close after finish_reason without "[DONE]": the answer is complete here.
            Ok(match choice.finish_reason {
                Some(_) => Step::Done(Some(text)),
                None => Step::Delta(text),
            })
        }))
    }
}

/// `/embeddings` of an OpenAI-compatible API.
#[derive(Debug)]
pub(crate) struct OpenAiEmbeddings {
    name: String,
    http: Transport,
    url: String,
    model: String,
    auth: Arc<dyn BearerAuth>,
    /// Sent as `dimensions` only for models that can shorten their vectors.
    dimensions: Option<usize>,
    max_batch: usize,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    embedding: Vec<f32>,
    #[serde(default)]
    index: usize,
}

impl OpenAiEmbeddings {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vendor: &'static str,
        base_url: &str,
        model: &str,
        auth: Arc<dyn BearerAuth>,
        http: Transport,
        dimensions: Option<usize>,
        max_batch: usize,
    ) -> Self {
        OpenAiEmbeddings {
            name: format!("{vendor}:{model}"),
            http,
            url: join_url(base_url, "embeddings"),
            model: model.to_string(),
            auth,
            dimensions,
            max_batch,
        }
    }
}

#[async_trait]
impl EmbeddingApi for OpenAiEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn embed_batch(
        &self,
        texts: &[String],
        _kind: TextKind,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let mut body = serde_json::json!({ "model": self.model, "input": texts });
        if let Some(d) = self.dimensions {
            body["dimensions"] = d.into();
        }
        let mut request = self.http.post_json(&self.url, &body);
        if let Some(token) = self.auth.bearer()? {
            request = request.bearer_auth(token.expose());
        }
        let response = self.http.send(&self.url, request).await?;
        let mut reply: WireEmbeddings = self.http.json(&self.url, response).await?;
        reply.data.sort_by_key(|e| e.index);
        Ok(reply.data.into_iter().map(|e| e.embedding).collect())
    }
}
