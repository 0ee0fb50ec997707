//! A local Telegram Bot API on 127.0.0.1 for the adapter's end-to-end tests: the real
//! teloxide client talks to it over HTTP with real long polling. It keeps chats, messages
//! and files, validates HTML the way Telegram does (supported tags only, balanced, escaped,
//! at most 4096 UTF-16 units after entity parsing), answers errors as
//! `200 {"ok":false,...}` (teloxide sleeps 10 s on a 5xx), and can be told to fail the next
//! call of a method in a chat (a 429 with `retry_after`, a "can't parse entities").

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::FromRequest;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "lore_test_bot";
const MESSAGE_LIMIT: usize = 4096;

/// One call the bot made, as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub params: Value,
    pub at: Instant,
    /// The error description returned, if the call failed.
    pub error: Option<String>,
}

/// A message the bot sent, as the chat shows it now.
#[derive(Debug, Clone)]
pub struct Shown {
    pub chat: i64,
    pub id: i64,
    /// The text as sent (HTML source when `html` is set).
    pub source: String,
    /// What Telegram displays: the text after entity parsing.
    pub visible: String,
    pub html: bool,
    pub reply_to: Option<i64>,
    pub edits: usize,
    pub deleted: bool,
}

struct Fault {
    method: String,
    chat: i64,
    code: u16,
    description: String,
    retry_after: Option<u64>,
}

#[derive(Default)]
struct World {
    updates: Vec<Value>,
    next_update: i64,
    next_message: HashMap<i64, i64>,
    chats: HashMap<i64, Value>,
    admins: HashSet<(i64, i64)>,
    files: HashMap<String, (String, Vec<u8>)>,
    /// File paths whose download answers 404.
    lost: HashSet<String>,
    shown: Vec<Shown>,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    commands: Option<Value>,
    /// The webhook set with setWebhook (url, secret_token, ...).
    webhook: Option<Value>,
}

struct Shared {
    token: String,
    world: Mutex<World>,
    changed: Notify,
}

/// The running fake; clones share it.
#[derive(Clone)]
pub struct FakeTelegram {
    pub url: String,
    pub token: String,
    shared: Arc<Shared>,
}

