//! The `/v1` knowledge routes: ask (JSON or SSE), search, ingest, sources.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Multipart, Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Principal;
use super::{ApiError, Cut, HttpState, PLATFORM};
use lore_core::answer::{Answer, Citation, SentenceSupport, display_name};
use lore_core::bot::memory::ConversationKey;
use lore_core::bot::turn;
use lore_core::bot::uploads::Spooled;
use lore_core::bot::{BotError, knowledge};
use lore_core::ingest::load;
use lore_core::ingest::pipeline::SourceOutcome;
use lore_core::store::{StoreErrorKind, TenantScope};

/// Longest question accepted, in characters.
const MAX_QUESTION_CHARS: usize = 4000;
/// The rate-limit channel of a caller's one-shot questions; no conversation id can take
/// this name (ids have no parentheses).
const ONE_SHOT_CHANNEL: &str = "(once)";

/// The JSON body, or a 400 that says what is wrong with it.
pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        let mut err = ApiError::bad_request(e.body_text());
        err.status = e.status();
        err
    })
}

/// The tenant a request acts in: always the token's; naming another is refused.
pub(super) fn tenant_of(
    principal: &Principal,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    match requested.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t != principal.tenant => Err(ApiError::forbidden(format!(
            "this token is bound to tenant {:?}; it cannot act in another tenant",
            principal.tenant
        ))),
        _ => Ok(principal.tenant.clone()),
    }
}

fn question_text(question: &str) -> Result<String, ApiError> {
    let question = question.trim();
    if question.is_empty() {
        return Err(ApiError::bad_request("question is empty"));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::bad_request(format!(
            "question is longer than {MAX_QUESTION_CHARS} characters"
        )));
    }
    Ok(question.to_owned())
}

