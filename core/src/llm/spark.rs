//! iFlytek Spark: chat over a websocket whose URL is signed with HMAC-SHA256, and embeddings over
//! a signed HTTP POST. One connection per request; the server closes after the status-2 frame.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt, stream};
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use tokio_tungstenite::tungstenite::{self, Message};

use super::embedding::{EmbeddingApi, TextKind};
use super::error::Kind;
use super::http::{self, Step, Transport};
use super::{
    ChatModel, ChatRequest, ChatResponse, LlmError, ModelOptions, Secret, TextStream, Usage,
    unit_temperature,
};

/// Spark's chat host; the path comes from the model's domain.
pub const DEFAULT_HOST: &str = "wss://spark-api.xf-yun.com";
/// Spark's embedding endpoint.
pub const DEFAULT_EMBEDDING_URL: &str = "https://emb-cn-huabei-1.xf-yun.com/";
/// Length of Spark's embedding vectors.
pub const EMBEDDING_DIMENSION: usize = 2560;

/// Which `domain` each chat URL path serves; a mismatch fails with code 10163 or 11200.
const DOMAINS: &[(&str, &[&str])] = &[
    ("/v1.1/chat", &["lite", "general"]),
    ("/v2.1/chat", &["generalv2"]),
    ("/v3.1/chat", &["generalv3"]),
    ("/chat/pro-128k", &["pro-128k"]),
    ("/v3.5/chat", &["generalv3.5"]),
    ("/chat/max-32k", &["max-32k"]),
    ("/v4.0/chat", &["4.0Ultra"]),
];

/// The chat URL for a domain on Spark's own host.
pub fn default_url(domain: &str) -> Option<String> {
    DOMAINS
        .iter()
        .find(|(_, domains)| domains.contains(&domain))
        .map(|(path, _)| format!("{DEFAULT_HOST}{path}"))
}

/// Checks that `domain` is the one served at the URL's path version.
pub(crate) fn check_domain(url: &str, domain: &str) -> Result<(), LlmError> {
    let path = Url::parse(url)
        .map_err(|e| LlmError::config(format!("spark: base_url {url}: {e}")))?
        .path()
        .to_string();
    let Some((version, domains)) = DOMAINS.iter().find(|(p, _)| path.ends_with(p)) else {
        return Err(LlmError::config(format!(
            "spark: unknown chat path {path} in base_url {url}"
        )));
    };
    if !domains.contains(&domain) {
        return Err(LlmError::config(format!(
            "spark: model (domain) {domain} is not served at {version}; that path serves {}",
            domains.join(" or ")
        )));
    }
    Ok(())
}

/// An app's credentials; none of them is ever printed.
#[derive(Clone)]
pub(crate) struct SparkCreds {
    pub app_id: Secret,
    pub api_key: Secret,
    pub api_secret: Secret,
}

impl fmt::Debug for SparkCreds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SparkCreds(***)")
    }
}

