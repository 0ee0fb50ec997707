//! Baidu Qianfan ERNIE (v1 API): an API key/secret pair exchanged for an OAuth access token,
//! chat at `wenxinworkshop/chat/{model}` with ERNIE's message rules, and embeddings.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::embedding::{EmbeddingApi, TextKind};
use super::error::Kind;
use super::http::{self, Step, Transport};
use super::{
    ChatModel, ChatRequest, ChatResponse, LlmError, ModelOptions, Role, Secret, TextStream, Usage,
    join_url, unit_temperature,
};

/// Baidu's API host; the token, chat and embedding paths hang off it.
pub const DEFAULT_BASE_URL: &str = "https://aip.baidubce.com";
/// Inputs per embeddings call (`embedding-v1`, `bge-large-zh`).
pub const EMBEDDING_BATCH_LIMIT: usize = 16;
const API_PATH: &str = "rpc/2.0/ai_custom/v1/wenxinworkshop";

/// Error codes meaning the access token is invalid (110) or expired (111).
const TOKEN_CODES: [i64; 2] = [110, 111];

/// ERNIE's error codes, by what can be done about them.
fn classify_code(code: i64) -> Kind {
    match code {
        // Unknown error, service unavailable, over capacity, QPS, RPM/TPM limits, internal errors.
        1 | 2 | 4 | 18 | 336100 | 336501 | 336502 => Kind::Transient,
        // Input too long for the model.
        336007 | 336103 => Kind::ContextTooLong,
        // Bad parameters, no permission, daily/total limits, invalid tokens, and everything unknown.
        _ => Kind::Permanent,
    }
}

fn classify_qianfan_body(_status: StatusCode, body: &str) -> Option<Kind> {
    serde_json::from_str::<WireError>(body)
        .ok()
        .and_then(|e| e.error_code)
        .map(classify_code)
}

#[derive(Deserialize, Default)]
struct WireError {
    error_code: Option<i64>,
    #[serde(default)]
    error_msg: String,
}

impl WireError {
    fn check(&self, at: &str) -> Result<(), LlmError> {
        match self.error_code {
            None | Some(0) => Ok(()),
            Some(code) => Err(LlmError::of(
                classify_code(code),
                at,
                format!("error {code}: {}", self.error_msg),
            )),
        }
    }

    fn is_token_error(&self) -> bool {
        self.error_code.is_some_and(|c| TOKEN_CODES.contains(&c))
    }
}

#[derive(Deserialize)]
struct WireToken {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: u64,
    error: Option<String>,
    error_description: Option<String>,
}

struct CachedToken {
    value: Secret,
    refresh_at: Instant,
}

/// Access tokens from Baidu's OAuth endpoint, cached and refreshed before they expire.
pub(crate) struct QianfanAuth {
    http: Transport,
    url: String,
    key: Secret,
    secret: Secret,
    cache: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for QianfanAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QianfanAuth")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl QianfanAuth {
    pub(crate) fn new(
        base_url: &str,
        key: Secret,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        Ok(QianfanAuth {
            http: Transport::new(
                "qianfan",
                timeout,
                classify_qianfan_body,
                vec![key.clone(), secret.clone()],
            )?,
            url: join_url(base_url, "oauth/2.0/token"),
            key,
            secret,
            cache: Mutex::new(None),
        })
    }

