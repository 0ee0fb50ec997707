//! OpenAI-compatible chat and embeddings against lore-testkit's fake OpenAI server.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lore_testkit::{FakeOpenAi as Fake, Reply};
use serde_json::{Value, json};

use super::{collect, llm, secrets, user};
use crate::embed::{EmbeddingSettings, build_vendor_embedder};
use crate::llm::{LlmError, build_chat_model};

const KEY: &str = "sk-test-4242-very-secret";

/// The fake, wanting the test key like OpenAI (401 otherwise).
async fn fake() -> Fake {
    let fake = Fake::start().await;
    fake.require_key(KEY);
    fake
}

/// A `data:` event.
fn sse(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// OpenAI-style deltas with every event cut in two, as TCP may deliver them, so the client
/// must reassemble events across reads.
fn stream_split_mid_event(deltas: &[&str]) -> Reply {
    let mut events = vec![sse(
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
    let chunks: Vec<&str> = events
        .iter()
        .flat_map(|e| {
            let cut = e
                .char_indices()
                .nth(e.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            [&e[..cut], &e[cut..]]
        })
        .collect();
    Reply::sse_chunks(&chunks)
}

fn model(fake: &Fake) -> std::sync::Arc<dyn crate::llm::ChatModel> {
    let s = llm("openai", &fake.base_url(), "gpt-4o-mini");
    build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn chat_returns_text_and_usage() {
    let fake = fake().await;
    fake.push(Reply::json(json!({
        "id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini",
        "choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}
    })));
    let answer = model(&fake).chat(user("Capital of France?")).await.unwrap();
    assert_eq!(answer.text, "Paris.");
    assert_eq!(answer.usage.unwrap().total_tokens, 14);
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["messages"][0]["role"], "user");
    assert_eq!(seen.body["stream"], false);
}

#[tokio::test]
async fn stream_assembles_deltas_split_across_reads() {
    let fake = fake().await;
    fake.push(stream_split_mid_event(&[
        "知识", "库", " says", " hello", "。",
    ]));
    let stream = model(&fake).chat_stream(user("hi")).await.unwrap();
    let pieces: Vec<String> = stream.map(|d| d.unwrap()).collect().await;
    assert_eq!(pieces, ["知识", "库", " says", " hello", "。"]);
    assert_eq!(fake.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn wrong_key_is_permanent_and_not_retried() {
    let fake = fake().await;
    let mut s = llm("openai", &fake.base_url(), "gpt-4o-mini");
    s.retry_budget_secs = 10;
    let model = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", "sk-wrong")]))
        .unwrap()
        .unwrap();
    let err = model.chat(user("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Permanent { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(fake.count("/chat/completions"), 1);
}

#[tokio::test]
async fn status_and_body_map_to_error_classes() {
    let cases = [
        (
            400,
            json!({"error":{"message":"Invalid 'messages'","type":"invalid_request_error"}}),
            "permanent",
        ),
        (
            400,
            json!({"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}),
            "context",
        ),
        (
            429,
            json!({"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}),
            "permanent",
        ),
        (
            429,
            json!({"error":{"message":"Rate limit reached"}}),
            "transient",
        ),
        (503, json!({"error":{"message":"overloaded"}}), "transient"),
        (
            404,
            json!({"error":{"message":"model not found"}}),
            "permanent",
        ),
    ];
    for (status, body, class) in cases {
        let fake = fake().await;
        fake.push(Reply::status(status, body.clone()));
        let err = model(&fake).chat(user("hi")).await.unwrap_err();
        let got = super::class(&err);
        assert_eq!(got, class, "HTTP {status} {body}");
    }
}

#[tokio::test]
async fn retry_after_of_a_429_is_honoured() {
    let fake = fake().await;
    fake.push(
        Reply::status(
            429,
            json!({"error":{"message":"Rate limit reached for requests"}}),
        )
        .header("retry-after", "1"),
    );
    fake.push(Reply::json(
        json!({"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}]}),
    ));
    let mut s = llm("openai", &fake.base_url(), "gpt-4o-mini");
    s.retry_budget_secs = 10;
    let model = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap();
    let started = Instant::now();
    assert_eq!(model.chat(user("hi")).await.unwrap().text, "ok");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(fake.count("/chat/completions"), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_budget_fails_at_once_with_the_hint() {
    let fake = fake().await;
    fake.push(
        Reply::status(429, json!({"error":{"message":"slow down"}})).header("retry-after", "30"),
    );
    let mut s = llm("openai", &fake.base_url(), "gpt-4o-mini");
    s.retry_budget_secs = 5;
    let model = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let err = model.chat(user("hi")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        LlmError::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("expected transient, got {other}"),
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let fake = fake().await;
    fake.push(Reply::status(
        502,
        json!({"error":{"message":"bad gateway"}}),
    ));
    fake.push(Reply::status(500, json!({"error":{"message":"oops"}})));
    fake.push(Reply::json(
        json!({"choices":[{"message":{"content":"third time"},"finish_reason":"stop"}]}),
    ));
    let mut s = llm("openai", &fake.base_url(), "gpt-4o-mini");
    s.retry_budget_secs = 20;
    let model = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap();
    assert_eq!(model.chat(user("hi")).await.unwrap().text, "third time");
    assert_eq!(fake.count("/chat/completions"), 3);
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_as_transient() {
    let fake = fake().await;
    // Held and never released: no answer at all.
    fake.push(Reply::json(json!({})).hold_after(0));
    let started = Instant::now();
    let err = model(&fake).chat(user("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Transient { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("no response within"), "{err}");
}

#[tokio::test]
async fn a_stalled_stream_fails_as_transient_after_the_deltas_so_far() {
    let fake = fake().await;
    let start = sse(&json!({"choices":[{"delta":{"content":"partial"},"finish_reason":null}]}));
    // Held after its first event and never released: the stream stalls.
    fake.push(Reply::sse_chunks(&[start]).hold_after(1));
    let items: Vec<_> = model(&fake)
        .chat_stream(user("hi"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items[0].as_ref().unwrap(), "partial");
    let err = items[1].as_ref().unwrap_err();
    assert!(
        matches!(err, LlmError::Transient { .. }) && err.to_string().contains("stalled"),
        "{err}"
    );
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn a_malformed_stream_is_a_protocol_error_not_a_panic() {
    let fake = fake().await;
    let good = sse(&json!({"choices":[{"delta":{"content":"fine"},"finish_reason":null}]}));
    fake.push(Reply::sse_chunks(&[
        good,
        "data: {\"choices\": [oops\n\n".into(),
    ]));
    let items: Vec<_> = model(&fake)
        .chat_stream(user("hi"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items[0].as_ref().unwrap(), "fine");
    assert!(
        matches!(items[1], Err(LlmError::Protocol { .. })),
        "{:?}",
        items[1]
    );
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn a_stream_cut_before_its_end_is_reported() {
    let fake = fake().await;
    let good = sse(&json!({"choices":[{"delta":{"content":"half an"},"finish_reason":null}]}));
    fake.push(Reply::sse_chunks(&[good]));
    let items: Vec<_> = model(&fake)
        .chat_stream(user("hi"))
        .await
        .unwrap()
        .collect()
        .await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        err.to_string()
            .contains("ended before the answer was complete"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_instead_of_json_is_a_protocol_error() {
    let fake = fake().await;
    fake.push(Reply::raw("<html>captive portal</html>").header("content-type", "text/html"));
    let err = model(&fake).chat(user("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("captive portal"), "{err}");
}

#[tokio::test]
async fn a_refused_answer_is_permanent() {
    let fake = fake().await;
    fake.push(Reply::json(
        json!({"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}),
    ));
    let err = model(&fake).chat(user("hi")).await.unwrap_err();
    assert!(
        matches!(err, LlmError::Permanent { .. }) && err.to_string().contains("refused"),
        "{err}"
    );
}

#[tokio::test]
async fn stream_collects_into_the_same_text_as_chat() {
    let fake = fake().await;
    fake.push(stream_split_mid_event(&["a", "b", "c"]));
    assert_eq!(
        collect(model(&fake).chat_stream(user("x")).await.unwrap())
            .await
            .unwrap(),
        "abc"
    );
}

#[tokio::test]
async fn embeddings_come_back_in_input_order() {
    let fake = fake().await;
    // The vendor may list vectors out of order; `index` says where each belongs.
    fake.push(Reply::json(json!({"object":"list","data":[
        {"object":"embedding","index":1,"embedding":[0.0,1.0,0.0]},
        {"object":"embedding","index":0,"embedding":[1.0,0.0,0.0]}
    ],"model":"text-embedding-3-small"})));
    let s = EmbeddingSettings {
        provider: "openai".parse().unwrap(),
        base_url: Some(fake.base_url()),
        model: "tiny".into(),
        dimension: Some(3),
        ..Default::default()
    };
    let embedder = build_vendor_embedder(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap();
    let vectors = embedder
        .embed_documents(vec!["first".into(), "second".into()])
        .await
        .unwrap();
    assert_eq!(vectors, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
    assert_eq!(embedder.id(), "openai:tiny:3");
    assert_eq!(fake.requests()[0].path, "/v1/embeddings");
    assert_eq!(fake.requests()[0].body["input"], json!(["first", "second"]));
}

#[tokio::test]
async fn embeddings_of_the_wrong_length_are_refused() {
    let fake = fake().await;
    fake.push(Reply::json(
        json!({"data":[{"index":0,"embedding":[1.0,0.0]}]}),
    ));
    let s = EmbeddingSettings {
        provider: "openai".parse().unwrap(),
        base_url: Some(fake.base_url()),
        model: "tiny".into(),
        dimension: Some(3),
        ..Default::default()
    };
    let embedder = build_vendor_embedder(&s, &secrets(&[("OPENAI_API_KEY", KEY)]))
        .unwrap()
        .unwrap();
    let err = embedder.embed_query("q").await.unwrap_err();
    assert!(
        err.to_string().contains("configured dimension is 3"),
        "{err}"
    );
}
