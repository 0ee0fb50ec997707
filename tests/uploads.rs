//! Uploads in flight (issue 16), against the built `lore serve` on 127.0.0.1: files stream to
//! temporary files within one byte budget (`ingest.max_inflight_mib`); an upload that finds
//! no room is refused with 503 `uploads_busy` and Retry-After; a file over
//! `ingest.max_file_mib` is refused while it streams, before the client has sent it all;
//! and the budget and the temporary files are given back after success and after failure.
//!
//! The client side of a held upload is a raw TCP connection, so a test decides exactly how
//! much of the body the server has seen.

#[path = "support/http.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// A server whose whole upload budget is 1 MiB (so any upload takes all of it), files up to
/// 1 MiB, a one-second wait for budget, and its temporary files under `tmp`.
async fn server(data: &Path, tmp: &Path) -> Server {
    let tmp = tmp.to_str().unwrap().to_owned();
    let tmp: &'static str = Box::leak(tmp.into_boxed_str());
    Server::start(
        data,
        None,
        &[
            ("LORE_INGEST__MAX_FILE_MIB", "1"),
            ("LORE_INGEST__MAX_INFLIGHT_MIB", "1"),
            ("LORE_INGEST__INFLIGHT_WAIT_SECS", "1"),
            ("TMPDIR", tmp),
        ],
    )
    .await
}

/// The `lore_uploads_inflight_bytes` gauge of /metrics.
async fn in_flight(server: &Server) -> u64 {
    let metrics = get(&server.url("/metrics"), None).await.text;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("lore_uploads_inflight_bytes "))
        .unwrap_or_else(|| panic!("no lore_uploads_inflight_bytes in\n{metrics}"))
        .parse::<f64>()
        .unwrap() as u64
}

