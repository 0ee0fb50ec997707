//! Zhipu GLM: JWT auth checked by the fake, error codes, embedding batches.

use serde_json::json;

use super::fakes::{Fake, Reply, zhipu_gate};
use super::{llm, secrets, user};
use crate::embed::{EmbeddingSettings, build_vendor_embedder};
use crate::llm::{LlmError, build_chat_model};

const ID: &str = "a1b2c3d4e5f6";
const SECRET: &str = "zhipu-secret-Qx9";

fn model(fake: &Fake, key: &str) -> std::sync::Arc<dyn crate::llm::ChatModel> {
    let s = llm("zhipu", &format!("{}/api/paas/v4", fake.url), "glm-4-flash");
    build_chat_model(&s, &secrets(&[("ZHIPUAI_API_KEY", key)]))
        .unwrap()
        .unwrap()
}

fn answer(text: &str) -> Reply {
    Reply::ok(
        json!({"id":"8313","created":1700000000,"model":"glm-4-flash",
        "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":text}}],
        "usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}),
    )
}

#[tokio::test]
async fn a_signed_jwt_passes_the_vendor_check() {
    let fake = Fake::start(zhipu_gate(ID, SECRET)).await;
    fake.push(answer("你好"));
    let model = model(&fake, &format!("{ID}.{SECRET}"));
    assert_eq!(model.chat(user("你好")).await.unwrap().text, "你好");
    // The cached token is reused for the next call.
    model.chat(user("again")).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen[0].path, "/api/paas/v4/chat/completions");
    assert_eq!(
        seen[0].headers["authorization"],
        seen[1].headers["authorization"]
    );
}

#[tokio::test]
async fn a_token_signed_with_the_wrong_secret_is_refused() {
    let fake = Fake::start(zhipu_gate(ID, SECRET)).await;
    fake.push(answer("never"));
    let err = model(&fake, &format!("{ID}.not-the-secret"))
        .chat(user("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Permanent { .. }), "{err}");
    assert!(err.to_string().contains("1002"), "{err}");
}

#[tokio::test]
async fn a_key_without_a_dot_is_sent_as_a_plain_bearer() {
    let fake = Fake::start(zhipu_gate("plainkey123", "")).await;
    fake.push(answer("ok"));
    assert_eq!(
        model(&fake, "plainkey123")
            .chat(user("hi"))
            .await
            .unwrap()
            .text,
        "ok"
    );
}

#[tokio::test]
async fn vendor_codes_map_to_error_classes() {
    let cases = [
        (400, "1261", "context"),
        (429, "1302", "transient"),
        (429, "1113", "permanent"),
        (400, "1301", "permanent"),
        (500, "1234", "transient"),
    ];
    for (status, code, class) in cases {
        let fake = Fake::start(zhipu_gate(ID, SECRET)).await;
        fake.push(Reply::status(
            status,
            json!({"error":{"code":code,"message":"vendor says no"}}),
        ));
        let err = model(&fake, &format!("{ID}.{SECRET}"))
            .chat(user("hi"))
            .await
            .unwrap_err();
        let got = super::class(&err);
        assert_eq!(got, class, "code {code}");
    }
}

#[tokio::test]
async fn a_sensitive_stream_is_refused_mid_answer() {
    let fake = Fake::start(zhipu_gate(ID, SECRET)).await;
    let chunk = |content: &str, finish: Option<&str>| {
        super::fakes::sse(
            &json!({"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":content},"finish_reason":finish}]}),
        )
    };
    fake.push(Reply::Sse(
        vec![chunk("先说", None), chunk("", Some("sensitive"))],
        std::time::Duration::ZERO,
        None,
    ));
    let err = super::collect(
        model(&fake, &format!("{ID}.{SECRET}"))
            .chat_stream(user("hi"))
            .await
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LlmError::Permanent { .. }) && err.to_string().contains("sensitive"),
        "{err}"
    );
}

#[tokio::test]
async fn embeddings_are_sent_in_batches_under_the_vendor_limit() {
    let fake = Fake::start(zhipu_gate(ID, SECRET)).await;
    let data = |n: usize| {
        (0..n)
            .map(|i| json!({"index":i,"object":"embedding","embedding":[i as f32, 1.0]}))
            .collect::<Vec<_>>()
    };
    fake.push(Reply::ok(json!({"data": data(64), "model":"embedding-3"})));
    fake.push(Reply::ok(json!({"data": data(36), "model":"embedding-3"})));
    let s = EmbeddingSettings {
        provider: "zhipu".parse().unwrap(),
        base_url: Some(format!("{}/api/paas/v4", fake.url)),
        dimension: Some(2),
        batch_size: Some(500),
        ..Default::default()
    };
    let embedder = build_vendor_embedder(
        &s,
        &secrets(&[("ZHIPUAI_API_KEY", &format!("{ID}.{SECRET}"))]),
    )
    .unwrap()
    .unwrap();
    let texts: Vec<String> = (0..100).map(|i| format!("段落 {i}")).collect();
    let vectors = embedder.embed_documents(texts).await.unwrap();
    assert_eq!(vectors.len(), 100);
    let sizes: Vec<usize> = fake
        .seen()
        .iter()
        .map(|s| s.body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [64, 36]);
    assert_eq!(fake.seen()[0].body["model"], "embedding-3");
    // 2 differs from embedding-3's 2048, so the shorter length is asked for.
    assert_eq!(fake.seen()[0].body["dimensions"], 2);
}
