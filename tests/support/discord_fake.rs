//! A local Discord on 127.0.0.1 for tests: the REST routes lore's adapter calls (under
//! `/api/v10`, the base serenity's proxy setting rewrites `https://discord.com` to) and a
//! gateway websocket (HELLO, IDENTIFY → READY, heartbeat/ACK, dispatches, RESUME → replay +
//! RESUMED). Every response is a well-formed Discord object, so the real serenity client runs.
//! A guild's events go to shard `(guild_id >> 22) % total`, as on Discord.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_util::sync::CancellationToken;

pub const BOT_ID: u64 = 900_000_000_000_000_001;
pub const APP_ID: u64 = 900_000_000_000_000_002;
const TIMESTAMP: &str = "2026-12-02T10:00:00.000000+00:00";
/// Permission bit of Manage Server.
pub const MANAGE_GUILD: u64 = 1 << 5;

/// A message the bot posted (or the interaction response it completed).
#[derive(Debug, Clone)]
pub struct Posted {
    pub id: u64,
    pub channel: u64,
    pub content: String,
    /// Every version of the text, first to last.
    pub versions: Vec<String>,
    pub allowed_mentions: Vec<Value>,
    /// The message it replies to.
    pub reply_to: Option<u64>,
    /// Set for interaction responses: the interaction token.
    pub interaction: Option<String>,
    /// The Authorization header it came with (which bot process sent it).
    pub auth: String,
}

#[derive(Default)]
struct Session {
    id: String,
    total: u32,
    seq: u64,
    log: Vec<(u64, String, Value)>,
    conn: Option<(u64, mpsc::UnboundedSender<Ws>, CancellationToken)>,
}

/// What the fake has seen and holds; tests read it through [`FakeDiscord::wait_for`].
#[derive(Default)]
pub struct Seen {
    next_id: u64,
    /// (shard, total) of every IDENTIFY, in order.
    pub identifies: Vec<(u32, u32)>,
    /// Token of every IDENTIFY (to check it is sent as configured).
    pub tokens: Vec<String>,
    pub intents: Vec<u64>,
    /// (shard, seq) of every RESUME.
    pub resumes: Vec<(u32, u64)>,
    sessions: BTreeMap<u32, Session>,
    pub posted: Vec<Posted>,
    /// (interaction id, response type) of every callback.
    pub callbacks: Vec<(u64, u64)>,
    pub typing: Vec<u64>,
    /// Command registrations: (guild, names).
    pub commands: Vec<(Option<u64>, Vec<String>)>,
    roles: HashMap<u64, Vec<Value>>,
    files: HashMap<String, Vec<u8>>,
    history: HashMap<u64, Vec<Value>>,
    /// Channels where replies (messages with a reference) are refused with 400.
    refuse_replies: HashSet<u64>,
    /// Channels where every message is refused with 403.
    forbidden: HashSet<u64>,
    /// Every REST request: "METHOD path".
    pub requests: Vec<String>,
    /// Close every IDENTIFY with 4014 Disallowed intents, as Discord does when the
    /// privileged Message Content intent is not enabled.
    deny_intents: bool,
    /// Threads the bot opened: (thread, parent channel, starter message, name).
    pub threads: Vec<(u64, u64, u64, String)>,
    /// Channels whose next message gets 429 Too Many Requests.
    rate_limit_once: HashSet<u64>,
    /// Channels where threads cannot be opened (400, as inside a thread).
    no_threads: HashSet<u64>,
    channel_guild: HashMap<u64, u64>,
}

impl Seen {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        // Snowflake-like ids that grow with time.
        (1_000 + self.next_id) << 22
    }

    /// Bot messages in `channel`, oldest first.
    pub fn bot_messages(&self, channel: u64) -> Vec<Posted> {
        self.posted
            .iter()
            .filter(|p| p.channel == channel)
            .cloned()
            .collect()
    }

    /// The responses (original and follow-ups) of the interaction with `token`.
    pub fn interaction_messages(&self, token: &str) -> Vec<Posted> {
        self.posted
            .iter()
            .filter(|p| p.interaction.as_deref() == Some(token))
            .cloned()
            .collect()
    }

    pub fn connected_shards(&self) -> Vec<u32> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(k, _)| *k)
            .collect()
    }
}