/// Signs `url` for `method` at `now`: HMAC-SHA256 over host, date and request line, put in the
/// `authorization`, `date` and `host` query parameters the way iFlytek's gateway checks them.
pub(crate) fn signed_url(
    url: &str,
    method: &str,
    creds: &SparkCreds,
    now: SystemTime,
) -> Result<Url, LlmError> {
    let mut url =
        Url::parse(url).map_err(|e| LlmError::config(format!("spark: URL {url}: {e}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(LlmError::config(format!("spark: URL {url} has no host"))),
    };
    let date = httpdate::fmt_http_date(now);
    let origin = format!(
        "host: {host}\ndate: {date}\n{method} {} HTTP/1.1",
        url.path()
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(creds.api_secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(origin.as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    let authorization = B64.encode(format!(
        "api_key=\"{}\", algorithm=\"hmac-sha256\", headers=\"host date request-line\", signature=\"{signature}\"",
        creds.api_key.expose()
    ));
    url.query_pairs_mut()
        .append_pair("authorization", &authorization)
        .append_pair("date", &date)
        .append_pair("host", &host);
    Ok(url)
}

/// Spark's codes, with what they mean for a person reading the error.
fn classify_code(code: i64) -> (Kind, &'static str) {
    match code {
        10013 | 10014 | 10019 => (Kind::Permanent, "content refused by Spark's moderation"),
        10907 => (Kind::ContextTooLong, "the conversation has too many tokens"),
        11200 => (
            Kind::Permanent,
            "not authorised for this model (check the app's licence and the domain)",
        ),
        11201 => (Kind::Permanent, "the app's daily quota is exhausted"),
        11202 => (Kind::Transient, "too many requests per second"),
        11203 => (Kind::Transient, "too many concurrent requests"),
        10163 => (
            Kind::Permanent,
            "request parameters rejected (does the domain match the URL version?)",
        ),
        10000..=10012 | 10110 | 10222 | 10223 => (Kind::Transient, "Spark is busy or failing"),
        _ => (Kind::Permanent, "Spark refused the request"),
    }
}

fn code_error(at: &str, code: i64, message: &str) -> LlmError {
    let (kind, meaning) = classify_code(code);
    LlmError::of(kind, at, format!("{meaning} (code {code}: {message})"))
}

#[derive(Deserialize)]
struct Frame {
    header: FrameHeader,
    #[serde(default)]
    payload: Option<FramePayload>,
}

#[derive(Deserialize)]
struct FrameHeader {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: i64,
}

#[derive(Deserialize)]
struct FramePayload {
    choices: Option<FrameChoices>,
    usage: Option<FrameUsage>,
}

#[derive(Deserialize)]
struct FrameChoices {
    #[serde(default)]
    status: i64,
    #[serde(default)]
    text: Vec<FrameText>,
}

#[derive(Deserialize)]
struct FrameText {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct FrameUsage {
    text: Option<Usage>,
}

/// A Spark chat model (`opts.model` is the `domain`, e.g. "generalv3.5").
pub struct SparkChat {
    id: String,
    url: String,
    creds: SparkCreds,
    opts: ModelOptions,
}

impl fmt::Debug for SparkChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparkChat")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("creds", &self.creds)
            .finish()
    }
}

/// Maps a websocket failure; `redact` is blanked out of a handshake refusal's body.
fn ws_error(at: &str, e: tungstenite::Error, redact: &[Secret]) -> LlmError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let status = response.status();
            let kind = match status.as_u16() {
                429 | 500..=599 => Kind::Transient,
                _ => Kind::Permanent,
            };
            LlmError::of(
                kind,
                at,
                format!(
                    "handshake refused: HTTP {status}: {}",
                    http::snippet(&http::scrub(&body, redact))
                ),
            )
            // The handshake is an HTTP exchange: its Retry-After counts as on every other path.
            .with_retry_after(http::retry_after(response.headers()))
        }
        tungstenite::Error::Url(e) => LlmError::config(format!("{at}: {e}")),
        other => LlmError::transient(at, format!("websocket: {other}")),
    }
}

impl SparkChat {
    /// `url` is the full chat URL (see [`default_url`]); the domain must match its version.
    pub(crate) fn new(url: &str, creds: SparkCreds, opts: ModelOptions) -> Result<Self, LlmError> {
        check_domain(url, &opts.model)?;
        Ok(SparkChat {
            id: format!("spark:{}", opts.model),
            url: url.to_string(),
            creds,
            opts,
        })
    }

    fn at(&self) -> String {
        format!("spark at {}", http::redact_url(&self.url))
    }

    /// Opens a connection, sends the request and returns the deltas; usage lands in the slot at the end.
    async fn open(
        &self,
        req: &ChatRequest,
    ) -> Result<(TextStream, Arc<Mutex<Option<Usage>>>), LlmError> {
        let at = self.at();
        let timeout = self.opts.timeout;
        let url = signed_url(&self.url, "GET", &self.creds, SystemTime::now())?;
        let (mut ws, _) =
            tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url.as_str()))
                .await
                .map_err(|_| {
                    LlmError::transient(
                        &at,
                        format!("no websocket handshake within {} s", timeout.as_secs_f64()),
                    )
                })?
                .map_err(|e| {
                    let redact = [self.creds.api_key.clone(), self.creds.api_secret.clone()];
                    ws_error(&at, e, &redact)
                })?;
        let mut chat = json!({ "domain": self.opts.model });
        if let Some(t) = self.opts.temperature(req) {
            chat["temperature"] = json!(unit_temperature(t));
        }
        if let Some(n) = self.opts.max_tokens(req) {
            chat["max_tokens"] = json!(n);
        }
        let frame = json!({
            "header": { "app_id": self.creds.app_id.expose(), "uid": "lore" },
            "parameter": { "chat": chat },
            "payload": { "message": { "text": req.messages } },
        });
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .map_err(|e| ws_error(&at, e, &[]))?;

        let frames = stream::unfold(Some((ws, at.clone())), move |state| async move {
            let (mut ws, at) = state?;
            loop {
                let item = match tokio::time::timeout(timeout, ws.next()).await {
                    Err(_) => Err(LlmError::transient(
                        &at,
                        format!(
                            "the stream stalled: nothing for {} s",
                            timeout.as_secs_f64()
                        ),
                    )),
                    Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
                    Ok(Some(Ok(Message::Text(text)))) => {
                        return Some((Ok(text.to_string()), Some((ws, at))));
                    }
                    Ok(Some(Ok(Message::Binary(_)))) => {
                        Err(LlmError::protocol(&at, "unexpected binary frame"))
                    }
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => Err(ws_error(&at, e, &[])),
                };
                return Some((item, None));
            }
        })
        .boxed();

        let usage = Arc::new(Mutex::new(None));
        let slot = usage.clone();
        let deltas = http::deltas(at.clone(), frames, move |text| {
            let frame: Frame = http::parse_json(&at, text)?;
            if frame.header.code != 0 {
                return Err(code_error(&at, frame.header.code, &frame.header.message));
            }
            let payload = frame.payload.unwrap_or(FramePayload {
                choices: None,
                usage: None,
            });
            if let Some(u) = payload.usage.and_then(|u| u.text) {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(u);
            }
            let (status, content) = match payload.choices {
                Some(c) => (
                    c.status,
                    c.text.into_iter().map(|t| t.content).collect::<String>(),
                ),
                None => (frame.header.status, String::new()),
            };
            Ok(if status == 2 || frame.header.status == 2 {
                Step::Done(Some(content))
            } else {
                Step::Delta(content)
            })
        });
        Ok((deltas, usage))
    }
}

