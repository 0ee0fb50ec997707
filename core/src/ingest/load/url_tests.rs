//! Fetch tests against a raw HTTP server on 127.0.0.1 (a std thread; no network needed).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// What the test server sends for a request path: raw bytes of a full HTTP response.
type Handler = dyn Fn(&str) -> Vec<u8> + Send + Sync;

/// Serves `handler` on 127.0.0.1 until the test ends; returns the base URL and a count of
/// requests received.
fn serve(handler: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let handler: Arc<Handler> = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let _ = stream.write_all(&handler(&path));
            });
        }
    });
    (base, hits)
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn local() -> LoadLimits {
    LoadLimits {
        allow_private_hosts: true,
        fetch_timeout: Duration::from_secs(10),
        ..LoadLimits::default()
    }
}

const PAGE: &str =
    "<html><head><title>指南</title></head><body><h1>原则</h1><p>写清楚 指令。</p></body></html>";

#[tokio::test]
async fn html_page_is_fetched_and_loaded() {
    let (base, _) = serve(|_| {
        response(
            "200 OK",
            &[("Content-Type", "text/html; charset=utf-8")],
            PAGE.as_bytes(),
        )
    });
    let url = format!("{base}/guide");
    let doc = fetch_url(&url, &local()).await.unwrap();
    assert_eq!(
        (doc.kind, doc.source.as_str()),
        (DocKind::Html, url.as_str())
    );
    assert_eq!(doc.sections[0].heading.as_deref(), Some("指南 > 原则"));
    assert!(doc.sections[0].text.contains("写清楚指令。"));
}

#[tokio::test]
async fn redirects_are_followed_and_the_final_url_is_the_source() {
    let (base, _) = serve(|path| match path {
        "/old" => response("301 Moved Permanently", &[("Location", "/mid")], b""),
        "/mid" => response("302 Found", &[("Location", "/notes.md")], b""),
        _ => response(
            "200 OK",
            &[("Content-Type", "text/plain")],
            "# 笔记\n内容".as_bytes(),
        ),
    });
    let doc = fetch_url(&format!("{base}/old"), &local()).await.unwrap();
    assert_eq!(doc.source, format!("{base}/notes.md"));
    // text/plain, but the .md extension is more specific.
    assert_eq!(doc.kind, DocKind::Markdown);
    assert_eq!(doc.sections[0].heading.as_deref(), Some("笔记"));
}

