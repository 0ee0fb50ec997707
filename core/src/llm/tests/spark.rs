//! iFlytek Spark: the signed websocket URL checked by the fake, frames, codes, embeddings.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::fakes::{Fake, Reply, SparkFake, spark_check, spark_frames};
use super::{collect, llm, secrets, user};
use crate::embed::{EmbeddingSettings, build_vendor_embedder};
use crate::llm::spark::{SparkCreds, signed_url};
use crate::llm::{ChatMessage, ChatRequest, LlmError, Secret, build_chat_model};

const APP: &str = "app-5150";
const KEY: &str = "spark-api-key-0001";
const SECRET: &str = "spark-api-secret-XYZ";

fn creds(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("IFLYTEK_SPARK_APP_ID", APP.to_string()),
        ("IFLYTEK_SPARK_API_KEY", KEY.to_string()),
        ("IFLYTEK_SPARK_API_SECRET", secret.to_string()),
    ]
}

fn model(
    fake: &SparkFake,
    secret: &str,
    domain: &str,
) -> std::sync::Arc<dyn crate::llm::ChatModel> {
    let pairs = creds(secret);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    build_chat_model(&llm("spark", &fake.url, domain), &secrets(&pairs))
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_signed_url_passes_and_frames_assemble_with_usage() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    fake.push(spark_frames(&["星火", "认知", "大模型。"]));
    let model = model(&fake, SECRET, "generalv3.5");
    let req = ChatRequest {
        messages: vec![ChatMessage::system("简洁"), ChatMessage::user("你是谁")],
        temperature: Some(0.2),
        max_tokens: Some(512),
    };
    let answer = model.chat(req).await.unwrap();
    assert_eq!(answer.text, "星火认知大模型。");
    assert_eq!(answer.usage.unwrap().total_tokens, 14);
    let sent = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(sent["header"]["app_id"], APP);
    assert_eq!(sent["parameter"]["chat"]["max_tokens"], 512);
    assert_eq!(
        sent["payload"]["message"]["text"][0],
        json!({"role":"system","content":"简洁"})
    );
    // Streaming gives the same pieces.
    let text = collect(model.chat_stream(user("again")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, "星火认知大模型。");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_at_the_handshake() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    fake.push(spark_frames(&["never"]));
    let err = model(&fake, "not-the-secret", "generalv3.5")
        .chat(user("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Permanent { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("HMAC signature cannot be verified"),
        "{text}"
    );
    assert!(
        !text.contains("authorization="),
        "the signed URL leaked: {text}"
    );
}

#[tokio::test]
async fn a_url_signed_with_a_skewed_clock_is_refused() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    let creds = SparkCreds {
        app_id: Secret::new(APP),
        api_key: Secret::new(KEY),
        api_secret: Secret::new(SECRET),
    };
    let stale = signed_url(
        &fake.url,
        "GET",
        &creds,
        SystemTime::now() - Duration::from_secs(600),
    )
    .unwrap();
    match tokio_tungstenite::connect_async(stale.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), StatusCode::FORBIDDEN)
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    let fresh = signed_url(&fake.url, "GET", &creds, SystemTime::now()).unwrap();
    assert!(spark_check("GET", "/v3.5/chat", fresh.query().unwrap(), KEY, SECRET).is_ok());
}

