//! [`FakeOpenAi`]: an OpenAI-compatible server on 127.0.0.1 that replies what the test
//! scripts, streams server-sent events, can hold a reply until released, and logs every
//! request it receives.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::watch;

/// How long [`FakeOpenAi::wait_for_requests`] waits: generous, for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON, or `Null` when it is not JSON.
    pub body: Value,
}

impl Request {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked for a streamed (SSE) answer.
    pub fn is_stream(&self) -> bool {
        self.body["stream"] == json!(true)
    }

    /// The content of the `i`-th chat message, or "".
    pub fn message(&self, i: usize) -> &str {
        self.body["messages"][i]["content"].as_str().unwrap_or("")
    }

    /// The content of the first (usually system) message, or "".
    pub fn system(&self) -> &str {
        self.message(0)
    }

    /// The content of the last chat message, or "".
    pub fn last_message(&self) -> &str {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
    }
}

/// Awaited before each piece of a paced stream, with the piece's index.
pub type Pace = Arc<dyn Fn(usize) -> BoxFuture<'static, ()> + Send + Sync>;

enum Content {
    /// A chat answer: a completion, or one SSE delta when the request streams.
    Answer(String),
    /// SSE deltas, then a stop chunk and `[DONE]`.
    Stream(Vec<String>),
    Json(Value),
    Raw(String),
    /// Bytes of an event stream, each chunk its own write (events may be cut anywhere).
    Chunks(Vec<String>),
}

/// What the fake sends back for one request.
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    content: Content,
    /// Wait for [`FakeOpenAi::release`] before this many pieces have gone out (0 = before
    /// anything, status included).
    hold_after: Option<usize>,
    pace: Option<Pace>,
}