#[tokio::test]
async fn redirect_loops_stop_at_the_limit() {
    let (base, hits) = serve(|_| response("302 Found", &[("Location", "/again")], b""));
    let limits = LoadLimits {
        max_redirects: 2,
        ..local()
    };
    let err = fetch_url(&format!("{base}/start"), &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("more than 2 redirects"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn loopback_is_refused_unless_private_hosts_are_allowed() {
    let (base, hits) = serve(|_| response("200 OK", &[("Content-Type", "text/plain")], b"secret"));
    let err = fetch_url(&format!("{base}/admin"), &LoadLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request may reach the host"
    );
    let err = fetch_url("http://localhost:9/x", &LoadLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn redirect_to_another_scheme_is_refused() {
    let (base, _) = serve(|_| response("302 Found", &[("Location", "file:///etc/passwd")], b""));
    let err = fetch_url(&format!("{base}/x"), &local()).await.unwrap_err();
    assert!(matches!(err, LoadError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("file:///etc/passwd"), "{err}");
}

#[tokio::test]
async fn non_http_schemes_are_refused() {
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/a.txt",
        "gopher://x",
        "not a url",
    ] {
        let err = fetch_url(url, &local()).await.unwrap_err();
        assert!(matches!(err, LoadError::Forbidden { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_cut_off_even_without_content_length() {
    let (base, _) = serve(|_| {
        let mut out =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
        out.extend(std::iter::repeat_n(b'a', 300_000));
        out
    });
    let limits = LoadLimits {
        max_file_bytes: 100_000,
        ..local()
    };
    let err = fetch_url(&format!("{base}/big.txt"), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LoadError::TooLarge { limit: 100_000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("/big.txt"), "{err}");
}

#[tokio::test]
async fn declared_oversized_body_is_refused() {
    let (base, _) = serve(|_| {
        response(
            "200 OK",
            &[("Content-Type", "application/pdf")],
            &[b'%'; 5000],
        )
    });
    let limits = LoadLimits {
        max_file_bytes: 1000,
        ..local()
    };
    let err = fetch_url(&format!("{base}/a.pdf"), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LoadError::TooLarge { size: 5000, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_with_a_clear_error() {
    let (base, _) = serve(|_| {
        std::thread::sleep(Duration::from_secs(5));
        Vec::new()
    });
    let limits = LoadLimits {
        fetch_timeout: Duration::from_millis(300),
        ..local()
    };
    let err = fetch_url(&format!("{base}/slow"), &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Fetch { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn http_errors_name_the_status_and_url() {
    let (base, _) = serve(|_| response("404 Not Found", &[], b"nope"));
    let err = fetch_url(&format!("{base}/gone.html"), &local())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("/gone.html"), "{msg}");
}

#[tokio::test]
async fn gbk_page_is_decoded_by_its_charset() {
    let (gbk, _, _) = encoding_rs::GBK.encode("<p>机器学习</p>");
    let body = gbk.into_owned();
    let (base, _) = serve(move |_| {
        response(
            "200 OK",
            &[("Content-Type", "text/html; charset=GBK")],
            &body,
        )
    });
    let doc = fetch_url(&format!("{base}/"), &local()).await.unwrap();
    assert_eq!(doc.sections[0].text, "机器学习");
}

#[tokio::test]
async fn unknown_content_type_without_extension_is_unsupported() {
    let (base, _) = serve(|_| response("200 OK", &[("Content-Type", "image/png")], b"\x89PNG"));
    let err = fetch_url(&format!("{base}/logo"), &local())
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err:?}");
}

#[test]
fn kind_prefers_content_type_then_extension() {
    let url = |s: &str| Url::parse(s).unwrap();
    assert_eq!(
        kind_for(&url("http://h/a"), Some("application/pdf")),
        Some(DocKind::Pdf)
    );
    assert_eq!(
        kind_for(&url("http://h/a.pdf"), Some("text/html")),
        Some(DocKind::Html)
    );
    assert_eq!(
        kind_for(&url("http://h/a.vtt"), Some("text/plain")),
        Some(DocKind::Subtitles)
    );
    assert_eq!(
        kind_for(&url("http://h/a.md"), Some("application/octet-stream")),
        Some(DocKind::Markdown)
    );
    assert_eq!(kind_for(&url("http://h/a.docx"), None), Some(DocKind::Docx));
    assert_eq!(kind_for(&url("http://h/a"), Some("image/png")), None);
}

/// Every special-purpose range is refused from the address alone, before any connection
/// (the message is the pre-connect check's, not the connected-socket one's).
#[tokio::test]
async fn special_purpose_addresses_are_refused_before_connecting() {
    for url in [
        "http://198.18.0.1/",
        "http://192.0.0.8/",
        "http://192.0.2.1/",
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://240.0.0.1/",
        "http://0.1.2.3/",
        "http://[100::1]/",
        "http://[2001:db8::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:7f00:1::1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "http://[::7f00:1]/",
        "http://[::ffff:a00:1]/",
    ] {
        let err = fetch_url(url, &LoadLimits::default()).await.unwrap_err();
        assert!(matches!(err, LoadError::Forbidden { .. }), "{url}: {err:?}");
        let text = err.to_string();
        assert!(text.contains("is not a public address"), "{url}: {text}");
        assert!(
            !text.contains("connected to"),
            "{url} was connected to: {text}"
        );
    }
}