/// The conversation a question continues; None for a one-shot question.
fn conversation_id(given: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(id) = given else {
        return Ok(None);
    };
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(ApiError::bad_request(
            "conversation_id must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(Some(id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    question: String,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct AskResponse {
    answer: String,
    grounded: bool,
    citations: Vec<Citation>,
    /// Share of the answer's judged text some source supports (0 to 1).
    grounding: f32,
    /// Each sentence with its citations and support (LLM answers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sentences: Vec<SentenceSupport>,
    /// Absent for a one-shot question (nothing was remembered to continue).
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<String>,
}

impl AskResponse {
    fn new(answer: Answer, conversation_id: Option<String>) -> Self {
        Self {
            answer: answer.text,
            grounded: answer.grounded,
            citations: answer.citations,
            grounding: answer.grounding,
            sentences: answer.sentences,
            conversation_id,
        }
    }
}

/// `POST /v1/ask`: one turn of the caller's conversation (keyed by token and id, so two
/// callers never share a history), through the bot core's path. Without a
/// `conversation_id` the question is one-shot: answered with no history, and nothing is
/// remembered after it (so anonymous calls cannot grow the memory store).
pub async fn ask(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    request: Result<Json<AskRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let tenant = tenant_of(&principal, request.tenant.as_deref())?;
    let question = question_text(&request.question)?;
    let conversation_id = conversation_id(request.conversation_id)?;
    // A caller's one-shot questions share one channel for the rate limits, as its searches
    // do: a fresh channel per question left a limiter key behind each (memory grew with
    // every call).
    let channel = conversation_id.as_deref().unwrap_or(ONE_SHOT_CHANNEL);
    let key = ConversationKey {
        platform: PLATFORM.to_owned(),
        tenant,
        channel: format!("{}/{channel}", principal.user),
        thread: None,
    };
    let remembered = conversation_id.is_some();
    state.core.admit(&principal.user, &key)?;
    if !request.stream {
        let answer = state
            .bounded(async {
                let _slot = state.core.slot().await;
                if remembered {
                    turn::answer_turn(&state.core, &key, &principal.user, &question, None).await
                } else {
                    turn::answer_once(&state.core, &key, &question, None).await
                }
            })
            .await??;
        return Ok(Json(AskResponse::new(answer, conversation_id)).into_response());
    }
    let (events, stream) = futures::channel::mpsc::unbounded::<Event>();
    tokio::spawn(async move {
        let (deltas_tx, mut deltas) = tokio::sync::mpsc::unbounded_channel::<String>();
        let forward = {
            let events = events.clone();
            async move {
                while let Some(text) = deltas.recv().await {
                    // A gone client does not stop the answer: the turn is still remembered.
                    let _ = events.unbounded_send(event("delta", &json!({ "text": text })));
                }
            }
        };
        let work = async {
            let _slot = state.core.slot().await;
            let turn = async {
                if remembered {
                    let user = &principal.user;
                    turn::answer_turn(&state.core, &key, user, &question, Some(deltas_tx)).await
                } else {
                    turn::answer_once(&state.core, &key, &question, Some(deltas_tx)).await
                }
            };
            let (answer, ()) = tokio::join!(turn, forward);
            answer
        };
        let last = match state.bounded(work).await {
            Ok(Ok(answer)) => event("done", &AskResponse::new(answer, conversation_id)),
            Ok(Err(e)) => error_event(&ApiError::from(e)),
            Err(cut) => error_event(&cut_notice(cut)),
        };
        let _ = events.unbounded_send(last);
    });
    Ok(sse(stream))
}

/// The message an answer cut short ends with.
pub(super) fn cut_notice(cut: Cut) -> ApiError {
    match cut {
        Cut::ShuttingDown => {
            let mut e = ApiError::shutting_down();
            e.message =
                "lore is shutting down, so this answer was cut short; ask again in a moment"
                    .to_owned();
            e
        }
        Cut::TimedOut => cut.into(),
    }
}

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

fn error_event(e: &ApiError) -> Event {
    event(
        "error",
        &json!({"error": {"message": e.message, "type": e.kind}}),
    )
}

fn sse(stream: futures::channel::mpsc::UnboundedReceiver<Event>) -> Response {
    Sse::new(stream.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    query: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    top_k: Option<usize>,
}

/// `POST /v1/search`: the passages retrieval finds in the caller's scope.
pub async fn search(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    request: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = body(request)?;
    let tenant = tenant_of(&principal, request.tenant.as_deref())?;
    let query = question_text(&request.query)?;
    let k = request.top_k.unwrap_or(state.kb.retriever.settings().top_k);
    if !(1..=50).contains(&k) {
        return Err(ApiError::bad_request("top_k must be within 1..=50"));
    }
    let key = ConversationKey {
        platform: PLATFORM.to_owned(),
        tenant: tenant.clone(),
        channel: format!("{}/search", principal.user),
        thread: None,
    };
    state.core.admit(&principal.user, &key)?;
    let scope = state.core.scope(&tenant);
    let retrieval = state
        .bounded(state.kb.retriever.search(&scope, &query, None, k))
        .await?
        .map_err(|e| BotError::Internal(format!("search failed: {e}")))?;
    let hits: Vec<_> = retrieval
        .hits
        .iter()
        .map(|h| {
            let c = &h.chunk;
            let source = lore_core::answer::display_name(&c.source);
            json!({
                "score": h.score, "url": state.kb.assistant.links().link(&source),
                "source": source, "title": c.title, "text": c.text,
                "page": c.page, "heading": c.heading, "timestamp": c.timestamp,
            })
        })
        .collect();
    Ok(Json(json!({"evidence": retrieval.evidence, "hits": hits})))
}

/// One item of an ingest request.
enum Item {
    /// An upload, whole in its temporary file.
    File {
        kind: lore_core::ingest::document::DocKind,
        spooled: Spooled,
    },
    /// A file refused before it was spooled (its type is not one lore reads).
    Refused {
        name: String,
        error: BotError,
    },
    Url(String),
}

/// `POST /v1/ingest`: files and URLs into the caller's tenant, within its quota; each item
/// gets its own result, and one bad item does not stop the others. Files stream to
/// temporary files within the budget of uploads in flight (`ingest.max_inflight_mib`): a
/// request that finds no room is refused with 503 `uploads_busy`, and a file over
/// `ingest.max_file_mib` with 413 as soon as it passes the limit.
pub async fn ingest(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart
        .map_err(|e| ApiError::bad_request(format!("expected multipart/form-data: {e}")))?;
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let state2 = state.clone();
    state
        .bounded(ingest_items(state2, principal, length, multipart))
        .await?
}

/// A multipart read error as a response (its own status: 400, or 413 past the body limit).
fn read_failed(what: &str, e: axum::extract::multipart::MultipartError) -> ApiError {
    let mut err = ApiError::bad_request(format!("reading {what} failed: {}", e.body_text()));
    err.status = e.status();
    err
}

async fn ingest_items(
    state: Arc<HttpState>,
    principal: Principal,
    length: Option<u64>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let max = core.max_file_bytes();
    // The budget of this request's files, held until every item is stored.
    let mut reservation = core.uploads.reservation();
    let mut items = Vec::new();
    let mut requested_tenant = None;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(read_failed("the upload", e)),
        };
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().unwrap_or("").to_owned();
                // Only the last path component: a client path must not shape the source name.
                let file_name = file_name
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                if file_name.is_empty() {
                    return Err(ApiError::bad_request("a file field needs a file name"));
                }
                let Some(kind) = load::kind_for_path(std::path::Path::new(&file_name)) else {
                    // Not spooled: its bytes are read past and dropped chunk by chunk.
                    while field
                        .chunk()
                        .await
                        .map_err(|e| read_failed(&file_name, e))?
                        .is_some()
                    {}
                    items.push(Item::Refused {
                        error: BotError::Unsupported(file_name.clone()),
                        name: file_name,
                    });
                    continue;
                };
                // The request's length bounds its files: reserved up front (up to the file
                // limit) by the first file, so concurrent uploads queue for the budget
                // instead of each holding part of it; bytes past it are covered as they come.
                let mut spool = core.uploads.spool(&file_name, max, &mut reservation)?;
                if let Some(length) = length {
                    spool.reserve(length.min(max)).await?;
                }
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| read_failed(&file_name, e))?
                {
                    spool.write(&chunk).await?;
                }
                items.push(Item::File {
                    kind,
                    spooled: spool.finish().await?,
                });
            }
            "url" | "tenant" => {
                let text = field.text().await.map_err(|e| {
                    ApiError::bad_request(format!("reading {name}: {}", e.body_text()))
                })?;
                if name == "tenant" {
                    requested_tenant = Some(text);
                } else {
                    for url in text.split_whitespace() {
                        items.push(Item::Url(url.to_owned()));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?}; send file and url fields"
                )));
            }
        }
    }
    let tenant = tenant_of(&principal, requested_tenant.as_deref())?;
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to ingest: send file or url fields",
        ));
    }
    let limits = core.load_limits();
    let mut results = Vec::new();
    let mut stored_any = false;
    let mut failed = 0;
    for item in items {
        let (name, outcome) = match item {
            Item::File { kind, spooled } => {
                let name = spooled.name.clone();
                let outcome = async {
                    let doc = knowledge::load_spooled(&spooled, kind, name.clone(), limits.clone())
                        .await?;
                    // The bytes on disk are no longer needed once the text is loaded.
                    drop(spooled);
                    knowledge::store_document(core, &tenant, doc).await
                }
                .await;
                (name, outcome)
            }
            Item::Refused { name, error } => (name, Err(error)),
            Item::Url(url) => {
                let outcome = async {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(BotError::Usage("only http(s) URLs can be ingested".into()));
                    }
                    let doc = load::fetch_url(&url, &limits)
                        .await
                        .map_err(|e| BotError::Ingest(e.to_string()))?;
                    knowledge::store_document(core, &tenant, doc).await
                }
                .await;
                (url, outcome)
            }
        };
        results.push(match outcome {
            Ok(SourceOutcome::Stored { chunks, .. }) => {
                stored_any = true;
                json!({"name": name, "status": "stored", "chunks": chunks})
            }
            Ok(SourceOutcome::Unchanged) => json!({"name": name, "status": "unchanged"}),
            // Nothing more fits: the whole request is 507, not one item's failure.
            Err(BotError::Store(e)) if e.kind() == StoreErrorKind::NoSpace => {
                return Err(BotError::Store(e).into());
            }
            Err(e) => {
                failed += 1;
                tracing::info!(tenant = %tenant, item = %name, error = %e, "ingest item failed");
                json!({"name": name, "status": "failed", "error": e.to_string()})
            }
        });
    }
    drop(reservation);
    if stored_any {
        state.kb.store.commit().await?;
    }
    let status = if failed == results.len() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(json!({"results": results}))).into_response())
}

