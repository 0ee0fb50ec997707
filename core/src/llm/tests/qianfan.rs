//! Baidu Qianfan: token exchange, refresh and ERNIE's message rules, against the fake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::fakes::{Fake, QianfanTokens, Reply, qianfan_gate, sse};
use super::{llm, secrets, user};
use crate::embed::{EmbeddingSettings, build_vendor_embedder};
use crate::llm::qianfan::{ErnieMessage, ernie_messages};
use crate::llm::{ChatMessage, ChatRequest, LlmError, Role, build_chat_model};

const AK: &str = "qianfan-ak-7777";
const SK: &str = "qianfan-sk-SECRET-8888";
const CHAT_PATH: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/ernie-speed-128k";

async fn fake(expires_in: u64) -> (Fake, Arc<QianfanTokens>) {
    let tokens = Arc::new(QianfanTokens {
        issued: Mutex::new(Vec::new()),
        expires_in: Mutex::new(expires_in),
    });
    (
        Fake::start(qianfan_gate(AK, SK, tokens.clone())).await,
        tokens,
    )
}

fn model(fake: &Fake, sk: &str) -> Arc<dyn crate::llm::ChatModel> {
    let s = llm("qianfan", &fake.url, "ernie-speed-128k");
    build_chat_model(&s, &secrets(&[("QIANFAN_AK", AK), ("QIANFAN_SK", sk)]))
        .unwrap()
        .unwrap()
}

fn answer(text: &str) -> Reply {
    Reply::ok(
        json!({"id":"as-1","object":"chat.completion","created":1700000000,"result":text,
        "is_truncated":false,"need_clear_history":false,"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}),
    )
}

#[tokio::test]
async fn keys_are_exchanged_once_and_the_token_rides_on_each_call() {
    let (fake, _) = fake(2_592_000).await;
    fake.push(answer("文心"));
    let model = model(&fake, SK);
    let req = ChatRequest {
        messages: vec![ChatMessage::system("你是助手"), ChatMessage::user("你好")],
        temperature: Some(0.0),
        max_tokens: Some(256),
    };
    let answer = model.chat(req).await.unwrap();
    assert_eq!(answer.text, "文心");
    assert_eq!(answer.usage.unwrap().total_tokens, 5);
    model.chat(user("again")).await.unwrap();
    assert_eq!(fake.count("/oauth/2.0/token"), 1);
    let chats: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == CHAT_PATH)
        .collect();
    assert_eq!(chats.len(), 2);
    assert_eq!(
        chats[0].query_param("access_token").as_deref(),
        Some("24.fake-token-1")
    );
    let body = &chats[0].body;
    assert_eq!(body["system"], "你是助手");
    assert_eq!(body["messages"], json!([{"role":"user","content":"你好"}]));
    let t = body["temperature"].as_f64().unwrap();
    assert!(
        t > 0.0 && t <= 1.0,
        "temperature {t} outside ERNIE's (0, 1]"
    );
    assert_eq!(body["max_output_tokens"], 256);
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let (fake, _) = fake(1).await;
    fake.push(answer("ok"));
    let model = model(&fake, SK);
    model.chat(user("one")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(950)).await;
    model.chat(user("two")).await.unwrap();
    assert_eq!(fake.count("/oauth/2.0/token"), 2);
    // No call ever carried an expired token.
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.path != CHAT_PATH || s.query_param("access_token").is_some())
    );
}

#[tokio::test]
async fn a_token_expired_code_refreshes_once_and_retries() {
    let (fake, tokens) = fake(2_592_000).await;
    fake.push(answer("fresh"));
    let model = model(&fake, SK);
    model.chat(user("one")).await.unwrap();
    // The vendor revokes the token early: the next call gets code 111.
    tokens.issued.lock().unwrap().last_mut().unwrap().2 = Duration::ZERO;
    assert_eq!(model.chat(user("two")).await.unwrap().text, "fresh");
    assert_eq!(fake.count("/oauth/2.0/token"), 2);
    assert_eq!(fake.count(CHAT_PATH), 3);
}

#[tokio::test]
async fn wrong_keys_are_a_permanent_error_naming_the_token_endpoint() {
    let (fake, _) = fake(100).await;
    fake.push(answer("never"));
    let err = model(&fake, "wrong-sk").chat(user("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Permanent { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/oauth/2.0/token") && text.contains("invalid_client"),
        "{text}"
    );
    assert!(!text.contains("wrong-sk") && !text.contains(AK), "{text}");
}