struct Shared {
    seen: Mutex<Seen>,
    changed: Notify,
    base: String,
    ws_url: String,
    recommended_shards: u32,
}

impl Shared {
    fn update<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        let out = f(&mut self.seen.lock().unwrap());
        self.changed.notify_waiters();
        out
    }
}

/// A running fake Discord.
#[derive(Clone)]
pub struct FakeDiscord {
    /// The value for `[discord] api_base`.
    pub api_base: String,
    shared: Arc<Shared>,
}

/// A user of the fake.
#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub roles: Vec<u64>,
}

impl User {
    pub fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.into(),
            roles: Vec::new(),
        }
    }

    pub fn with_role(mut self, role: u64) -> Self {
        self.roles.push(role);
        self
    }

    fn json(&self) -> Value {
        user_json(self.id, &self.name, false)
    }
}

fn user_json(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name,
           "avatar": null, "bot": bot, "public_flags": 0})
}

fn bot_user() -> Value {
    user_json(BOT_ID, "lore", true)
}

impl FakeDiscord {
    /// Starts the REST API and the gateway; Discord recommends `recommended_shards`.
    pub async fn start(recommended_shards: u32) -> Self {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", http.local_addr().unwrap());
        let shared = Arc::new(Shared {
            seen: Mutex::default(),
            changed: Notify::new(),
            ws_url: format!("ws://{}", gateway.local_addr().unwrap()),
            base: base.clone(),
            recommended_shards,
        });
        let api = axum::Router::new()
            .route("/gateway", get(gateway_url))
            .route("/gateway/bot", get(gateway_bot))
            .route("/applications/{app}/commands", put(set_commands))
            .route(
                "/applications/{app}/guilds/{guild}/commands",
                put(set_guild_commands),
            )
            .route("/guilds/{guild}/roles", get(guild_roles))
            .route(
                "/channels/{channel}/messages",
                post(create_message).get(channel_history),
            )
            .route(
                "/channels/{channel}/messages/{message}",
                patch(edit_message),
            )
            .route("/channels/{channel}/typing", post(typing))
            .route(
                "/channels/{channel}/messages/{message}/threads",
                post(create_thread),
            )
            .route("/interactions/{id}/{token}/callback", post(callback))
            .route(
                "/webhooks/{app}/{token}/messages/@original",
                patch(edit_original),
            )
            .route("/webhooks/{app}/{token}", post(followup))
            .route(
                "/webhooks/{app}/{token}/messages/{message}",
                patch(edit_followup),
            );
        let app = axum::Router::new()
            .nest("/api/v10", api)
            .route("/attachments/{name}", get(cdn_file))
            .fallback(unknown_route)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                record_and_rate_limit_headers,
            ))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
        let gw = shared.clone();
        tokio::spawn(async move {
            let mut conn_id = 0u64;
            loop {
                let Ok((stream, _)) = gateway.accept().await else {
                    return;
                };
                conn_id += 1;
                tokio::spawn(gateway_connection(gw.clone(), stream, conn_id));
            }
        });
        Self {
            api_base: base,
            shared,
        }
    }

    /// Waits (generously) until `f` finds what it looks for in the fake's state.
    pub async fn wait_for<T>(&self, what: &str, f: impl Fn(&Seen) -> Option<T>) -> T {
        let waiting = async {
            loop {
                let notified = self.shared.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(found) = f(&self.shared.seen.lock().unwrap()) {
                    return found;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(Duration::from_secs(180), waiting).await {
            Ok(found) => found,
            Err(_) => {
                let seen = self.shared.seen.lock().unwrap();
                panic!(
                    "timed out waiting for {what}; bot messages: {:#?}; requests: {:#?}",
                    seen.posted, seen.requests
                )
            }
        }
    }

    /// Reads the state now.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.seen.lock().unwrap())
    }

    pub fn add_role(&self, guild: u64, role: u64, name: &str, permissions: u64) {
        self.shared.update(|s| {
            s.roles.entry(guild).or_default().push(json!({
                "id": role.to_string(), "name": name, "color": 0,
                "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
                "hoist": false, "managed": false, "mentionable": false,
                "permissions": permissions.to_string(), "position": 1, "icon": null,
                "unicode_emoji": null, "flags": 0
            }))
        });
    }

    /// Puts a file on the fake CDN; returns its attachment object.
    pub fn add_file(&self, name: &str, bytes: &[u8], content_type: &str) -> Value {
        let url = format!("{}/attachments/{name}", self.shared.base);
        self.shared.update(|s| {
            s.files.insert(name.to_owned(), bytes.to_vec());
            let id = s.id();
            json!({"id": id.to_string(), "filename": name, "size": bytes.len(), "url": url,
                   "proxy_url": url, "content_type": content_type})
        })
    }

    /// Replies (messages with a reference) in `channel` get 400, as for a deleted message.
    pub fn refuse_replies_in(&self, channel: u64) {
        self.shared.update(|s| s.refuse_replies.insert(channel));
    }

    /// The next message posted in `channel` gets a 429 with Discord's headers and body.
    pub fn rate_limit_once(&self, channel: u64) {
        self.shared.update(|s| s.rate_limit_once.insert(channel));
    }

    /// Refuses to open threads in `channel`.
    pub fn refuse_threads_in(&self, channel: u64) {
        self.shared.update(|s| s.no_threads.insert(channel));
    }

    /// Refuses the gateway intents at IDENTIFY (close code 4014).
    pub fn deny_intents(&self) {
        self.shared.update(|s| s.deny_intents = true);
    }

    /// Every message in `channel` gets 403 Missing Permissions.
    pub fn forbid(&self, channel: u64) {
        self.shared.update(|s| s.forbidden.insert(channel));
    }

    /// Waits until `n` shards are connected and identified.
    pub async fn wait_shards(&self, n: usize) -> Vec<u32> {
        self.wait_for(&format!("{n} connected shards"), |s| {
            let shards = s.connected_shards();
            (shards.len() >= n && !s.commands.is_empty()).then_some(shards)
        })
        .await
    }

    /// A user posts `content` in `channel` (of `guild`, or a DM when None); returns its id.
    pub fn post(
        &self,
        guild: Option<u64>,
        channel: u64,
        author: &User,
        content: &str,
        attachments: Vec<Value>,
        reply_to: Option<u64>,
    ) -> u64 {
        self.shared.update(|s| {
            let id = s.id();
            let mentions: Vec<Value> = if content.contains(&format!("<@{BOT_ID}>")) {
                vec![bot_user()]
            } else {
                Vec::new()
            };
            let referenced = reply_to.and_then(|r| {
                s.history
                    .values()
                    .flatten()
                    .find(|m| is_id(m, r))
                    .cloned()
            });
            let mut m = message_json(id, channel, &author.json(), content, mentions, attachments);
            if let Some(r) = referenced {
                m["message_reference"] =
                    json!({"type": 0, "message_id": r["id"], "channel_id": channel.to_string()});
                m["referenced_message"] = r;
                m["type"] = json!(19);
            }
            s.history.entry(channel).or_default().push(m.clone());
            if let Some(g) = guild {
                s.channel_guild.insert(channel, g);
                m["guild_id"] = json!(g.to_string());
                m["member"] = json!({"roles": author.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                                     "joined_at": TIMESTAMP, "deaf": false, "mute": false, "flags": 0});
            }
            dispatch(s, guild, "MESSAGE_CREATE", m);
            id
        })
    }

    /// A user edits their message.
    pub fn edit(&self, guild: u64, channel: u64, message: u64, author: &User, content: &str) {
        self.shared.update(|s| {
            if let Some(m) = s
                .history
                .get_mut(&channel)
                .and_then(|h| h.iter_mut().find(|m| is_id(m, message)))
            {
                m["content"] = json!(content);
            }
            let mut m = message_json(message, channel, &author.json(), content, vec![], vec![]);
            m["edited_timestamp"] = json!(TIMESTAMP);
            m["guild_id"] = json!(guild.to_string());
            dispatch(s, Some(guild), "MESSAGE_UPDATE", m);
        });
    }

    /// A message is deleted.
    pub fn delete(&self, guild: u64, channel: u64, message: u64) {
        self.shared.update(|s| {
            if let Some(h) = s.history.get_mut(&channel) {
                h.retain(|m| !is_id(m, message));
            }
            dispatch(
                s,
                Some(guild),
                "MESSAGE_DELETE",
                json!({"id": message.to_string(), "channel_id": channel.to_string(),
                       "guild_id": guild.to_string()}),
            );
        });
    }

    /// A user runs a slash command; returns the interaction's token. The arguments are
    /// the interaction's own fields.
    #[allow(clippy::too_many_arguments)]
    pub fn slash(
        &self,
        guild: u64,
        channel: u64,
        author: &User,
        permissions: u64,
        name: &str,
        options: Vec<Value>,
        attachments: Vec<Value>,
    ) -> String {
        self.shared.update(|s| {
            let id = s.id();
            let token = format!("interaction-token-{id}");
            let resolved: serde_json::Map<String, Value> = attachments
                .iter()
                .map(|a| (a["id"].as_str().unwrap().to_owned(), a.clone()))
                .collect();
            let d = json!({
                "id": id.to_string(), "application_id": APP_ID.to_string(), "type": 2,
                "data": {"id": "1", "name": name, "type": 1, "options": options,
                         "resolved": {"attachments": resolved}},
                "guild_id": guild.to_string(), "channel_id": channel.to_string(),
                "member": {"user": author.json(), "roles": author.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                           "joined_at": TIMESTAMP, "deaf": false, "mute": false, "flags": 0,
                           "pending": false, "permissions": permissions.to_string()},
                "token": token, "version": 1, "app_permissions": "0", "locale": "en-US",
                "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {},
                "context": 0, "attachment_size_limit": 26214400
            });
            dispatch(s, Some(guild), "INTERACTION_CREATE", d);
            token
        })
    }

    /// Sends a raw dispatch (e.g. a malformed event) to the guild's shard.
    pub fn raw_dispatch(&self, guild: u64, kind: &str, d: Value) {
        self.shared.update(|s| dispatch(s, Some(guild), kind, d));
    }

    /// Cuts the shard's connection without a close frame, as a network failure would.
    pub fn drop_connection(&self, shard: u32) {
        self.shared.update(|s| {
            if let Some((_, _, cancel)) = s.sessions.get_mut(&shard).and_then(|x| x.conn.take()) {
                cancel.cancel();
            }
        });
    }
}

/// The shard a guild's events go to.
pub fn shard_of(guild: u64, total: u32) -> u32 {
    ((guild >> 22) % u64::from(total)) as u32
}

fn message_json(
    id: u64,
    channel: u64,
    author: &Value,
    content: &str,
    mentions: Vec<Value>,
    attachments: Vec<Value>,
) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel.to_string(), "author": author,
        "content": content, "timestamp": TIMESTAMP, "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": mentions, "mention_roles": [],
        "attachments": attachments, "embeds": [], "pinned": false, "type": 0, "flags": 0,
        "components": []
    })
}