pub fn user(id: i64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name, "username": name.to_lowercase()})
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Lore", "username": BOT_USERNAME})
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl FakeTelegram {
    /// Starts the server on 127.0.0.1 with a random port.
    pub async fn start() -> Self {
        let token = "123456789:AAE_fake-token-for-tests-only-0123456789".to_owned();
        let shared = Arc::new(Shared {
            token: token.clone(),
            world: Mutex::new(World {
                next_update: 1,
                ..World::default()
            }),
            changed: Notify::new(),
        });
        let app = Router::new()
            .route("/{bot}/{method}", post(method))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, token, shared }
    }

    /// Changes the world and wakes everyone waiting on it.
    fn world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let r = f(&mut self.shared.world.lock().unwrap());
        self.shared.changed.notify_waiters();
        r
    }

    /// Reads the world (waking nobody, so a waiter's check cannot wake itself).
    fn read<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        f(&self.shared.world.lock().unwrap())
    }

    pub fn private_chat(&self, user_id: i64, name: &str) -> i64 {
        self.world(|w| {
            w.chats.insert(
                user_id,
                json!({"id": user_id, "type": "private", "first_name": name}),
            )
        });
        user_id
    }

    pub fn supergroup(&self, id: i64, title: &str) -> i64 {
        self.world(|w| {
            w.chats
                .insert(id, json!({"id": id, "type": "supergroup", "title": title}))
        });
        id
    }

    pub fn channel(&self, id: i64, title: &str) -> i64 {
        self.world(|w| {
            w.chats
                .insert(id, json!({"id": id, "type": "channel", "title": title}))
        });
        id
    }

    pub fn make_admin(&self, chat: i64, user: i64) {
        self.world(|w| w.admins.insert((chat, user)));
    }

    /// Stores a file for `getFile`; returns the document object a message carries.
    pub fn add_document(&self, file_id: &str, path: &str, name: &str, bytes: &[u8]) -> Value {
        self.world(|w| {
            w.files
                .insert(file_id.to_owned(), (path.to_owned(), bytes.to_vec()))
        });
        json!({"file_id": file_id, "file_unique_id": format!("u{file_id}"), "file_name": name,
               "mime_type": "text/markdown", "file_size": bytes.len()})
    }

    /// A new message from `from` in `chat`; `extra` fields are merged in. Returns the message.
    pub fn message(&self, chat: i64, from: Value, text: &str, extra: Value) -> Value {
        self.world(|w| {
            let id = next_id(w, chat);
            let mut m = json!({"message_id": id, "date": now(), "chat": chat_of(w, chat)});
            if !from.is_null() {
                m["from"] = from;
            }
            if !text.is_empty() {
                m["text"] = json!(text);
            }
            merge(&mut m, extra);
            m
        })
    }

    /// Queues an update of `kind` ("message", "edited_message", "channel_post", ...).
    pub fn push(&self, kind: &str, message: &Value) {
        self.world(|w| {
            let id = w.next_update;
            w.next_update += 1;
            w.updates.push(json!({"update_id": id, kind: message}));
        });
    }

    /// Queues raw update JSON (for malformed updates); its update_id is assigned.
    pub fn push_raw(&self, mut update: Value) {
        self.world(|w| {
            update["update_id"] = json!(w.next_update);
            w.next_update += 1;
            w.updates.push(update);
        });
    }

    /// Makes the next call of `method` in `chat` fail with `description`.
    pub fn fail_next(
        &self,
        method: &str,
        chat: i64,
        code: u16,
        description: &str,
        retry_after: Option<u64>,
    ) {
        self.world(|w| {
            w.faults.push(Fault {
                method: method.into(),
                chat,
                code,
                description: description.into(),
                retry_after,
            })
        });
    }

    /// Makes the file's download fail (404) while `getFile` still describes it.
    pub fn lose_file(&self, file_id: &str) {
        self.world(|w| {
            if let Some((path, _)) = w.files.get(file_id) {
                let path = path.clone();
                w.lost.insert(path);
            }
        });
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.read(|w| {
            w.calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect()
        })
    }

    pub fn shown_in(&self, chat: i64) -> Vec<Shown> {
        self.read(|w| {
            w.shown
                .iter()
                .filter(|s| s.chat == chat && !s.deleted)
                .cloned()
                .collect()
        })
    }

    pub fn webhook(&self) -> Option<Value> {
        self.read(|w| w.webhook.clone())
    }

    pub fn commands(&self) -> Option<Value> {
        self.read(|w| w.commands.clone())
    }

    /// Waits until `check` returns Some, re-checking on every change (generous bound).
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&FakeTelegram) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check(self) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }

    /// Waits for the bot's reply to message `to` in `chat` to be final: a message that
    /// replies to it (or, in a private chat, any message after `after`) that no longer ends
    /// with the streaming "…", and returns every message of that reply.
    pub async fn reply(&self, chat: i64, after: usize) -> Vec<Shown> {
        self.wait_for("a reply", |f| {
            let shown = f.shown_in(chat);
            let new: Vec<Shown> = shown.into_iter().skip(after).collect();
            let done = !new.is_empty() && !new.last().unwrap().visible.ends_with('…');
            done.then_some(new)
        })
        .await
    }
}

fn next_id(w: &mut World, chat: i64) -> i64 {
    let n = w.next_message.entry(chat).or_insert(100);
    *n += 1;
    *n
}

