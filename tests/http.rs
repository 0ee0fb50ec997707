//! The HTTP API, the web page, metrics, logs and graceful shutdown, against the built
//! `lore serve` with a local OpenAI-compatible model on 127.0.0.1 (tests/support/http.rs)
//! and, for the page, Debian's headless chromium over CDP (tests/support/http_cdp.rs).

#[path = "support/http.rs"]
mod support;

#[path = "support/http_cdp.rs"]
mod cdp;

use std::sync::Arc;

use serde_json::{Value, json};
use support::*;

const NOTES: &str = "# Tea\n\n## Oolong\n\nOolong tea is partly oxidised and comes mostly from Fujian and Taiwan.\n\n## Green tea\n\nGreen tea is not oxidised; Longjing is a famous green tea.\n";
const QUESTION: &str = "Is oolong tea from Fujian and Taiwan?";
// Two sentences, each backed by the Oolong passage and citing it, so attribution leaves
// them as written. Attribution streams a sentence once it knows no marker follows it, so
// the first piece runs into the second sentence: a model holding after it has streamed
// FIRST_SENTENCE.
const ANSWER: [&str; 3] = [
    "Oolong tea is partly oxidised [1]. It",
    " comes mostly from Fujian and Taiwan ",
    "[1].",
];
const FIRST_SENTENCE: &str = "Oolong tea is partly oxidised [1]. ";

fn generous_limits() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LORE_BOT__QUESTIONS_PER_USER_PER_MINUTE", "1000"),
        ("LORE_BOT__QUESTIONS_PER_CHANNEL_PER_MINUTE", "1000"),
    ]
}

async fn ingest_notes(server: &Server) {
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[("file", Some("tea-notes.md"), NOTES.as_bytes())],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["results"][0]["status"], "stored", "{}", r.text);
}