/// Appends to the shard's log and sends it if the shard is connected.
fn dispatch(s: &mut Seen, guild: Option<u64>, kind: &str, d: Value) {
    let total = s
        .sessions
        .values()
        .map(|x| x.total)
        .max()
        .unwrap_or(1)
        .max(1);
    let shard = guild.map_or(0, |g| shard_of(g, total));
    let Some(session) = s.sessions.get_mut(&shard) else {
        return;
    };
    session.seq += 1;
    let seq = session.seq;
    session.log.push((seq, kind.to_owned(), d.clone()));
    if let Some((_, tx, _)) = &session.conn {
        let _ = tx.send(frame(0, Some(seq), Some(kind), d));
    }
}

fn frame(op: u8, s: Option<u64>, t: Option<&str>, d: Value) -> Ws {
    Ws::text(json!({"op": op, "s": s, "t": t, "d": d}).to_string())
}

async fn gateway_connection(shared: Arc<Shared>, stream: tokio::net::TcpStream, conn_id: u64) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut write, mut read) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Ws>();
    let cancel = CancellationToken::new();
    let _ = tx.send(frame(10, None, None, json!({"heartbeat_interval": 1500})));
    let writer_cancel = cancel.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = writer_cancel.cancelled() => return,
                next = rx.recv() => match next {
                    Some(m) => if write.send(m).await.is_err() { return },
                    None => return,
                },
            }
        }
    });
    let mut shard_of_conn: Option<u32> = None;
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => break,
            m = read.next() => m,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        let Ok(text) = message.to_text() else {
            continue;
        };
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        match payload["op"].as_u64() {
            Some(1) => {
                let _ = tx.send(frame(11, None, None, Value::Null));
            }
            Some(2) => {
                let d = &payload["d"];
                let shard = d["shard"][0].as_u64().unwrap_or(0) as u32;
                let total = d["shard"][1].as_u64().unwrap_or(1) as u32;
                if shared.update(|s| s.deny_intents) {
                    let close = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: 4014.into(),
                        reason: "Disallowed intent(s).".into(),
                    };
                    let _ = tx.send(Ws::Close(Some(close)));
                    continue;
                }
                shard_of_conn = Some(shard);
                shared.update(|s| {
                    s.identifies.push((shard, total));
                    s.tokens
                        .push(d["token"].as_str().unwrap_or_default().to_owned());
                    s.intents.push(d["intents"].as_u64().unwrap_or(0));
                    let session_id = format!("session-{shard}-{conn_id}");
                    let session = s.sessions.entry(shard).or_default();
                    *session = Session {
                        id: session_id.clone(),
                        total,
                        seq: 1,
                        log: Vec::new(),
                        conn: Some((conn_id, tx.clone(), cancel.clone())),
                    };
                    let ready = json!({
                        "v": 10, "user": bot_user(), "guilds": [], "session_id": session_id,
                        "resume_gateway_url": shared.ws_url, "shard": [shard, total],
                        "application": {"id": APP_ID.to_string(), "flags": 1 << 18}
                    });
                    let _ = tx.send(frame(0, Some(1), Some("READY"), ready));
                });
            }
            Some(6) => {
                let d = &payload["d"];
                let session_id = d["session_id"].as_str().unwrap_or_default().to_owned();
                let after = d["seq"].as_u64().unwrap_or(0);
                let resumed = shared.update(|s| {
                    let found = s
                        .sessions
                        .iter_mut()
                        .find(|(_, x)| x.id == session_id)
                        .map(|(k, x)| (*k, x));
                    let (shard, session) = found?;
                    for (seq, kind, d) in session.log.iter().filter(|(q, _, _)| *q > after) {
                        let _ = tx.send(frame(0, Some(*seq), Some(kind.as_str()), d.clone()));
                    }
                    session.seq += 1;
                    let _ = tx.send(frame(0, Some(session.seq), Some("RESUMED"), json!({})));
                    session.conn = Some((conn_id, tx.clone(), cancel.clone()));
                    Some((shard, after))
                });
                match resumed {
                    Some((shard, after)) => {
                        shard_of_conn = Some(shard);
                        shared.update(|s| s.resumes.push((shard, after)));
                    }
                    // Not resumable: the client must identify again.
                    None => {
                        let _ = tx.send(frame(9, None, None, json!(false)));
                    }
                }
            }
            _ => {}
        }
    }
    cancel.cancel();
    let _ = writer.await;
    if let Some(shard) = shard_of_conn {
        shared.update(|s| {
            if let Some(session) = s.sessions.get_mut(&shard)
                && session
                    .conn
                    .as_ref()
                    .is_some_and(|(id, _, _)| *id == conn_id)
            {
                session.conn = None;
            }
        });
    }
}

