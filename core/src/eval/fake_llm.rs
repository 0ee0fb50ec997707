//! A scripted OpenAI-compatible chat server on 127.0.0.1 for the judge and answer tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::llm::{ChatModel, LlmSettings, Secrets, build_chat_model};

type Script = Arc<Mutex<VecDeque<String>>>;

/// Serves `replies` in order (the last one repeats) and returns a chat model pointed at it.
pub async fn scripted_model(replies: &[&str]) -> Arc<dyn ChatModel> {
    let script: Script = Arc::new(Mutex::new(replies.iter().map(|r| r.to_string()).collect()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(reply))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let settings = LlmSettings {
        provider: "openai".parse().unwrap(),
        base_url: Some(format!("http://{addr}/v1")),
        model: "judge".into(),
        retry_budget_secs: 0,
        ..LlmSettings::default()
    };
    let secrets = Secrets::from_pairs(Vec::<(String, String)>::new());
    build_chat_model(&settings, &secrets).unwrap().unwrap()
}

async fn reply(State(script): State<Script>, Json(_body): Json<Value>) -> Json<Value> {
    let text = {
        let mut script = script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap_or_default()
        }
    };
    Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
}