/// `GET /v1/sources`: the tenant's sources, then the shared ones its questions also see.
pub async fn sources(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = principal.tenant.clone();
    let store = &state.kb.store;
    let mut list: Vec<_> = store
        .sources(&TenantScope::only(&tenant))
        .await?
        .into_iter()
        .map(|s| json!({"source": display_name(&s.source), "chunks": s.chunks, "shared": false}))
        .collect();
    let scope = state.core.scope(&tenant);
    let global = &state.core.settings.global_tenant;
    if scope.tenants().len() > 1 && *global != tenant {
        list.extend(
            store
                .sources(&TenantScope::only(global))
                .await?
                .into_iter()
                .map(|s| json!({"source": display_name(&s.source), "chunks": s.chunks, "shared": true})),
        );
    }
    Ok(Json(json!({"tenant": tenant, "sources": list})))
}

/// `DELETE /v1/sources/{source}`: removes one source of the caller's tenant (never the
/// shared knowledge base, unless the token's tenant is the shared one).
pub async fn delete_source(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    Path(source): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let removed = knowledge::remove_source(&state.core, &principal.tenant, &source).await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "there is no source named {source:?} in this tenant (see GET /v1/sources)"
        )));
    }
    state.kb.store.commit().await?;
    Ok(Json(json!({"source": source, "removed_chunks": removed})))
}