async fn record_and_rate_limit_headers(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!("{} {}", request.method(), request.uri().path());
    shared.update(|s| s.requests.push(line));
    let mut response = next.run(request).await;
    // Discord's rate-limit headers, with room to spare.
    let h = response.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from_static("50"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("49"));
    h.insert("x-ratelimit-reset-after", HeaderValue::from_static("1.000"));
    h.insert(
        "x-ratelimit-bucket",
        HeaderValue::from_static("fake-bucket"),
    );
    response
}

fn discord_error(status: StatusCode, code: u64, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

async fn unknown_route(request: axum::extract::Request) -> Response {
    discord_error(
        StatusCode::NOT_FOUND,
        0,
        &format!("404: Not Found ({} {})", request.method(), request.uri()),
    )
}

async fn gateway_url(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"url": shared.ws_url}))
}

async fn gateway_bot(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(
        json!({"url": shared.ws_url, "shards": shared.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                        "max_concurrency": 1}}),
    )
}

fn echo_commands(guild: Option<u64>, body: &Value) -> (Vec<String>, Value) {
    let list = body.as_array().cloned().unwrap_or_default();
    let names: Vec<String> = list
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let out: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": (100 + i).to_string(), "type": 1, "application_id": APP_ID.to_string(),
                   "guild_id": guild.map(|g| g.to_string()), "name": c["name"],
                   "description": c["description"], "default_member_permissions": null,
                   "nsfw": false, "version": "1"})
        })
        .collect();
    (names, Value::Array(out))
}