#[tokio::test]
async fn vendor_codes_map_to_clear_errors() {
    let cases = [
        (10013, "permanent", "moderation"),
        (10014, "permanent", "moderation"),
        (10907, "context", "too many tokens"),
        (11200, "permanent", "not authorised"),
        (11201, "permanent", "daily quota"),
        (11202, "transient", "per second"),
        (10163, "permanent", "domain"),
    ];
    for (code, class, words) in cases {
        let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
        fake.push(vec![
            json!({"header":{"code":code,"message":"vendor text","sid":"cht1","status":2}}),
        ]);
        let err = model(&fake, SECRET, "generalv3.5")
            .chat(user("hi"))
            .await
            .unwrap_err();
        let got = super::class(&err);
        assert_eq!(got, class, "code {code}: {err}");
        assert!(
            err.to_string().contains(words) && err.to_string().contains(&code.to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_connection_closed_before_status_2_is_reported() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    let mut frames = spark_frames(&["一", "二", "三"]);
    frames.pop();
    fake.push(frames);
    let err = model(&fake, SECRET, "generalv3.5")
        .chat(user("hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ended before the answer was complete"),
        "{err}"
    );
}

#[tokio::test]
async fn a_garbage_frame_is_a_protocol_error() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    fake.push(vec![json!({"not": "a frame"})]);
    let err = model(&fake, SECRET, "generalv3.5")
        .chat(user("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Protocol { .. }), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let fake = SparkFake::start(KEY, SECRET, "/v3.5/chat", "generalv3.5").await;
    fake.push(vec![json!("hang")]);
    let started = std::time::Instant::now();
    let err = model(&fake, SECRET, "generalv3.5")
        .chat(user("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Transient { .. }) && err.to_string().contains("stalled"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_domain_must_match_the_url_version() {
    let pairs = creds(SECRET);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = llm("spark", "wss://spark-api.xf-yun.com/v3.5/chat", "4.0Ultra");
    let err = build_chat_model(&s, &secrets(&pairs)).err().unwrap();
    assert!(
        matches!(err, LlmError::Config(_)) && err.to_string().contains("generalv3.5"),
        "{err}"
    );
    for (domain, url) in [
        ("lite", "/v1.1/chat"),
        ("generalv3.5", "/v3.5/chat"),
        ("4.0Ultra", "/v4.0/chat"),
    ] {
        assert_eq!(
            crate::llm::spark::default_url(domain).unwrap(),
            format!("wss://spark-api.xf-yun.com{url}")
        );
    }
}

/// Spark's embedding endpoint: a signed POST; the vector comes back as base64 little-endian f32.
#[tokio::test]
async fn embeddings_use_para_for_documents_and_query_for_queries() {
    let gate: super::fakes::Gate = Box::new(|seen| {
        if seen.method != axum::http::Method::POST {
            return Some(Reply::status(405, json!({"message":"POST only"})));
        }
        if spark_check("POST", &seen.path, &seen.query, KEY, SECRET).is_err() {
            return Some(Reply::status(
                401,
                json!({"message":"HMAC signature cannot be verified"}),
            ));
        }
        let inner = seen
            .body
            .pointer("/payload/messages/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        let decoded: Value = serde_json::from_slice(&B64.decode(inner).unwrap()).unwrap();
        let text = decoded["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let first = if seen.body["parameter"]["emb"]["domain"] == "query" {
            2.0f32
        } else {
            1.0
        };
        let bytes: Vec<u8> = [first, text.chars().count() as f32]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        Some(Reply::ok(
            json!({"header":{"code":0,"message":"success","sid":"emb1","status":3},
            "payload":{"feature":{"encoding":"utf8","compress":"raw","format":"plain","status":3,"text":B64.encode(bytes)}}}),
        ))
    });
    let fake = Fake::start(gate).await;
    let s = EmbeddingSettings {
        provider: "spark".parse().unwrap(),
        base_url: Some(format!("{}/", fake.url)),
        dimension: Some(2),
        ..Default::default()
    };
    let pairs = creds(SECRET);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let embedder = build_vendor_embedder(&s, &secrets(&pairs))
        .unwrap()
        .unwrap();
    let docs = embedder
        .embed_documents(vec!["一二三".into(), "四五".into()])
        .await
        .unwrap();
    assert_eq!(docs, vec![vec![1.0, 3.0], vec![1.0, 2.0]]);
    assert_eq!(embedder.embed_query("六").await.unwrap(), vec![2.0, 1.0]);
    assert_eq!(fake.seen().len(), 3);
}

/// `wss://` needs exactly one rustls crypto provider in the build, or rustls panics when the TLS
/// client is made: reach that point against a listener that hangs up, and expect a plain error.
#[tokio::test]
async fn a_wss_url_builds_its_tls_client_without_panicking() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            drop(tcp);
        }
    });
    let pairs = creds(SECRET);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = llm("spark", &format!("wss://{addr}/v3.5/chat"), "generalv3.5");
    let model = build_chat_model(&s, &secrets(&pairs)).unwrap().unwrap();
    let err = model.chat(user("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Transient { .. }), "{err}");
}