#[tokio::test]
async fn the_stream_ends_at_is_end() {
    let (fake, _) = fake(100).await;
    let chunk = |i: u32, text: &str, end: bool| {
        sse(
            &json!({"id":"as-2","object":"chat.completion","created":1,"sentence_id":i,"is_end":end,"is_truncated":false,"result":text,"need_clear_history":false,"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}),
        )
    };
    // Anything after is_end is never read.
    let pieces = vec![
        chunk(0, "北京", false),
        chunk(1, "是", false),
        chunk(2, "首都。", true),
        "data: garbage\n\n".into(),
    ];
    fake.push(Reply::Sse(pieces, Duration::from_millis(2), None));
    let deltas: Vec<_> = model(&fake, SK)
        .chat_stream(user("首都?"))
        .await
        .unwrap()
        .collect()
        .await;
    let deltas: Vec<String> = deltas.into_iter().map(Result::unwrap).collect();
    assert_eq!(deltas, ["北京", "是", "首都。"]);
}

#[tokio::test]
async fn error_codes_in_200_bodies_are_classified() {
    for (code, class) in [
        (18, "transient"),
        (336501, "transient"),
        (336007, "context"),
        (336003, "permanent"),
        (17, "permanent"),
    ] {
        let (fake, _) = fake(100).await;
        fake.push(Reply::ok(
            json!({"error_code":code,"error_msg":"vendor message"}),
        ));
        let err = model(&fake, SK).chat(user("hi")).await.unwrap_err();
        let got = super::class(&err);
        assert_eq!(got, class, "code {code}");
    }
}

#[test]
fn ernie_message_rules_are_applied_before_sending() {
    let at = "qianfan";
    let msgs = vec![
        ChatMessage::system("规则一"),
        ChatMessage::assistant("stray greeting"),
        ChatMessage::user("q1"),
        ChatMessage::user("q1 more"),
        ChatMessage::assistant("a1"),
        ChatMessage::system("规则二"),
        ChatMessage::user("q2"),
    ];
    let (system, turns) = ernie_messages(at, &msgs).unwrap();
    assert_eq!(system.as_deref(), Some("规则一\n\n规则二"));
    assert_eq!(
        turns,
        vec![
            ErnieMessage {
                role: Role::User,
                content: "q1\n\nq1 more".into()
            },
            ErnieMessage {
                role: Role::Assistant,
                content: "a1".into()
            },
            ErnieMessage {
                role: Role::User,
                content: "q2".into()
            },
        ]
    );
    assert_eq!(turns.len() % 2, 1);
    let err =
        ernie_messages(at, &[ChatMessage::user("q"), ChatMessage::assistant("a")]).unwrap_err();
    assert!(err.to_string().contains("end with a user message"), "{err}");
    assert!(ernie_messages(at, &[ChatMessage::system("only a system prompt")]).is_err());
}

#[test]
fn ernie_temperature_is_kept_in_its_range() {
    assert_eq!(crate::llm::unit_temperature(0.0), 0.01);
    assert_eq!(crate::llm::unit_temperature(1.7), 1.0);
    assert_eq!(crate::llm::unit_temperature(0.5), 0.5);
}

#[tokio::test]
async fn embeddings_use_the_model_path_and_the_token() {
    let (fake, _) = fake(100).await;
    fake.push(Reply::ok(json!({"id":"e1","object":"embedding_list","data":[
        {"object":"embedding","embedding":[0.5,0.5],"index":0}],"usage":{"prompt_tokens":2,"total_tokens":2}})));
    let s = EmbeddingSettings {
        provider: "qianfan".parse().unwrap(),
        base_url: Some(fake.url.clone()),
        model: "bge-large-zh".into(),
        dimension: Some(2),
        ..Default::default()
    };
    let embedder = build_vendor_embedder(&s, &secrets(&[("QIANFAN_AK", AK), ("QIANFAN_SK", SK)]))
        .unwrap()
        .unwrap();
    assert_eq!(embedder.embed_query("查询").await.unwrap(), vec![0.5, 0.5]);
    let call = fake
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("/embeddings/bge-large-zh"))
        .unwrap();
    assert!(call.query_param("access_token").is_some());
    assert_eq!(call.body["input"], json!(["查询"]));
}
