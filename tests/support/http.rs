//! Support for tests/http.rs: a local OpenAI-compatible model (lore-testkit's fake) that
//! streams and can hold its answer until the test releases it, a running `lore serve`
//! process, and small HTTP helpers over reqwest (JSON, multipart and server-sent events by hand, since the
//! project's reqwest has neither the json nor the multipart feature).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use lore_testkit::FakeOpenAi;
use lore_testkit::Reply as ModelReply;
use serde_json::Value;

/// Generous bound for anything the tests wait on (a loaded 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(120);

pub const ADMIN: &str = "admin-token-acme-0123456789";
pub const READER: &str = "read-token-acme-0123456789";
pub const OTHER: &str = "read-token-globex-0123456789";

/// The tokens every test server gets: an admin and a reader of acme, a reader of globex.
pub fn tokens() -> String {
    format!("{ADMIN}:acme:admin,{READER}:acme:read,{OTHER}:globex:read")
}

/// The fake model: streamed answers are `pieces`; when gated, it holds each answer after the
/// first piece until released. Non-streamed calls (condensing) echo the question after the
/// last "user: ".
#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    fake: FakeOpenAi,
}

impl FakeLlm {
    /// Starts the model; `gated` = false streams everything at once.
    pub async fn start(pieces: &[&str], gated: bool) -> Self {
        let fake = FakeOpenAi::start().await;
        let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        fake.respond_with(move |request| {
            if !request.is_stream() {
                let last = request.last_message();
                return ModelReply::text(last.rsplit("user: ").next().unwrap_or(last));
            }
            let answer = ModelReply::stream(&pieces);
            if gated { answer.hold_after(1) } else { answer }
        });
        Self {
            url: fake.base_url(),
            fake,
        }
    }

    /// A model that refuses every call with `status` and an OpenAI-shaped error, with a
    /// `Retry-After` header when one is given.
    pub async fn refusing(status: u16, retry_after: Option<&'static str>) -> Self {
        let fake = FakeOpenAi::start().await;
        fake.respond_with(move |_| {
            let body =
                serde_json::json!({"error": {"message": "refused by the fake", "type": "test"}});
            let reply = ModelReply::status(status, body);
            match retry_after {
                Some(seconds) => reply.header("Retry-After", seconds),
                None => reply,
            }
        });
        Self {
            url: fake.base_url(),
            fake,
        }
    }

    /// Lets held answers continue.
    pub fn release(&self) {
        self.fake.release();
    }

    /// The bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.fake.requests().into_iter().map(|r| r.body).collect()
    }
}

/// A running `lore serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// stderr lines, as they arrive.
    pub log: Arc<Mutex<Vec<String>>>,
    lines: Option<std::sync::mpsc::Receiver<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `lore` binary cargo built for these tests.
pub fn lore_bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_lore").into()
}

/// A free port on 127.0.0.1 (bound, then released for lore to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts `lore serve` on `data` with the fake model (or none) and extra env, and
    /// waits until /healthz answers.
    pub async fn start(data: &Path, llm: Option<&FakeLlm>, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(lore_bin());
        cmd.arg("serve")
            .env("LORE_STORE__DATA_DIR", data)
            .env("LORE_EMBEDDING__PROVIDER", "none")
            .env("LORE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("LORE_HTTP_TOKENS", tokens())
            .env("LORE_LOG", "warn,lore=info")
            .env_remove("DISCORD_TOKEN")
            .env_remove("TELEGRAM_BOT_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match llm {
            Some(llm) => {
                cmd.env("LORE_LLM__PROVIDER", "openai")
                    .env("LORE_LLM__BASE_URL", &llm.url)
                    .env("LORE_LLM__MODEL", "test-model")
                    .env("OPENAI_API_KEY", "sk-test-key");
            }
            None => {
                cmd.env("LORE_LLM__PROVIDER", "none");
            }
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("lore runs");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            lines: Some(lines),
        };
        let client = reqwest::Client::new();
        let mut server = server;
        let up = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    // Let the reader thread collect the last lines first.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    panic!("lore serve exited ({status}):\n{}", server.log_text());
                }
                if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
                    && r.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        if up.is_err() {
            panic!("lore serve did not come up:\n{}", server.log_text());
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `needle`.
    pub async fn wait_for_log(&mut self, needle: &str) {
        let lines = self.lines.take().expect("one waiter at a time");
        let wanted = needle.to_owned();
        let (found, lines) = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + PATIENCE;
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                match lines.recv_timeout(left) {
                    Ok(line) if line.contains(&wanted) => return (true, lines),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            (false, lines)
        })
        .await
        .unwrap();
        self.lines = Some(lines);
        assert!(found, "no log line with {needle:?}:\n{}", self.log_text());
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; panics past the bound.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lore serve did not exit:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A response's status, headers and JSON body (Null when not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn get(url: &str, token: Option<&str>) -> Reply {
    let mut r = client().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    send(r).await
}

pub async fn post_json(url: &str, token: Option<&str>, body: &Value) -> Reply {
    let mut r = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    send(r).await
}

/// A multipart/form-data body: (field, file name, bytes) parts.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "lore-test-boundary-7d1f";
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(name) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{field}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn upload(url: &str, token: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Reply {
    let (content_type, body) = multipart(parts);
    send(
        client()
            .post(url)
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

/// Server-sent events of one response, read as they arrive: (event name, data).
pub struct Events {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: String,
}

impl Events {
    pub async fn open(url: &str, token: &str, body: &Value) -> Self {
        let response = client()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or None at the end of the stream.
    pub async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comments
                }
                return Some((name, data));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("the stream stalled")?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.expect("stream readable")));
        }
    }

    /// Every remaining event.
    pub async fn rest(&mut self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}