    /// A valid token: the cached one until 90% of its life has passed, then a fresh one.
    async fn token(&self) -> Result<Secret, LlmError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let at = self.http.at(&self.url);
        let request = self.http.post(&self.url).query(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.key.expose()),
            ("client_secret", self.secret.expose()),
        ]);
        let response = self.http.send(&self.url, request).await?;
        let reply: WireToken = self.http.json(&self.url, response).await?;
        let value = match (reply.access_token, reply.error) {
            (Some(token), None) if !token.is_empty() => Secret::new(token),
            (_, error) => {
                return Err(LlmError::permanent(
                    &at,
                    format!(
                        "token exchange refused: {} {}",
                        error.unwrap_or_default(),
                        reply.error_description.unwrap_or_default()
                    ),
                ));
            }
        };
        let life = Duration::from_secs(reply.expires_in.max(1));
        tracing::debug!(
            expires_in_s = life.as_secs(),
            "qianfan access token refreshed"
        );
        *cache = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + life.mul_f64(0.9),
        });
        Ok(value)
    }

    /// Drops `stale` so the next call exchanges again; a token someone else already replaced stays.
    async fn invalidate(&self, stale: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|t| &t.value == stale) {
            *cache = None;
        }
    }

    /// POSTs `body` to `url` with the token, exchanging once more if the vendor says it expired.
    async fn post(
        &self,
        http: &Transport,
        url: &str,
        body: &impl Serialize,
    ) -> Result<Reply, LlmError> {
        let mut refreshed = false;
        loop {
            let token = self.token().await?;
            let request = http
                .post_json(url, body)
                .query(&[("access_token", token.expose())]);
            let response = http.send(url, request).await?;
            if !http::is_json(&response) {
                return Ok(Reply::Stream(response));
            }
            // Errors come as HTTP 200 with a JSON body, for stream requests too: look before handing it on.
            let text = http.text(url, response).await?;
            let error: WireError = serde_json::from_str(&text).unwrap_or_default();
            if refreshed || !error.is_token_error() {
                return Ok(Reply::Body(text));
            }
            tracing::info!(
                code = error.error_code,
                "qianfan token rejected; exchanging again"
            );
            self.invalidate(&token).await;
            refreshed = true;
        }
    }
}

/// What a POST brought back: a whole JSON body, or an event stream still to read.
enum Reply {
    Body(String),
    Stream(reqwest::Response),
}

#[derive(Serialize)]
struct WireChatRequest {
    messages: Vec<ErnieMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    stream: bool,
}

#[derive(Deserialize)]
struct WireChatReply {
    #[serde(flatten)]
    error: WireError,
    #[serde(default)]
    result: String,
    #[serde(default)]
    is_end: bool,
    #[serde(default)]
    need_clear_history: bool,
    usage: Option<Usage>,
}

impl WireChatReply {
    fn check(self, at: &str) -> Result<Self, LlmError> {
        self.error.check(at)?;
        if self.need_clear_history {
            return Err(LlmError::permanent(
                at,
                "content refused by the vendor (need_clear_history)",
            ));
        }
        Ok(self)
    }
}

/// Applies ERNIE's rules to a conversation: system prompts move to `system`; turns alternate
/// user/assistant and start and end with the user, so their count is odd. Consecutive turns of
/// one role are merged and a leading assistant turn (answering nothing) is dropped.
pub(crate) fn ernie_messages(
    at: &str,
    messages: &[super::ChatMessage],
) -> Result<(Option<String>, Vec<ErnieMessage>), LlmError> {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<ErnieMessage> = Vec::new();
    for m in messages {
        match (m.role, turns.last_mut()) {
            (Role::System, _) => system.push(&m.content),
            (role, Some(last)) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            (Role::Assistant, None) => {}
            (role, _) => turns.push(ErnieMessage {
                role,
                content: m.content.clone(),
            }),
        }
    }
    if turns.last().map(|t| t.role) != Some(Role::User) {
        return Err(LlmError::permanent(
            at,
            "ERNIE needs the conversation to end with a user message",
        ));
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, turns))
}

/// One turn after [`ernie_messages`].
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct ErnieMessage {
    pub role: Role,
    pub content: String,
}

/// An ERNIE chat model.
pub struct QianfanChat {
    id: String,
    http: Transport,
    auth: std::sync::Arc<QianfanAuth>,
    url: String,
    opts: ModelOptions,
}

impl fmt::Debug for QianfanChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QianfanChat")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("auth", &self.auth)
            .finish()
    }
}

impl QianfanChat {
    /// `base_url` is the API host (see [`DEFAULT_BASE_URL`]); `opts.model` is the path name ("ernie-speed-128k").
    pub(crate) fn new(
        base_url: &str,
        key: Secret,
        secret: Secret,
        opts: ModelOptions,
    ) -> Result<Self, LlmError> {
        Ok(QianfanChat {
            id: format!("qianfan:{}", opts.model),
            http: Transport::new(
                "qianfan",
                opts.timeout,
                classify_qianfan_body,
                vec![key.clone(), secret.clone()],
            )?,
            auth: std::sync::Arc::new(QianfanAuth::new(base_url, key, secret, opts.timeout)?),
            url: join_url(base_url, &format!("{API_PATH}/chat/{}", opts.model)),
            opts,
        })
    }