async fn set_commands(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Json<Value> {
    let (names, out) = echo_commands(None, &body);
    shared.update(|s| s.commands.push((None, names)));
    Json(out)
}

async fn set_guild_commands(
    State(shared): State<Arc<Shared>>,
    Path((_app, guild)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let (names, out) = echo_commands(Some(guild), &body);
    shared.update(|s| s.commands.push((Some(guild), names)));
    Json(out)
}

async fn guild_roles(State(shared): State<Arc<Shared>>, Path(guild): Path<u64>) -> Json<Value> {
    let mut roles = shared
        .seen
        .lock()
        .unwrap()
        .roles
        .get(&guild)
        .cloned()
        .unwrap_or_default();
    // @everyone (id = guild id) with no special permission.
    roles.push(json!({
        "id": guild.to_string(), "name": "@everyone", "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false, "managed": false, "mentionable": false, "permissions": "1024",
        "position": 0, "icon": null, "unicode_emoji": null, "flags": 0
    }));
    Json(Value::Array(roles))
}

fn allowed_mentions(body: &Value) -> Value {
    body.get("allowed_mentions").cloned().unwrap_or(Value::Null)
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<u64>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    let reply_to = body["message_reference"]["message_id"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .or_else(|| body["message_reference"]["message_id"].as_u64());
    let refused = shared.update(|s| {
        if s.rate_limit_once.remove(&channel) {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(
                    json!({"message": "You are being rate limited.", "retry_after": 0.3,
                            "global": false}),
                ),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert("retry-after", HeaderValue::from_static("1"));
            h.insert("x-ratelimit-scope", HeaderValue::from_static("user"));
            Some(r)
        } else if s.forbidden.contains(&channel) {
            Some(discord_error(
                StatusCode::FORBIDDEN,
                50013,
                "Missing Permissions",
            ))
        } else if (reply_to.is_some() && s.refuse_replies.contains(&channel))
            || content.chars().count() > 2000
        {
            Some(discord_error(
                StatusCode::BAD_REQUEST,
                50035,
                "Invalid Form Body",
            ))
        } else {
            None
        }
    });
    if let Some(r) = refused {
        return r;
    }
    let m = shared.update(|s| {
        let id = s.id();
        s.posted.push(Posted {
            id,
            channel,
            content: content.clone(),
            versions: vec![content.clone()],
            allowed_mentions: vec![allowed_mentions(&body)],
            reply_to,
            interaction: None,
            auth,
        });
        let m = message_json(id, channel, &bot_user(), &content, vec![], vec![]);
        s.history.entry(channel).or_default().push(m.clone());
        m
    });
    Json(m).into_response()
}

fn apply_edit(s: &mut Seen, id: u64, body: &Value) -> Option<Value> {
    let p = s.posted.iter_mut().find(|p| p.id == id)?;
    if let Some(c) = body["content"].as_str() {
        p.content = c.to_owned();
        p.versions.push(c.to_owned());
    }
    p.allowed_mentions.push(allowed_mentions(body));
    Some(message_json(
        p.id,
        p.channel,
        &bot_user(),
        &p.content,
        vec![],
        vec![],
    ))
}

async fn edit_message(
    State(shared): State<Arc<Shared>>,
    Path((_channel, message)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if body["content"]
        .as_str()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    match shared.update(|s| apply_edit(s, message, &body)) {
        Some(m) => Json(m).into_response(),
        None => discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
    }
}

async fn channel_history(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
    let seen = shared.seen.lock().unwrap();
    let mut page: Vec<Value> = seen
        .history
        .get(&channel)
        .map(|h| {
            h.iter()
                .filter(|m| m["id"].as_str().and_then(|i| i.parse::<u64>().ok()) > Some(after))
                .take(limit)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Discord lists a page newest first.
    page.reverse();
    Json(Value::Array(page))
}

async fn typing(State(shared): State<Arc<Shared>>, Path(channel): Path<u64>) -> StatusCode {
    shared.update(|s| s.typing.push(channel));
    StatusCode::NO_CONTENT
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Path((id, _token)): Path<(u64, String)>,
    Json(body): Json<Value>,
) -> StatusCode {
    let kind = body["type"].as_u64().unwrap_or(0);
    shared.update(|s| s.callbacks.push((id, kind)));
    StatusCode::NO_CONTENT
}

fn interaction_channel(s: &Seen, token: &str) -> u64 {
    s.sessions
        .values()
        .flat_map(|x| x.log.iter())
        .find(|(_, kind, d)| kind == "INTERACTION_CREATE" && d["token"] == token)
        .and_then(|(_, _, d)| d["channel_id"].as_str().and_then(|c| c.parse().ok()))
        .unwrap_or(0)
}

async fn edit_original(
    State(shared): State<Arc<Shared>>,
    Path((_app, token)): Path<(u64, String)>,
    Json(body): Json<Value>,
) -> Response {
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    if content.chars().count() > 2000 {
        return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let m = shared.update(|s| {
        let existing = s
            .posted
            .iter()
            .position(|p| p.interaction.as_deref() == Some(&token));
        match existing {
            Some(i) => {
                let id = s.posted[i].id;
                apply_edit(s, id, &body).unwrap()
            }
            None => {
                let id = s.id();
                let channel = interaction_channel(s, &token);
                s.posted.push(Posted {
                    id,
                    channel,
                    content: content.clone(),
                    versions: vec![content.clone()],
                    allowed_mentions: vec![allowed_mentions(&body)],
                    reply_to: None,
                    interaction: Some(token.clone()),
                    auth: String::new(),
                });
                message_json(id, channel, &bot_user(), &content, vec![], vec![])
            }
        }
    });
    Json(m).into_response()
}

async fn followup(
    State(shared): State<Arc<Shared>>,
    Path((_app, token)): Path<(u64, String)>,
    Json(body): Json<Value>,
) -> Response {
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    if content.chars().count() > 2000 {
        return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let m = shared.update(|s| {
        let id = s.id();
        let channel = interaction_channel(s, &token);
        s.posted.push(Posted {
            id,
            channel,
            content: content.clone(),
            versions: vec![content.clone()],
            allowed_mentions: vec![allowed_mentions(&body)],
            reply_to: None,
            interaction: Some(token.clone()),
            auth: String::new(),
        });
        message_json(id, channel, &bot_user(), &content, vec![], vec![])
    });
    Json(m).into_response()
}

async fn edit_followup(
    State(shared): State<Arc<Shared>>,
    Path((_app, _token, message)): Path<(u64, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    match shared.update(|s| apply_edit(s, message, &body)) {
        Some(m) => Json(m).into_response(),
        None => discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
    }
}

async fn cdn_file(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.seen.lock().unwrap().files.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn create_thread(
    State(shared): State<Arc<Shared>>,
    Path((channel, message)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let created = shared.update(|s| {
        if s.no_threads.contains(&channel) {
            return None;
        }
        let id = s.id();
        let guild = s.channel_guild.get(&channel).copied().unwrap_or(0);
        s.channel_guild.insert(id, guild);
        s.threads.push((id, channel, message, name.clone()));
        Some(json!({
            "id": id.to_string(), "type": 11, "guild_id": guild.to_string(), "name": name,
            "parent_id": channel.to_string(), "owner_id": BOT_ID.to_string(),
            "permission_overwrites": [], "position": 0, "nsfw": false, "flags": 0,
            "available_tags": [], "applied_tags": [], "rate_limit_per_user": 0,
            "thread_metadata": {"archived": false, "auto_archive_duration": 1440,
                                "archive_timestamp": TIMESTAMP, "locked": false}
        }))
    });
    match created {
        Some(thread) => Json(thread).into_response(),
        None => discord_error(
            StatusCode::BAD_REQUEST,
            50024,
            "Cannot execute action on this channel type",
        ),
    }
}

/// Whether a message object (ids are strings on Discord's wire) has id `id`.
fn is_id(message: &Value, id: u64) -> bool {
    message["id"].as_str().and_then(|m| m.parse().ok()) == Some(id)
}