/// Polls /metrics until the gauge reads `want` (a condition, not a timed sleep).
async fn wait_in_flight(server: &Server, want: u64) {
    let seen = tokio::time::timeout(PATIENCE, async {
        loop {
            if in_flight(server).await == want {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "in-flight bytes never reached {want} (now {})",
        in_flight(server).await
    );
}

/// Temporary upload files left under `tmp`.
fn spooled_files(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lore-upload-"))
        .collect()
}

/// An upload whose body is sent in parts over a raw connection.
struct HeldUpload {
    stream: TcpStream,
    body: Vec<u8>,
    sent: usize,
}

impl HeldUpload {
    /// Sends the request head (with the whole body's Content-Length) and the first `first`
    /// bytes of the body.
    async fn start(server: &Server, file: &str, bytes: &[u8], first: usize) -> Self {
        let (content_type, body) = multipart(&[("file", Some(file), bytes)]);
        let addr = server.base.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut upload = Self {
            stream,
            body,
            sent: 0,
        };
        upload.send_until(first).await;
        upload
    }

    async fn send_until(&mut self, end: usize) {
        self.stream
            .write_all(&self.body[self.sent..end])
            .await
            .unwrap();
        self.stream.flush().await.unwrap();
        self.sent = end;
    }

    /// Sends the rest of the body.
    async fn finish(&mut self) {
        self.send_until(self.body.len()).await;
    }

    /// The response: status, head and JSON body (read by Content-Length).
    async fn response(&mut self) -> (u16, String, Value) {
        let read = async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before a response");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            while buf.len() < head_end + length {
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the response body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head[9..12].parse().unwrap();
            let json = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
            (status, head, json)
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("no response while the upload is held")
    }
}

/// Text of `n` bytes that splits into sentences.
fn text(n: usize) -> Vec<u8> {
    let sentence = b"Oolong tea is partly oxidised and grown in Fujian and Taiwan. ";
    sentence.iter().copied().cycle().take(n).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_upload_is_refused_while_the_first_holds_the_whole_budget() {
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = server(data.path(), tmp.path()).await;
    assert_eq!(in_flight(&server).await, 0);

    // The first upload is half sent: it holds the whole 1 MiB budget while it streams.
    let notes = text(200 * 1024);
    let mut first = HeldUpload::start(&server, "first.txt", &notes, 100 * 1024).await;
    wait_in_flight(&server, MIB as u64).await;
    assert_eq!(spooled_files(tmp.path()).len(), 1, "the upload is spooled");

    // The second finds no room within the wait: 503 uploads_busy with Retry-After.
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[("file", Some("second.txt"), b"Green tea is not oxidised.")],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["error"]["type"], "uploads_busy", "{}", r.text);
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1"),
        "{:?}",
        r.headers
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again"),
        "{}",
        r.text
    );

    // The first finishes and is stored; the budget and its temporary file are given back.
    first.finish().await;
    let (status, head, json) = first.response().await;
    assert_eq!(status, 200, "{head}{json}");
    assert_eq!(json["results"][0]["status"], "stored", "{json}");
    assert_eq!(in_flight(&server).await, 0);
    assert!(spooled_files(tmp.path()).is_empty());

    // Now the second goes in.
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[("file", Some("second.txt"), b"Green tea is not oxidised.")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][0]["status"], "stored", "{}", r.text);
    assert_eq!(in_flight(&server).await, 0);
    assert!(spooled_files(tmp.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_over_the_limit_is_refused_while_it_streams() {
    let data = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let server = server(data.path(), tmp.path()).await;

    // 1.5 MiB against a 1 MiB limit (under the request body limit, so lore itself decides):
    // only 1.25 MiB is sent, and the refusal comes before the rest, which is never sent.
    let big = text(3 * MIB / 2);
    let mut held = HeldUpload::start(&server, "big.txt", &big, 5 * MIB / 4).await;
    let (status, head, json) = held.response().await;
    assert_eq!(status, 413, "{head}{json}");
    assert_eq!(json["error"]["type"], "too_large", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 MiB limit"),
        "{json}"
    );
    drop(held);

    // After the failure the budget is back to 0, no temporary file is left and nothing
    // was stored.
    wait_in_flight(&server, 0).await;
    assert!(spooled_files(tmp.path()).is_empty());
    let sources = get(&server.url("/v1/sources"), Some(READER)).await;
    assert_eq!(
        sources.json["sources"],
        serde_json::json!([]),
        "{}",
        sources.text
    );

    // A file within the limit still goes in, and gives everything back too.
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[("file", Some("small.txt"), &text(4096))],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][0]["status"], "stored", "{}", r.text);
    assert_eq!(in_flight(&server).await, 0);
    assert!(spooled_files(tmp.path()).is_empty());
}

/// An upload is loaded under the same `[ingest]` limits as `lore ingest`: HTML nested past
/// `max_nesting_depth` is refused naming the limit, and the other file of the request goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_loaded_within_the_ingest_limits() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        None,
        &[("LORE_INGEST__MAX_NESTING_DEPTH", "32")],
    )
    .await;
    let nested = format!(
        "<html><body>{}deep{}</body></html>",
        "<div>".repeat(200),
        "</div>".repeat(200)
    );
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[
            ("file", Some("nested.html"), nested.as_bytes()),
            (
                "file",
                Some("tea.md"),
                b"# Tea\n\nOolong is partly oxidised.\n",
            ),
        ],
    )
    .await;
    let results = r.json["results"].as_array().cloned().unwrap_or_default();
    let nested = results
        .iter()
        .find(|i| i.to_string().contains("nested.html"))
        .unwrap_or_else(|| panic!("no result for nested.html: {}", r.text));
    assert_eq!(nested["status"], "failed", "{}", r.text);
    assert!(nested.to_string().contains("nesting"), "{}", r.text);
    let tea = results
        .iter()
        .find(|i| i.to_string().contains("tea.md"))
        .unwrap_or_else(|| panic!("no result for tea.md: {}", r.text));
    assert_eq!(tea["status"], "stored", "{}", r.text);
}