impl Reply {
    fn new(content: Content) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            content,
            hold_after: None,
            pace: None,
        }
    }

    /// A chat answer: a `chat.completion`, or a one-delta stream if the request streams.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Content::Answer(text.into()))
    }

    /// A streamed chat answer in these deltas.
    pub fn stream<S: AsRef<str>>(pieces: &[S]) -> Self {
        Self::new(Content::Stream(
            pieces.iter().map(|p| p.as_ref().to_owned()).collect(),
        ))
    }

    /// Any JSON body.
    pub fn json(body: Value) -> Self {
        Self::new(Content::Json(body))
    }

    /// An error status with a JSON body, e.g. `Reply::status(429, json!({...}))`.
    pub fn status(code: u16, body: Value) -> Self {
        Self::json(body).with_status(code)
    }

    /// A body sent as is (with `content-type: text/plain` unless a header says otherwise).
    pub fn raw(body: impl Into<String>) -> Self {
        Self::new(Content::Raw(body.into()))
    }

    /// An event stream written as these raw chunks, as they are: events split across writes,
    /// malformed events, or a stream cut before `[DONE]`.
    pub fn sse_chunks<S: AsRef<str>>(chunks: &[S]) -> Self {
        Self::new(Content::Chunks(
            chunks.iter().map(|c| c.as_ref().to_owned()).collect(),
        ))
    }

    /// An OpenAI embeddings response with these vectors, in order.
    pub fn embeddings(vectors: &[Vec<f32>]) -> Self {
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
            .collect();
        Self::json(
            json!({"object": "list", "data": data, "model": "fake-embedding",
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
        )
    }

    pub fn with_status(mut self, code: u16) -> Self {
        self.status = code;
        self
    }

    /// Adds a response header, e.g. `("retry-after", "1")`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Holds the reply until [`FakeOpenAi::release`], after `pieces` stream pieces have gone
    /// out (0: before the response starts).
    pub fn hold_after(mut self, pieces: usize) -> Self {
        self.hold_after = Some(pieces);
        self
    }

    /// Awaits `pace(i)` before sending stream piece `i`, so a test can tie the stream's
    /// progress to what the client has shown.
    pub fn paced(
        mut self,
        pace: impl Fn(usize) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.pace = Some(Arc::new(pace));
        self
    }
}

type Responder = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Shared {
    queue: Mutex<VecDeque<Reply>>,
    responder: Mutex<Responder>,
    requests: Mutex<Vec<Request>>,
    gate: watch::Sender<bool>,
    key: Mutex<Option<String>>,
}

/// A fake OpenAI-compatible server on 127.0.0.1. Each request gets the next [`push`]ed reply,
/// or else what the responder ([`respond_with`]) makes of it; by default a chat answer that
/// echoes the request's last message. Every path answers, so `/v1/embeddings` or a wrong path
/// is the test's to script; all requests are logged.
///
/// [`push`]: FakeOpenAi::push
/// [`respond_with`]: FakeOpenAi::respond_with
#[derive(Clone)]
pub struct FakeOpenAi {
    base_url: String,
    shared: Arc<Shared>,
}

impl FakeOpenAi {
    /// Starts the server on a free port of 127.0.0.1, in the current tokio runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            responder: Mutex::new(Arc::new(|r: &Request| Reply::text(r.last_message()))),
            requests: Mutex::new(Vec::new()),
            gate: watch::channel(false).0,
            key: Mutex::new(None),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, shared }
    }

    /// A server whose chat answers are `replies` in order, the last one repeating.
    pub async fn scripted(replies: &[&str]) -> Self {
        let fake = Self::start().await;
        if let Some((last, first)) = replies.split_last() {
            for reply in first {
                fake.push(Reply::text(*reply));
            }
            let last = last.to_string();
            fake.respond_with(move |_| Reply::text(last.clone()));
        }
        fake
    }

    /// The base URL clients are configured with, `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Queues a reply for the next request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.shared.queue.lock().unwrap().push_back(reply);
        self
    }

    /// Sets how requests are answered once the queue is empty.
    pub fn respond_with(
        &self,
        responder: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        *self.shared.responder.lock().unwrap() = Arc::new(responder);
        self
    }

    /// Answers 401, as OpenAI does, every request whose bearer token is not `key`, before
    /// any scripted reply.
    pub fn require_key(&self, key: &str) -> &Self {
        *self.shared.key.lock().unwrap() = Some(key.to_owned());
        self
    }

    /// Lets held replies continue (and any later ones pass without holding).
    pub fn release(&self) {
        self.shared.gate.send_replace(true);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests had a path ending in `path_suffix`.
    pub fn count(&self, path_suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .count()
    }

    /// Waits (generously) until `n` requests have arrived, and returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Request> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fake model got {} requests, not {n}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.requests.lock().unwrap().push(request.clone());
    let key = shared.key.lock().unwrap().clone();
    if let Some(key) = key
        && request.header("authorization") != Some(&format!("Bearer {key}"))
    {
        let error = json!({"error": {"message": "Incorrect API key provided: sk-***.",
            "type": "invalid_request_error", "code": "invalid_api_key"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let queued = shared.queue.lock().unwrap().pop_front();
    let reply = match queued {
        Some(reply) => reply,
        None => {
            let responder = shared.responder.lock().unwrap().clone();
            responder(&request)
        }
    };
    let gate = shared.gate.subscribe();
    if reply.hold_after == Some(0) {
        wait_open(gate.clone()).await;
    }
    render(reply, request.is_stream(), gate)
}

async fn wait_open(mut gate: watch::Receiver<bool>) {
    // The sender lives as long as the server; an error only means the test is over.
    let _ = gate.wait_for(|open| *open).await;
}

fn render(reply: Reply, streamed_request: bool, gate: watch::Receiver<bool>) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.content {
        Content::Answer(text) if streamed_request => {
            sse(vec![text], reply.hold_after, reply.pace, gate)
        }
        Content::Answer(text) => axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response(),
        Content::Stream(pieces) => sse(pieces, reply.hold_after, reply.pace, gate),
        Content::Json(body) => axum::Json(body).into_response(),
        Content::Raw(body) => ([("content-type", "text/plain")], body).into_response(),
        Content::Chunks(chunks) => raw_sse(chunks, reply.hold_after, gate),
    };
    *response.status_mut() = status;
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn chunk(delta: Value, finish: Value) -> String {
    let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

/// The pieces as SSE, each sent as its own write, holding or pacing between them.
fn sse(
    pieces: Vec<String>,
    hold_after: Option<usize>,
    pace: Option<Pace>,
    gate: watch::Receiver<bool>,
) -> Response {
    let total = pieces.len();
    let pieces = Arc::new(pieces);
    let events = futures::stream::unfold(0usize, move |i| {
        let (pieces, pace, gate) = (pieces.clone(), pace.clone(), gate.clone());
        async move {
            if i > total {
                return None;
            }
            if hold_after == Some(i) && i > 0 {
                wait_open(gate).await;
            }
            if i == total {
                let end = chunk(json!({}), json!("stop")) + "data: [DONE]\n\n";
                return Some((Ok::<_, std::io::Error>(Bytes::from(end)), i + 1));
            }
            if let Some(pace) = &pace {
                pace(i).await;
            }
            let event = chunk(json!({"content": pieces[i]}), Value::Null);
            Some((Ok(Bytes::from(event)), i + 1))
        }
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

/// Raw event-stream chunks; holding after `hold_after` of them models a stalled stream.
fn raw_sse(
    chunks: Vec<String>,
    hold_after: Option<usize>,
    gate: watch::Receiver<bool>,
) -> Response {
    let total = chunks.len();
    let chunks = Arc::new(chunks);
    let events = futures::stream::unfold(0usize, move |i| {
        let (chunks, gate) = (chunks.clone(), gate.clone());
        async move {
            if hold_after == Some(i) && i > 0 {
                wait_open(gate).await;
            }
            if i >= total {
                return None;
            }
            // A short pause between chunks makes each its own write, so a client really
            // sees an event cut across reads.
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(chunks[i].clone())),
                i + 1,
            ))
        }
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}
