//! `POST /v1/chat/completions` and `GET /v1/models`, OpenAI-compatible, so existing OpenAI
//! clients and chat UIs can talk to the knowledge base. The client sends the whole history
//! each time (as with OpenAI), so nothing is remembered server-side; scope, rate limits,
//! span and metrics are the bot core's (`turn::answer_question`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{body, cut_notice};
use super::auth::Principal;
use super::{ApiError, HttpState, PLATFORM};
use lore_core::answer::{Answer, HistoryTurn};
use lore_core::bot::memory::ConversationKey;
use lore_core::bot::turn;
use lore_core::llm::estimate_tokens;

/// The one model name lore answers as.
const MODEL: &str = "lore";

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    // Other OpenAI fields (model, temperature, ...) are accepted and ignored: the
    // knowledge base's own settings decide.
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Content,
}

/// A message's content: a string, or parts of which the text ones count.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
    #[default]
    Null,
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            Content::Null => String::new(),
        }
    }
}

/// The question (the last user message) and the turns before it. System messages are
/// dropped: lore's own prompt governs answers.
fn split_messages(messages: &[Message]) -> Result<(String, Vec<HistoryTurn>), ApiError> {
    let last = messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad_request("messages must contain a user message"))?;
    let question = messages[last].content.text().trim().to_owned();
    if question.is_empty() {
        return Err(ApiError::bad_request("the last user message is empty"));
    }
    let history = messages[..last]
        .iter()
        .filter(|m| m.role == "user" || m.role == "assistant")
        .map(|m| HistoryTurn {
            speaker: if m.role == "user" { "user" } else { "lore" }.to_owned(),
            is_bot: m.role == "assistant",
            text: m.content.text(),
        })
        .collect();
    Ok((question, history))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The rendered sources that follow the answer's text.
fn sources_appendix(answer: &Answer) -> String {
    let rendered = answer.render();
    rendered
        .strip_prefix(answer.text.trim_end())
        .unwrap_or("")
        .to_owned()
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    request: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let (question, history) = split_messages(&request.messages)?;
    let key = ConversationKey {
        platform: PLATFORM.to_owned(),
        tenant: principal.tenant.clone(),
        channel: format!("{}/openai", principal.user),
        thread: None,
    };
    state.core.admit(&principal.user, &key)?;
    let id = format!("chatcmpl-{:024x}", rand::random::<u128>() >> 32);
    let created = now();
    if !request.stream {
        let answer = state
            .bounded(async {
                let _slot = state.core.slot().await;
                turn::answer_question(&state.core, &key, &question, &history, None).await
            })
            .await??;
        let content = answer.render();
        let prompt_tokens = estimate_tokens(&question)
            + history
                .iter()
                .map(|t| estimate_tokens(&t.text))
                .sum::<u32>();
        let completion_tokens = estimate_tokens(&content);
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "citations": answer.citations,
        }))
        .into_response());
    }
    let (events, stream) = futures::channel::mpsc::unbounded::<Event>();
    let chunk = move |delta: Value, finish: Option<&str>| {
        Event::default().data(
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            .to_string(),
        )
    };
    tokio::spawn(async move {
        let _ = events.unbounded_send(chunk(json!({"role": "assistant", "content": ""}), None));
        let (deltas_tx, mut deltas) = tokio::sync::mpsc::unbounded_channel::<String>();
        let forward = {
            let events = events.clone();
            let chunk = chunk.clone();
            async move {
                while let Some(text) = deltas.recv().await {
                    let _ = events.unbounded_send(chunk(json!({"content": text}), None));
                }
            }
        };
        let work = async {
            let _slot = state.core.slot().await;
            let (answer, ()) = tokio::join!(
                turn::answer_question(&state.core, &key, &question, &history, Some(deltas_tx)),
                forward
            );
            answer
        };
        let last = match state.bounded(work).await {
            Ok(Ok(answer)) => chunk(json!({"content": sources_appendix(&answer)}), Some("stop")),
            Ok(Err(e)) => error_chunk(&ApiError::from(e)),
            Err(cut) => error_chunk(&cut_notice(cut)),
        };
        let _ = events.unbounded_send(last);
        let _ = events.unbounded_send(Event::default().data("[DONE]"));
    });
    Ok(Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// An error inside a stream, in the shape OpenAI streams use.
fn error_chunk(e: &ApiError) -> Event {
    Event::default().data(json!({"error": {"message": e.message, "type": e.kind}}).to_string())
}

/// `GET /v1/models`.
pub async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": 0, "owned_by": "lore"}
    ]}))
}