#[async_trait]
impl ChatModel for SparkChat {
    fn id(&self) -> &str {
        &self.id
    }

    fn context_window(&self) -> usize {
        self.opts.context_window
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let (mut deltas, usage) = self.open(&req).await?;
        let mut text = String::new();
        while let Some(delta) = deltas.next().await {
            text.push_str(&delta?);
        }
        let usage = *usage.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ChatResponse { text, usage })
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError> {
        Ok(self.open(&req).await?.0)
    }
}

/// Spark's embedding API: one text per call, `para` for documents and `query` for queries.
#[derive(Debug)]
pub(crate) struct SparkEmbeddings {
    http: Transport,
    url: String,
    creds: SparkCreds,
}

impl SparkEmbeddings {
    pub(crate) fn new(url: &str, creds: SparkCreds, timeout: Duration) -> Result<Self, LlmError> {
        // Spark reports errors in the body; the HTTP status alone decides the rest.
        let redact = vec![creds.api_key.clone(), creds.api_secret.clone()];
        let http = Transport::new("spark", timeout, |_, _| None, redact)?;
        Ok(SparkEmbeddings {
            http,
            url: url.to_string(),
            creds,
        })
    }
}

#[async_trait]
impl EmbeddingApi for SparkEmbeddings {
    fn name(&self) -> &str {
        "spark:embedding"
    }

    fn max_batch(&self) -> usize {
        1
    }

    async fn embed_batch(
        &self,
        texts: &[String],
        kind: TextKind,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let at = self.http.at(&self.url);
        let domain = match kind {
            TextKind::Document => "para",
            TextKind::Query => "query",
        };
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let messages = json!({ "messages": [{ "content": text, "role": "user" }] });
            let body = json!({
                "header": { "app_id": self.creds.app_id.expose(), "uid": "lore", "status": 3 },
                "parameter": { "emb": { "domain": domain, "feature": { "encoding": "utf8" } } },
                "payload": { "messages": { "text": B64.encode(messages.to_string()) } },
            });
            let url = signed_url(&self.url, "POST", &self.creds, SystemTime::now())?;
            let response = self
                .http
                .send(&self.url, self.http.post_json(url, &body))
                .await?;
            let reply: serde_json::Value = self.http.json(&self.url, response).await?;
            let code = reply
                .pointer("/header/code")
                .and_then(|c| c.as_i64())
                .unwrap_or(-1);
            if code != 0 {
                let message = reply
                    .pointer("/header/message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("");
                return Err(code_error(&at, code, message));
            }
            let encoded = reply
                .pointer("/payload/feature/text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| LlmError::protocol(&at, "no payload.feature.text in the reply"))?;
            let bytes = B64
                .decode(encoded)
                .map_err(|e| LlmError::protocol(&at, format!("vector is not base64: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(LlmError::protocol(
                    &at,
                    "vector bytes are not a whole number of f32",
                ));
            }
            out.push(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod handshake_tests {
    use super::*;

    fn refused(status: u16, retry_after: Option<&str>) -> LlmError {
        let mut response = tungstenite::http::Response::builder().status(status);
        if let Some(seconds) = retry_after {
            response = response.header("Retry-After", seconds);
        }
        let response = response.body(Some(b"busy".to_vec())).unwrap();
        ws_error("spark", tungstenite::Error::Http(Box::new(response)), &[])
    }

    #[test]
    fn a_refused_handshake_keeps_the_vendors_retry_after() {
        assert_eq!(
            refused(429, Some("1")).retry_later(),
            Some(Some(Duration::from_secs(1)))
        );
        assert_eq!(refused(503, None).retry_later(), Some(None));
        assert_eq!(refused(401, Some("1")).retry_later(), None);
    }
}