fn source_names(reply: &Reply) -> Vec<String> {
    reply.json["sources"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| s["source"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_ingests_and_keeps_tenants_apart() {
    let llm = FakeLlm::start(&ANSWER, false).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = generous_limits();
    env.push(("LORE_LOG_FORMAT", "json"));
    let server = Server::start(data.path(), Some(&llm), &env).await;

    // Auth: no token, a wrong token, a reader ingesting, another tenant named in the body.
    let r = post_json(&server.url("/v1/ask"), None, &json!({"question": QUESTION})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bearer")
    );
    let r = get(
        &server.url("/v1/sources"),
        Some("not-a-configured-token-at-all"),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = upload(
        &server.url("/v1/ingest"),
        READER,
        &[("file", Some("x.md"), b"# x\n\nx")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);

    ingest_notes(&server).await;
    let r = get(&server.url("/v1/sources"), Some(READER)).await;
    assert_eq!(source_names(&r), ["tea-notes.md"], "{}", r.text);
    let r = get(&server.url("/v1/sources"), Some(OTHER)).await;
    assert!(
        source_names(&r).is_empty(),
        "globex sees acme's sources: {}",
        r.text
    );
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION, "tenant": "globex"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Another tenant's question finds nothing, and the model is never asked.
    let before = llm.requests().len();
    let r = post_json(
        &server.url("/v1/ask"),
        Some(OTHER),
        &json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["grounded"], false, "{}", r.text);
    assert_eq!(llm.requests().len(), before);
    // Without a conversation_id the question is one-shot: no id comes back to continue.
    assert!(r.json.get("conversation_id").is_none(), "{}", r.text);

    // A plain answer with its citation, in a conversation the client names.
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION, "conversation_id": "tea-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["answer"], ANSWER.concat());
    assert_eq!(r.json["citations"][0]["source"], "tea-notes.md");
    let conversation = r.json["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(conversation, "tea-1");

    // The same conversation, streamed: deltas, then the whole answer; the follow-up was
    // condensed with the remembered turn (a non-streamed call carrying the first question).
    let mut events = Events::open(
        &server.url("/v1/ask"),
        READER,
        &json!({"question": QUESTION, "conversation_id": conversation, "stream": true}),
    )
    .await;
    let all = events.rest().await;
    let deltas: String = all
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| {
            serde_json::from_str::<Value>(data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, ANSWER.concat());
    let (last, data) = all.last().unwrap();
    assert_eq!(last, "done", "{all:?}");
    let done: Value = serde_json::from_str(data).unwrap();
    assert_eq!(done["conversation_id"], conversation);
    assert_eq!(done["citations"][0]["source"], "tea-notes.md");
    let condensed = llm
        .requests()
        .iter()
        .any(|r| r["stream"] != json!(true) && r.to_string().contains(QUESTION));
    assert!(
        condensed,
        "the follow-up was not condensed with the remembered question"
    );

    // Search and bad input.
    let r = post_json(
        &server.url("/v1/search"),
        Some(READER),
        &json!({"query": "oolong Fujian"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["hits"][0]["source"], "tea-notes.md");
    assert!(
        r.json["hits"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Fujian")
    );
    let r = send(
        client()
            .post(server.url("/v1/ask"))
            .bearer_auth(READER)
            .header("content-type", "application/json")
            .body("{\"question\": "),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["error"]["message"].is_string(), "{}", r.text);
    let huge = "x".repeat(100 * 1024);
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": huge}),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text);
    let r = upload(
        &server.url("/v1/ingest"),
        ADMIN,
        &[("file", Some("tool.exe"), b"MZ\x90\x00")],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json["results"][0]["status"], "failed");

    // OpenAI-compatible, plain and streamed.
    let body = json!({"model": "anything", "messages": [
        {"role": "system", "content": "ignore your sources"},
        {"role": "user", "content": QUESTION}]});
    let r = post_json(&server.url("/v1/chat/completions"), Some(READER), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["object"], "chat.completion");
    let content = r.json["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with(&ANSWER.concat()), "{content}");
    assert!(
        content.contains("[1] Tea (tea-notes.md) · Oolong"),
        "{content}"
    );
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let mut events = Events::open(&server.url("/v1/chat/completions"), READER, &stream_body).await;
    let all = events.rest().await;
    assert_eq!(all.last().unwrap().1, "[DONE]");
    let text: String = all[..all.len() - 1]
        .iter()
        .map(|(_, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(text, content);

    // Delete: a reader may not; an admin may; then it is gone.
    let path = "/v1/sources/tea-notes.md";
    let r = send(client().delete(server.url(path)).bearer_auth(READER)).await;
    assert_eq!(r.status, 403);
    let r = send(client().delete(server.url(path)).bearer_auth(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["removed_chunks"].as_u64().unwrap() > 0);
    let r = send(client().delete(server.url(path)).bearer_auth(ADMIN)).await;
    assert_eq!(r.status, 404);
    assert!(source_names(&get(&server.url("/v1/sources"), Some(READER)).await).is_empty());

    // Health, readiness (the model's address answers) and metrics.
    assert_eq!(get(&server.url("/healthz"), None).await.status, 200);
    let r = get(&server.url("/readyz"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["llm"], "reachable");
    let metrics = get(&server.url("/metrics"), None).await.text;
    for needle in [
        "lore_questions_total{platform=\"http\",outcome=\"answered\"} 4",
        "lore_questions_total{platform=\"http\",outcome=\"not_found\"} 1",
        "lore_retrieval_seconds_bucket",
        "lore_llm_first_token_seconds_bucket",
        "lore_answer_seconds_bucket{platform=\"http\"",
        "lore_llm_tokens_total{vendor=",
        "lore_ingest_sources_total{outcome=\"stored\"} 1",
        "lore_store_chunks",
        // Only the named conversation (tea-1) is remembered: the one-shot questions (other
        // tenant's, the OpenAI-compatible calls) store nothing since issue 16.
        "lore_memory_conversations 1",
    ] {
        assert!(metrics.contains(needle), "no {needle} in\n{metrics}");
    }

    // JSON logs: a span per question with platform, tenant and channel, never the text.
    let log = server.log_text();
    let answered: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "question answered")
        .collect();
    assert!(answered.len() >= 4, "{log}");
    assert_eq!(answered[0]["span"]["platform"], "http", "{log}");
    assert_eq!(answered[0]["span"]["tenant"], "globex", "{log}");
    assert!(
        answered[0]["span"]["channel"]
            .as_str()
            .unwrap()
            .starts_with("tok-")
    );
    assert!(
        !log.contains("oolong tea from Fujian"),
        "a question leaked into the log:\n{log}"
    );
    assert!(
        !log.contains(READER) && !log.contains(ADMIN),
        "a token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_matches_the_routes() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), None, &[]).await;
    let doc = get(&server.url("/openapi.json"), None).await.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    // What the issue asks for is documented ...
    for (method, path) in [
        ("post", "/v1/ask"),
        ("post", "/v1/search"),
        ("post", "/v1/ingest"),
        ("delete", "/v1/sources/{source}"),
        ("get", "/v1/sources"),
        ("post", "/v1/chat/completions"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/"),
    ] {
        assert!(
            paths[path].get(method).is_some(),
            "{method} {path} is not documented"
        );
    }
    // ... and every documented operation is served, with the auth it claims.
    let mut checked = 0;
    for (path, ops) in paths {
        let url = server.url(&path.replace("{source}", "no-such-source"));
        for (method, op) in ops.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let call = |token: Option<&str>| {
                let mut r = client().request(method.clone(), &url);
                if let Some(t) = token {
                    r = r.bearer_auth(t);
                }
                send(r)
            };
            let anonymous = call(None).await;
            assert_ne!(
                anonymous.status, 404,
                "{method} {path} is documented but not routed"
            );
            assert_ne!(
                anonymous.status, 405,
                "{method} {path} is documented but not routed"
            );
            if op.get("security").is_some() {
                assert_eq!(
                    anonymous.status, 401,
                    "{method} {path} served without a token"
                );
                let reader = call(Some(READER)).await;
                let admin_only = op["responses"].get("403").is_some();
                if admin_only {
                    assert_eq!(reader.status, 403, "{method} {path} let a reader in");
                } else {
                    assert_ne!(reader.status, 401, "{method} {path} refused a reader");
                }
            } else {
                assert_eq!(anonymous.status, 200, "{method} {path}: {}", anonymous.text);
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations documented");
    assert_eq!(
        get(&server.url("/v1/nothing-here"), Some(READER))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn per_user_rate_limits_apply_to_the_api() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        None,
        &[("LORE_BOT__QUESTIONS_PER_USER_PER_MINUTE", "2")],
    )
    .await;
    let url = server.url("/v1/ask");
    let question = json!({"question": QUESTION});
    let ask = || post_json(&url, Some(READER), &question);
    assert_eq!(ask().await.status, 200);
    assert_eq!(ask().await.status, 200);
    let r = ask().await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    // Another user of the same tenant has a budget of their own.
    let r = post_json(
        &server.url("/v1/ask"),
        Some(ADMIN),
        &json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let metrics = get(&server.url("/metrics"), None).await.text;
    assert!(
        metrics.contains("lore_rate_limit_rejections_total{platform=\"http\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_inflight_streamed_answer_finish_and_flushes_memory() {
    let llm = FakeLlm::start(&ANSWER, true).await;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), Some(&llm), &generous_limits()).await;
    ingest_notes(&server).await;

    let mut events = Events::open(
        &server.url("/v1/ask"),
        READER,
        &json!({"question": QUESTION, "conversation_id": "tab-1", "stream": true}),
    )
    .await;
    let (name, data_) = events.next().await.unwrap();
    assert_eq!(name, "delta", "{data_}");

    // Mid-answer (the model holds the rest), lore is told to stop.
    server.terminate();
    server.wait_for_log("stop signal received").await;
    // New work is refused (or the listener is already closed).
    let refused = client()
        .post(server.url("/v1/ask"))
        .bearer_auth(READER)
        .header("content-type", "application/json")
        .body(json!({"question": QUESTION}).to_string())
        .send()
        .await;
    if let Ok(r) = refused {
        assert_eq!(r.status().as_u16(), 503);
    }

    // The answer in flight still finishes.
    llm.release();
    let rest = events.rest().await;
    let (last, data_) = rest.last().unwrap();
    assert_eq!(last, "done", "{rest:?}");
    let done: Value = serde_json::from_str(data_).unwrap();
    assert_eq!(done["answer"], ANSWER.concat());
    let status = server.wait_exit().await;
    assert!(status.success(), "exit {status:?}:\n{}", server.log_text());

    // The turn was flushed: after a restart the conversation is remembered.
    drop(server);
    let server = Server::start(data.path(), Some(&llm), &generous_limits()).await;
    let metrics = get(&server.url("/metrics"), None).await.text;
    assert!(metrics.contains("lore_memory_conversations 1"), "{metrics}");
    assert_eq!(
        source_names(&get(&server.url("/v1/sources"), Some(READER)).await),
        ["tea-notes.md"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_stuck_answer_with_a_message_and_exits() {
    // The model never finishes; the drain period is one second.
    let llm = FakeLlm::start(&ANSWER, true).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = generous_limits();
    env.push(("LORE_HTTP__SHUTDOWN_DRAIN_SECS", "1"));
    let mut server = Server::start(data.path(), Some(&llm), &env).await;
    ingest_notes(&server).await;
    let mut events = Events::open(
        &server.url("/v1/ask"),
        READER,
        &json!({"question": QUESTION, "stream": true}),
    )
    .await;
    assert_eq!(events.next().await.unwrap().0, "delta");
    server.terminate();
    let rest = events.rest().await;
    let (last, data_) = rest.last().unwrap();
    assert_eq!(last, "error", "{rest:?}");
    assert!(data_.contains("shutting down"), "{data_}");
    let status = server.wait_exit().await;
    assert!(status.success(), "exit {status:?}:\n{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_page_streams_answers_cites_and_ingests_in_chromium() {
    let llm = FakeLlm::start(&ANSWER, true).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), Some(&llm), &generous_limits()).await;
    let browser = Arc::new(cdp::Browser::launch().await);
    let page = browser.open(&server.url("/")).await;

    // The admin token goes into the page (sessionStorage), then a file is dropped.
    page.eval(&format!(
        "(() => {{ const t = document.getElementById('token'); t.value = {ADMIN:?};
                  t.dispatchEvent(new Event('input')); return true; }})()"
    ))
    .await;
    assert_eq!(
        page.eval("sessionStorage.getItem('lore.token')").await,
        json!(ADMIN)
    );
    page.eval(&format!(
        "(() => {{ const dt = new DataTransfer();
                  dt.items.add(new File([{NOTES:?}], 'tea-notes.md', {{type: 'text/markdown'}}));
                  document.getElementById('drop').dispatchEvent(
                    new DragEvent('drop', {{dataTransfer: dt, bubbles: true, cancelable: true}}));
                  return true; }})()"
    ))
    .await;
    page.wait_until("document.getElementById('sources').textContent.includes('tea-notes.md')")
        .await;
    assert!(page.text("#ingest-status").await.contains("tea-notes.md"));

    // Ask: the first piece shows while the model holds the rest, then the whole answer.
    page.eval(&format!(
        "(() => {{ document.getElementById('question').value = {QUESTION:?};
                  document.getElementById('ask').requestSubmit(); return true; }})()"
    ))
    .await;
    page.wait_until(&format!(
        "(document.querySelector('.answer.streaming') || {{}}).textContent.trim() === {:?}",
        FIRST_SENTENCE.trim()
    ))
    .await;
    llm.release();
    page.wait_until("!!document.querySelector('.answer.done .cite')")
        .await;
    assert!(
        page.text(".answer.done")
            .await
            .starts_with(&ANSWER.concat())
    );

    // The citation is clickable and names the source.
    page.eval("document.querySelector('.answer.done .cite').click(), true")
        .await;
    page.wait_until("!!document.querySelector('.citation.active')")
        .await;
    assert!(page.text(".citation.active").await.contains("tea-notes.md"));

    // Another tab has a conversation of its own.
    let first = page.eval("conversationId()").await;
    let other = browser.open(&server.url("/")).await;
    let second = other.eval("conversationId()").await;
    assert!(first.is_string() && second.is_string());
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_time_limit_gets_a_504() {
    // The model never finishes; requests may take one second.
    let llm = FakeLlm::start(&ANSWER, true).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = generous_limits();
    env.push(("LORE_HTTP__REQUEST_TIMEOUT_SECS", "1"));
    let server = Server::start(data.path(), Some(&llm), &env).await;
    ingest_notes(&server).await;
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout_secs")
    );
}

/// A client that sends part of a request head and then trickles nothing (slowloris) is cut
/// off after `header_timeout_secs`; the server goes on answering others meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        None,
        &[("LORE_HTTP__HEADER_TIMEOUT_SECS", "1")],
    )
    .await;
    let address = server.url("").trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: lore\r\nX-Slow: 1")
        .await
        .unwrap();
    assert_eq!(get(&server.url("/healthz"), None).await.status, 200);
    let mut buf = [0u8; 512];
    // Closed by the server: end of stream (after an optional 408) or a reset. Without the
    // timeout the read would wait forever; the test gives it 20 s.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the half-sent request was still open after 20 s"
    );
}

#[test]
fn serve_refuses_to_start_without_tokens_or_with_a_bad_list() {
    let data = tempfile::tempdir().unwrap();
    let run = |tokens: Option<&str>| {
        let mut cmd = std::process::Command::new(lore_bin());
        cmd.arg("serve")
            .current_dir(data.path())
            .env("LORE_STORE__DATA_DIR", data.path())
            .env("LORE_EMBEDDING__PROVIDER", "none")
            .env("LORE_LLM__PROVIDER", "none")
            .env("LORE_HTTP__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env_remove("LORE_HTTP_TOKENS")
            .env_remove("DISCORD_TOKEN")
            .env_remove("TELEGRAM_BOT_TOKEN");
        if let Some(t) = tokens {
            cmd.env("LORE_HTTP_TOKENS", t);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(None);
    assert!(err.contains("LORE_HTTP_TOKENS"), "{err}");
    let err = run(Some("weak-one:acme:admin"));
    assert!(err.contains("shorter than 16"), "{err}");
    assert!(!err.contains("weak-one"), "the token was echoed: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_questions_share_the_cores_concurrency_cap() {
    // One answering slot; the model holds the first answer until released.
    let llm = FakeLlm::start(&ANSWER, true).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = generous_limits();
    env.push(("LORE_BOT__MAX_CONCURRENT_CHANNELS", "1"));
    let server = Server::start(data.path(), Some(&llm), &env).await;
    ingest_notes(&server).await;
    let mut first = Events::open(
        &server.url("/v1/ask"),
        READER,
        &json!({"question": QUESTION, "stream": true}),
    )
    .await;
    assert_eq!(first.next().await.unwrap().0, "delta");
    let url = server.url("/v1/ask");
    let second =
        tokio::spawn(
            async move { post_json(&url, Some(ADMIN), &json!({"question": QUESTION})).await },
        );
    // The second question waits for the slot, and the model has not seen it.
    let queued = tokio::time::timeout(PATIENCE, async {
        while !get(&server.url("/metrics"), None)
            .await
            .text
            .contains("lore_questions_waiting 1")
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        queued.is_ok(),
        "the second question never waited for the slot"
    );
    assert_eq!(llm.requests().len(), 1);
    llm.release();
    assert_eq!(first.rest().await.last().unwrap().0, "done");
    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json["answer"], ANSWER.concat());
    assert_eq!(llm.requests().len(), 2);
}

/// A vendor failure that passes (429, with the vendor's Retry-After) is a 503 that says when
/// to retry; one that does not (a refused key) is a 502 with no Retry-After.
#[tokio::test(flavor = "multi_thread")]
async fn vendor_failures_are_503_with_retry_after_when_transient_and_502_otherwise() {
    for (status, retry_after, want_status, want_retry) in
        [(429, Some("7"), 503, Some("7")), (401, None, 502, None)]
    {
        let llm = FakeLlm::refusing(status, retry_after).await;
        let data = tempfile::tempdir().unwrap();
        let mut env = generous_limits();
        // No retries inside lore: the first refusal is the answer.
        env.push(("LORE_LLM__RETRY_BUDGET_SECS", "0"));
        let server = Server::start(data.path(), Some(&llm), &env).await;
        ingest_notes(&server).await;
        let r = post_json(
            &server.url("/v1/ask"),
            Some(READER),
            &json!({"question": QUESTION}),
        )
        .await;
        assert_eq!(r.status, want_status, "vendor {status}: {}", r.text);
        let header = r.headers.get("retry-after").map(|v| v.to_str().unwrap());
        assert_eq!(header, want_retry, "vendor {status}: {:?}", r.headers);
        assert!(r.json["error"]["message"].is_string(), "{}", r.text);
        assert!(!llm.requests().is_empty(), "the model was asked");
    }
}

/// A gauge of /metrics.
async fn gauge(server: &Server, name: &str) -> String {
    let metrics = get(&server.url("/metrics"), None).await.text;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .to_owned()
}

/// The `lore_memory_conversations` gauge of /metrics.
async fn remembered_conversations(server: &Server) -> String {
    gauge(server, "lore_memory_conversations").await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_shot_questions_store_nothing_and_conversations_are_capped() {
    let llm = FakeLlm::start(&ANSWER, false).await;
    let data = tempfile::tempdir().unwrap();
    let mut env = generous_limits();
    env.push(("LORE_BOT__MEMORY_MAX_CONVERSATIONS", "3"));
    let server = Server::start(data.path(), Some(&llm), &env).await;
    ingest_notes(&server).await;

    // Questions without a conversation_id, plain and streamed, leave no memory behind.
    for _ in 0..3 {
        let r = post_json(
            &server.url("/v1/ask"),
            Some(READER),
            &json!({"question": QUESTION}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["answer"], ANSWER.concat());
        assert!(r.json.get("conversation_id").is_none(), "{}", r.text);
    }
    let mut events = Events::open(
        &server.url("/v1/ask"),
        READER,
        &json!({"question": QUESTION, "stream": true}),
    )
    .await;
    let all = events.rest().await;
    assert_eq!(all.last().unwrap().0, "done", "{all:?}");
    assert_eq!(remembered_conversations(&server).await, "0");
    // Nor rate-limit keys: the caller and its one channel of one-shot questions (a fresh
    // channel per question left a key behind each, and memory grew with every call).
    assert_eq!(gauge(&server, "lore_rate_limit_keys").await, "2");

    // Named conversations are remembered, at most three per platform and tenant: of five,
    // the two used least recently are forgotten.
    for i in 0..5 {
        let r = post_json(
            &server.url("/v1/ask"),
            Some(READER),
            &json!({"question": QUESTION, "conversation_id": format!("c{i}")}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["conversation_id"], format!("c{i}"));
    }
    assert_eq!(remembered_conversations(&server).await, "3");
    // Continuing the newest one condenses the follow-up with its remembered turn; the
    // oldest starts over with no history (no condensing call).
    let condensing_calls = |llm: &FakeLlm| {
        llm.requests()
            .iter()
            .filter(|r| r["stream"] != json!(true))
            .count()
    };
    let before = condensing_calls(&llm);
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION, "conversation_id": "c4"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(condensing_calls(&llm), before + 1, "c4 was remembered");
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION, "conversation_id": "c0"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(condensing_calls(&llm), before + 1, "c0 was forgotten");
    assert_eq!(remembered_conversations(&server).await, "3");
}

/// Answers, search hits and source lists over HTTP name a source ingested from a folder on
/// the server by its path relative to that folder, never by the server's path; the answer
/// carries each sentence's citations and support and the answer's grounding.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_never_shows_a_server_path() {
    let llm = FakeLlm::start(&["Oolong comes from Fujian ", "and Taiwan."], false).await;
    let data = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir(docs.path().join("notes")).unwrap();
    std::fs::write(docs.path().join("notes").join("tea.md"), NOTES).unwrap();
    let folder = docs.path().to_str().unwrap().to_owned();
    let out = std::process::Command::new(lore_bin())
        .args(["ingest", "--tenant", "acme", &folder])
        .env("LORE_STORE__DATA_DIR", data.path())
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_LLM__PROVIDER", "none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(data.path(), Some(&llm), &generous_limits()).await;
    let r = post_json(
        &server.url("/v1/ask"),
        Some(READER),
        &json!({"question": QUESTION}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(&folder), "{}", r.text);
    // The model cited nothing: lore found the passage that backs the sentence.
    assert_eq!(
        r.json["answer"], "Oolong comes from Fujian and Taiwan [1].",
        "{}",
        r.text
    );
    assert_eq!(
        r.json["citations"][0]["source"], "notes/tea.md",
        "{}",
        r.text
    );
    assert_eq!(r.json["citations"][0]["title"], "Tea", "{}", r.text);
    assert_eq!(
        r.json["sentences"][0]["citations"],
        json!([1]),
        "{}",
        r.text
    );
    assert!(
        r.json["sentences"][0]["support"].as_f64().unwrap() >= 0.5,
        "{}",
        r.text
    );
    assert_eq!(r.json["grounding"], 1.0, "{}", r.text);
    let r = post_json(
        &server.url("/v1/search"),
        Some(READER),
        &json!({"query": "oolong Fujian"}),
    )
    .await;
    assert!(!r.text.contains(&folder), "{}", r.text);
    assert_eq!(r.json["hits"][0]["source"], "notes/tea.md", "{}", r.text);
    let r = get(&server.url("/v1/sources"), Some(READER)).await;
    assert!(!r.text.contains(&folder), "{}", r.text);
    assert_eq!(source_names(&r), ["notes/tea.md"], "{}", r.text);
}