fn chat_of(w: &World, chat: i64) -> Value {
    w.chats.get(&chat).cloned().unwrap_or_else(|| {
        if chat > 0 {
            json!({"id": chat, "type": "private", "first_name": "someone"})
        } else {
            json!({"id": chat, "type": "supergroup", "title": "a group"})
        }
    })
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        for (k, v) in extra {
            into.insert(k, v);
        }
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn err(code: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(s) = retry_after {
        body["parameters"] = json!({"retry_after": s});
    }
    // Always 200: teloxide sleeps 10 s after a 5xx.
    axum::Json(body).into_response()
}

async fn file(State(s): State<Arc<Shared>>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot != format!("bot{}", s.token) {
        return (axum::http::StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    let world = s.world.lock().unwrap();
    if world.lost.contains(&path) {
        return (axum::http::StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    match world.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn method(
    State(s): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    if bot != format!("bot{}", s.token) {
        return err(401, "Unauthorized", None);
    }
    let multipart = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let params = if multipart {
        // setWebhook and uploads: every field is text, JSON-encoded where structured.
        let mut form = match axum::extract::Multipart::from_request(request, &()).await {
            Ok(form) => form,
            Err(_) => return err(400, "Bad Request: bad multipart body", None),
        };
        let mut params = serde_json::Map::new();
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or("").to_owned();
            let text = field.text().await.unwrap_or_default();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            params.insert(name, value);
        }
        Value::Object(params)
    } else {
        let body = axum::body::to_bytes(request.into_body(), 10 << 20)
            .await
            .unwrap_or_default();
        let params: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
        if params.is_object() {
            params
        } else {
            json!({})
        }
    };
    let response = if method == "GetUpdates" {
        get_updates(&s, &params).await
    } else {
        let mut w = s.world.lock().unwrap();
        let chat = params["chat_id"].as_i64().unwrap_or(0);
        let fault = w
            .faults
            .iter()
            .position(|f| f.method == method && f.chat == chat)
            .map(|i| w.faults.remove(i));
        match fault {
            Some(f) => Err((f.code, f.description, f.retry_after)),
            None => call(&mut w, &method, &params),
        }
    };
    let mut w = s.world.lock().unwrap();
    w.calls.push(Call {
        method: method.clone(),
        params,
        at: Instant::now(),
        error: response.as_ref().err().map(|e| e.1.clone()),
    });
    drop(w);
    s.changed.notify_waiters();
    match response {
        Ok(v) => ok(v),
        Err((code, d, retry)) => err(code, &d, retry),
    }
}

type Outcome = Result<Value, (u16, String, Option<u64>)>;

fn bad(description: impl Into<String>) -> Outcome {
    Err((400, format!("Bad Request: {}", description.into()), None))
}

async fn get_updates(s: &Shared, params: &Value) -> Outcome {
    if s.world.lock().unwrap().webhook.is_some() {
        return Err((
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first".into(),
            None,
        ));
    }
    let offset = params["offset"].as_i64().unwrap_or(0);
    let timeout = params["timeout"].as_u64().unwrap_or(0).min(50);
    let limit = params["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = s.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut w = s.world.lock().unwrap();
            // Asking from an offset confirms every earlier update.
            if offset > 0 {
                w.updates
                    .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            }
            if !w.updates.is_empty() {
                let batch: Vec<Value> = w.updates.iter().take(limit).cloned().collect();
                return Ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(json!([]));
        }
    }
}

fn call(w: &mut World, method: &str, p: &Value) -> Outcome {
    match method {
        "GetMe" => {
            let mut me = bot_user();
            merge(
                &mut me,
                json!({"can_join_groups": true, "can_read_all_group_messages": false,
                       "supports_inline_queries": false, "can_connect_to_business": false,
                       "has_main_web_app": false}),
            );
            Ok(me)
        }
        "GetWebhookInfo" => {
            let url = w.webhook.as_ref().map_or(json!(""), |h| h["url"].clone());
            Ok(json!({"url": url, "has_custom_certificate": false,
                      "pending_update_count": w.updates.len()}))
        }
        "DeleteWebhook" => {
            w.webhook = None;
            Ok(json!(true))
        }
        "SetWebhook" => {
            let url = p["url"].as_str().unwrap_or("");
            let secret = p["secret_token"].as_str().unwrap_or("");
            let secret_ok = secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && secret.len() <= 256;
            if !url.starts_with("http") || !secret_ok {
                return bad("bad webhook: invalid URL or secret token");
            }
            w.webhook = Some(p.clone());
            Ok(json!(true))
        }
        "SendChatAction" => Ok(json!(true)),
        "SetMyCommands" => {
            let Some(list) = p["commands"].as_array() else {
                return bad("commands must be an array");
            };
            for c in list {
                let name = c["command"].as_str().unwrap_or("");
                let about = c["description"].as_str().unwrap_or("");
                let valid = (1..=32).contains(&name.len())
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
                if !valid || !(1..=256).contains(&about.chars().count()) {
                    return bad("BOT_COMMAND_INVALID");
                }
            }
            w.commands = Some(p["commands"].clone());
            Ok(json!(true))
        }
        "SendMessage" => {
            let chat = p["chat_id"].as_i64().ok_or((
                400,
                "Bad Request: chat not found".to_owned(),
                None,
            ))?;
            let (visible, html) = visible_text(p)?;
            let id = next_id(w, chat);
            let reply_to = p["reply_parameters"]["message_id"].as_i64();
            w.shown.push(Shown {
                chat,
                id,
                source: p["text"].as_str().unwrap_or("").to_owned(),
                visible: visible.clone(),
                html,
                reply_to,
                edits: 0,
                deleted: false,
            });
            let mut m = json!({"message_id": id, "date": now(), "chat": chat_of(w, chat),
                               "from": bot_user(), "text": visible});
            if let Some(thread) = p["message_thread_id"].as_i64() {
                m["message_thread_id"] = json!(thread);
                m["is_topic_message"] = json!(true);
            }
            Ok(m)
        }
        "EditMessageText" => {
            let chat = p["chat_id"].as_i64().unwrap_or(0);
            let id = p["message_id"].as_i64().unwrap_or(0);
            let (visible, html) = visible_text(p)?;
            let source = p["text"].as_str().unwrap_or("").to_owned();
            let chat_json = chat_of(w, chat);
            let Some(m) = w
                .shown
                .iter_mut()
                .find(|m| m.chat == chat && m.id == id && !m.deleted)
            else {
                return bad("message to edit not found");
            };
            if m.source == source && m.html == html {
                return bad(
                    "message is not modified: specified new message content and reply markup are \
                     exactly the same as a current content and reply markup of the message",
                );
            }
            m.source = source;
            m.visible = visible.clone();
            m.html = html;
            m.edits += 1;
            Ok(
                json!({"message_id": id, "date": now(), "edit_date": now(), "chat": chat_json,
                      "from": bot_user(), "text": visible}),
            )
        }
        "DeleteMessage" => {
            let chat = p["chat_id"].as_i64().unwrap_or(0);
            let id = p["message_id"].as_i64().unwrap_or(0);
            match w.shown.iter_mut().find(|m| m.chat == chat && m.id == id) {
                Some(m) => {
                    m.deleted = true;
                    Ok(json!(true))
                }
                None => bad("message to delete not found"),
            }
        }
        "GetFile" => {
            let id = p["file_id"].as_str().unwrap_or("");
            match w.files.get(id) {
                Some((path, bytes)) => {
                    Ok(json!({"file_id": id, "file_unique_id": format!("u{id}"),
                                                 "file_size": bytes.len(), "file_path": path}))
                }
                None => bad("invalid file_id"),
            }
        }
        "GetChatMember" => {
            let chat = p["chat_id"].as_i64().unwrap_or(0);
            let uid = p["user_id"].as_i64().unwrap_or(0);
            let u = json!({"id": uid, "is_bot": false, "first_name": "member"});
            if w.admins.contains(&(chat, uid)) {
                Ok(
                    json!({"status": "administrator", "user": u, "can_be_edited": false,
                          "is_anonymous": false, "can_manage_chat": true, "can_change_info": true,
                          "can_delete_messages": true, "can_manage_video_chats": true,
                          "can_invite_users": true, "can_restrict_members": true,
                          "can_promote_members": false, "can_pin_messages": true}),
                )
            } else {
                Ok(json!({"status": "member", "user": u}))
            }
        }
        _ => Err((404, "Not Found: method not found".into(), None)),
    }
}

/// The text Telegram would display, and whether it was HTML; errors as Telegram words them.
fn visible_text(p: &Value) -> Result<(String, bool), (u16, String, Option<u64>)> {
    let text = p["text"].as_str().unwrap_or("");
    let html = p["parse_mode"].as_str() == Some("HTML");
    let visible = if html {
        parse_html(text)
            .map_err(|e| (400, format!("Bad Request: can't parse entities: {e}"), None))?
    } else {
        text.to_owned()
    };
    if visible.trim().is_empty() {
        return Err((400, "Bad Request: message text is empty".into(), None));
    }
    if visible.encode_utf16().count() > MESSAGE_LIMIT {
        return Err((400, "Bad Request: message is too long".into(), None));
    }
    Ok((visible, html))
}

const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "span",
    "blockquote",
    "tg-emoji",
];

/// Parses Telegram HTML strictly: supported tags, properly nested, entities escaped; code
/// holds no other tag except `<code>` directly inside `<pre>`. Returns the visible text.
pub fn parse_html(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap();
        match c {
            '<' => {
                let end = text[i..]
                    .find('>')
                    .map(|e| i + e)
                    .ok_or(format!("Unclosed start tag at byte offset {i}"))?;
                let inner = &text[i + 1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        _ => return Err(format!("Unexpected end tag at byte offset {i}")),
                    }
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("");
                    if !TAGS.contains(&name) {
                        return Err(format!(
                            "Unsupported start tag \"{name}\" at byte offset {i}"
                        ));
                    }
                    let attrs = inner[name.len()..].trim();
                    if name == "code" && !attrs.is_empty() {
                        let lang = attrs
                            .strip_prefix("class=\"language-")
                            .and_then(|a| a.strip_suffix('"'))
                            .ok_or(format!("Bad code attributes at byte offset {i}"))?;
                        if lang.contains(['"', '<', '>', '&']) {
                            return Err(format!("Bad language at byte offset {i}"));
                        }
                    }
                    match stack.last().map(String::as_str) {
                        Some("code") => {
                            return Err(format!(
                                "Entities can't be nested in code at byte offset {i}"
                            ));
                        }
                        Some("pre") if name != "code" => {
                            return Err(format!(
                                "Entities can't be nested in pre at byte offset {i}"
                            ));
                        }
                        _ => {}
                    }
                    stack.push(name.to_owned());
                }
                i = end + 1;
            }
            '&' => {
                let end = text[i..]
                    .find(';')
                    .filter(|&e| e <= 10)
                    .map(|e| i + e)
                    .ok_or(format!("Unescaped & at byte offset {i}"))?;
                let entity = &text[i + 1..end];
                let ch = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    e if e.starts_with('#') => e[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or(format!("Bad character reference at byte offset {i}"))?,
                    _ => return Err(format!("Unsupported entity at byte offset {i}")),
                };
                out.push(ch);
                i = end + 1;
            }
            '>' => return Err(format!("Unescaped > at byte offset {i}")),
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(out)
}
