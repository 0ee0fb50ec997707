//! Local fakes of the vendors' wire protocols on 127.0.0.1, checking auth the way each vendor does.

// tungstenite's handshake callback fixes its large error type.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json(u16, Value, Vec<(&'static str, String)>),
    /// An event stream sent in these pieces, `gap` apart, then (optionally) hanging for `stall`.
    Sse(Vec<String>, Duration, Option<Duration>),
    /// Waits, then answers with the inner reply.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply::Json(200, body, vec![])
    }

    pub fn status(code: u16, body: Value) -> Self {
        Reply::Json(code, body, vec![])
    }

    /// OpenAI-style SSE: one `data:` event per piece, then `[DONE]`.
    pub fn openai_stream(deltas: &[&str]) -> Self {
        let mut events: Vec<String> = vec![sse(
            &json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
        )];
        for d in deltas {
            events.push(sse(
                &json!({"choices":[{"index":0,"delta":{"content":d},"finish_reason":null}]}),
            ));
        }
        events.push(sse(
            &json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
        ));
        events.push("data: [DONE]\n\n".into());
        Reply::Sse(split_mid_event(events), Duration::from_millis(2), None)
    }
}

/// A `data:` event.
pub fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// Splits every event in two, as TCP does, so the client must reassemble events across reads.
fn split_mid_event(events: Vec<String>) -> Vec<String> {
    events
        .into_iter()
        .flat_map(|e| {
            let cut = e
                .char_indices()
                .nth(e.chars().count() / 2)
                .map(|(i, _)| i)
                .unwrap_or(0);
            [e[..cut].to_string(), e[cut..].to_string()]
        })
        .collect()
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Seen {
    pub fn query_param(&self, name: &str) -> Option<String> {
        url_query(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn url_query(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Decides before the script: `Some` answers at once (auth failures, token endpoints).
pub type Gate = Box<dyn Fn(&Seen) -> Option<Reply> + Send + Sync>;

pub struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    gate: Gate,
}

/// An HTTP fake on 127.0.0.1 answering from a script.
pub struct Fake {
    pub url: String,
    state: Arc<FakeState>,
}

impl Fake {
    pub async fn start(gate: Gate) -> Fake {
        let state = Arc::new(FakeState {
            script: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate,
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { url, state }
    }

    /// Queues replies; the last one repeats once the queue is down to it.
    pub fn push(&self, reply: Reply) -> &Self {
        self.state.script.lock().unwrap().push_back(reply);
        self
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self, path_suffix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.ends_with(path_suffix))
            .count()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let reply = (state.gate)(&seen).unwrap_or_else(|| {
        let mut script = state.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script
                .front()
                .cloned()
                .expect("the fake has no scripted reply")
        }
    });
    let response = render(reply).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn render(reply: Reply) -> futures::future::BoxFuture<'static, Response> {
    Box::pin(async move {
        match reply {
            Reply::Json(code, body, headers) => {
                let mut response =
                    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
            Reply::Sse(pieces, gap, stall) => {
                let body =
                    futures::stream::iter(pieces.into_iter().map(Some).chain(stall.map(|_| None)))
                        .then(move |piece| async move {
                            match piece {
                                Some(p) => {
                                    tokio::time::sleep(gap).await;
                                    Ok::<_, Infallible>(Bytes::from(p))
                                }
                                None => {
                                    tokio::time::sleep(stall.unwrap()).await;
                                    Ok(Bytes::new())
                                }
                            }
                        });
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(body),
                )
                    .into_response()
            }
            Reply::After(wait, inner) => {
                tokio::time::sleep(wait).await;
                render(*inner).await
            }
        }
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn bearer(seen: &Seen) -> Option<String> {
    seen.headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

/// OpenAI: the exact bearer key, or a 401 like OpenAI's (which quotes a masked key).
pub fn openai_gate(key: &'static str) -> Gate {
    Box::new(move |seen| {
        (bearer(seen).as_deref() != Some(key)).then(|| {
            Reply::status(401, json!({"error":{"message":"Incorrect API key provided: sk-***. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}))
        })
    })
}

/// Zhipu: an HS256 JWT signed with the secret of `id`, header `sign_type: SIGN`, claims in
/// milliseconds and not expired; or, for keys without a dot, that key as a plain bearer.
pub fn zhipu_gate(id: &'static str, secret: &'static str) -> Gate {
    Box::new(move |seen| {
        let token = bearer(seen).unwrap_or_default();
        let fail = |why: &str| {
            Some(Reply::status(
                401,
                json!({"error":{"code":"1002","message":format!("Authorization Token非法: {why}")}}),
            ))
        };
        if secret.is_empty() {
            return if token == id {
                None
            } else {
                fail("plain key mismatch")
            };
        }
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(h) => h,
            Err(_) => return fail("not a JWT"),
        };
        if header
            .extras
            .get::<String>("sign_type")
            .ok()
            .flatten()
            .as_deref()
            != Some("SIGN")
        {
            return fail("sign_type");
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        // Zhipu's exp is in milliseconds, which the library would read as seconds: check it by hand.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()).unwrap();
        let claims: Value = match jsonwebtoken::decode(&token, &key, &validation) {
            Ok(data) => data.claims,
            Err(_) => return fail("bad signature"),
        };
        let (exp, ts) = (
            claims["exp"].as_u64().unwrap_or(0),
            claims["timestamp"].as_u64().unwrap_or(0),
        );
        if claims["api_key"] != id
            || exp <= now_ms()
            || ts > now_ms() + 1000
            || exp < 1_000_000_000_000
        {
            return fail("claims");
        }
        None
    })
}

/// Qianfan: AK/SK for a token at `/oauth/2.0/token`; chat calls need the latest unexpired
/// token, else error 111 in a 200 body, as Baidu does.
pub struct QianfanTokens {
    pub issued: Mutex<Vec<(String, std::time::Instant, Duration)>>,
    pub expires_in: Mutex<u64>,
}

pub fn qianfan_gate(ak: &'static str, sk: &'static str, tokens: Arc<QianfanTokens>) -> Gate {
    Box::new(move |seen| {
        if seen.path == "/oauth/2.0/token" {
            if seen.query_param("grant_type").as_deref() != Some("client_credentials") {
                return Some(Reply::status(
                    400,
                    json!({"error":"unsupported_grant_type"}),
                ));
            }
            if seen.query_param("client_id").as_deref() != Some(ak)
                || seen.query_param("client_secret").as_deref() != Some(sk)
            {
                return Some(Reply::status(
                    401,
                    json!({"error":"invalid_client","error_description":"unknown client id"}),
                ));
            }
            let mut issued = tokens.issued.lock().unwrap();
            let token = format!("24.fake-token-{}", issued.len() + 1);
            let expires_in = *tokens.expires_in.lock().unwrap();
            issued.push((
                token.clone(),
                std::time::Instant::now(),
                Duration::from_secs(expires_in),
            ));
            return Some(Reply::ok(
                json!({"access_token": token, "expires_in": expires_in, "scope":"public"}),
            ));
        }
        let given = seen.query_param("access_token").unwrap_or_default();
        let issued = tokens.issued.lock().unwrap();
        match issued.last() {
            Some((t, at, life)) if *t == given && at.elapsed() < *life => None,
            Some((t, _, _)) if *t == given => Some(Reply::ok(
                json!({"error_code":111,"error_msg":"Access token expired"}),
            )),
            _ => Some(Reply::ok(
                json!({"error_code":110,"error_msg":"Access token invalid or no longer valid"}),
            )),
        }
    })
}

/// Spark's HMAC check of a signed URL: the signature over host, date and request line, and the
/// date within five minutes of now. Returns the HTTP status and message on failure.
pub fn spark_check(
    method: &str,
    path: &str,
    query: &str,
    key: &str,
    secret: &str,
) -> Result<(), (u16, &'static str)> {
    let params = url_query(query);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (authorization, date, host) = (get("authorization"), get("date"), get("host"));
    let decoded = B64
        .decode(&authorization)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("host: {host}\ndate: {date}\n{method} {path} HTTP/1.1").as_bytes());
    let expected = format!(
        "api_key=\"{key}\", algorithm=\"hmac-sha256\", headers=\"host date request-line\", signature=\"{}\"",
        B64.encode(mac.finalize().into_bytes())
    );
    if decoded != expected {
        return Err((401, "HMAC signature cannot be verified"));
    }
    let skew = httpdate::parse_http_date(&date).ok().map(|d| {
        d.duration_since(SystemTime::now())
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap()
    });
    match skew {
        Some(s) if s <= Duration::from_secs(300) => Ok(()),
        _ => Err((
            403,
            "HMAC signature does not match, a valid date or x-date header is required",
        )),
    }
}

/// A Spark websocket fake: checks the signed URL and the domain, then sends each connection's
/// scripted frames and closes.
pub struct SparkFake {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<Vec<Value>>>>,
}

impl SparkFake {
    pub async fn start(
        key: &'static str,
        secret: &'static str,
        path: &'static str,
        domain: &'static str,
    ) -> SparkFake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}{path}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<VecDeque<Vec<Value>>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (seen, frames) = (requests.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (seen, frames) = (seen.clone(), frames.clone());
                tokio::spawn(async move {
                    let check = |req: &WsRequest,
                                 resp: WsResponse|
                     -> Result<WsResponse, ErrorResponse> {
                        let uri = req.uri();
                        match spark_check("GET", uri.path(), uri.query().unwrap_or(""), key, secret)
                        {
                            Ok(()) => Ok(resp),
                            Err((code, message)) => {
                                let mut err = ErrorResponse::new(Some(
                                    json!({ "message": message }).to_string(),
                                ));
                                *err.status_mut() = StatusCode::from_u16(code).unwrap();
                                Err(err)
                            }
                        }
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
                        return;
                    };
                    let Some(Ok(Message::Text(text))) = ws.next().await else {
                        return;
                    };
                    let request: Value = serde_json::from_str(text.as_str()).unwrap();
                    seen.lock().unwrap().push(request.clone());
                    let reply = if request
                        .pointer("/parameter/chat/domain")
                        .and_then(Value::as_str)
                        != Some(domain)
                    {
                        vec![
                            json!({"header":{"code":10163,"message":"parameter domain invalid","sid":"cht0","status":2}}),
                        ]
                    } else {
                        let mut script = frames.lock().unwrap();
                        if script.len() > 1 {
                            script.pop_front().unwrap()
                        } else {
                            script.front().cloned().unwrap()
                        }
                    };
                    for frame in reply {
                        if frame == json!("hang") {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        if ws
                            .send(Message::Text(frame.to_string().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    let _ = ws.close(None).await;
                });
            }
        });
        SparkFake {
            url,
            requests,
            script,
        }
    }

    pub fn push(&self, frames: Vec<Value>) -> &Self {
        self.script.lock().unwrap().push_back(frames);
        self
    }
}

/// Spark answer frames for these deltas, status 0, 1..., 2 with usage on the last.
pub fn spark_frames(deltas: &[&str]) -> Vec<Value> {
    let n = deltas.len();
    deltas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let status = if i == 0 { 0 } else if i + 1 == n { 2 } else { 1 };
            let mut frame = json!({
                "header": {"code":0,"message":"Success","sid":"cht000b","status":status},
                "payload": {"choices": {"status":status,"seq":i,"text":[{"content":d,"role":"assistant","index":0}]}}
            });
            if status == 2 {
                frame["payload"]["usage"] = json!({"text":{"question_tokens":4,"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}});
            }
            frame
        })
        .collect()
}