    fn body(&self, req: &ChatRequest, stream: bool) -> Result<WireChatRequest, LlmError> {
        let (system, turns) = ernie_messages(&self.http.at(&self.url), &req.messages)?;
        Ok(WireChatRequest {
            messages: turns,
            system,
            temperature: self.opts.temperature(req).map(unit_temperature),
            max_output_tokens: self.opts.max_tokens(req).map(|n| n.max(2)),
            stream,
        })
    }
}

#[async_trait]
impl ChatModel for QianfanChat {
    fn id(&self) -> &str {
        &self.id
    }

    fn context_window(&self) -> usize {
        self.opts.context_window
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let at = self.http.at(&self.url);
        let body = self.body(&req, false)?;
        let text = match self.auth.post(&self.http, &self.url, &body).await? {
            Reply::Body(text) => text,
            Reply::Stream(response) => self.http.text(&self.url, response).await?,
        };
        let reply = http::parse_json::<WireChatReply>(&at, &text)?.check(&at)?;
        Ok(ChatResponse {
            text: reply.result,
            usage: reply.usage,
        })
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError> {
        let at = self.http.at(&self.url);
        let body = self.body(&req, true)?;
        let response = match self.auth.post(&self.http, &self.url, &body).await? {
            Reply::Stream(response) => response,
            Reply::Body(text) => {
                // A JSON body to a stream request is an error (or a vendor ignoring `stream`).
                http::parse_json::<WireChatReply>(&at, &text)?.check(&at)?;
                return Err(LlmError::protocol(
                    &at,
                    "expected an event stream, got a JSON body",
                ));
            }
        };
        let data = self.http.sse_data(&self.url, response);
        Ok(http::deltas(at.clone(), data, move |data| {
            if data.trim().is_empty() {
                return Ok(Step::Skip);
            }
            let chunk = http::parse_json::<WireChatReply>(&at, data)?.check(&at)?;
            Ok(if chunk.is_end {
                Step::Done(Some(chunk.result))
            } else {
                Step::Delta(chunk.result)
            })
        }))
    }
}

/// Qianfan's embeddings endpoint (`embedding-v1`, `bge-large-zh`, `bge-large-en`, `tao-8k`).
#[derive(Debug)]
pub(crate) struct QianfanEmbeddings {
    name: String,
    http: Transport,
    auth: QianfanAuth,
    url: String,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(flatten)]
    error: WireError,
    #[serde(default)]
    data: Vec<WireEmbedding>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    embedding: Vec<f32>,
    #[serde(default)]
    index: usize,
}

impl QianfanEmbeddings {
    pub(crate) fn new(
        base_url: &str,
        key: Secret,
        secret: Secret,
        model: &str,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        Ok(QianfanEmbeddings {
            name: format!("qianfan:{model}"),
            http: Transport::new(
                "qianfan",
                timeout,
                classify_qianfan_body,
                vec![key.clone(), secret.clone()],
            )?,
            auth: QianfanAuth::new(base_url, key, secret, timeout)?,
            url: join_url(base_url, &format!("{API_PATH}/embeddings/{model}")),
        })
    }
}

#[async_trait]
impl EmbeddingApi for QianfanEmbeddings {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        EMBEDDING_BATCH_LIMIT
    }

    async fn embed_batch(
        &self,
        texts: &[String],
        _kind: TextKind,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let at = self.http.at(&self.url);
        let body = serde_json::json!({ "input": texts });
        let text = match self.auth.post(&self.http, &self.url, &body).await? {
            Reply::Body(text) => text,
            Reply::Stream(response) => self.http.text(&self.url, response).await?,
        };
        let mut reply: WireEmbeddings = http::parse_json(&at, &text)?;
        reply.error.check(&at)?;
        reply.data.sort_by_key(|e| e.index);
        Ok(reply.data.into_iter().map(|e| e.embedding).collect())
    }
}
