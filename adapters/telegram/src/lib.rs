//! lore's Telegram adapter: teloxide updates in, `lore-chat` events to the core, replies out.
//! It only translates; every decision lives in the core behind [`lore_chat::ChatHandler`].
//!
//! [`run`] long-polls `getUpdates` itself (so shutdown is one `select!` and the last offset is
//! confirmed before returning), translates messages, channel posts and their edits
//! ([`update`]), and hands each to the core with a [`sink::TelegramSink`] for the replies.

mod admins;
mod failure;
pub mod files;
pub mod html;
mod redact;
pub mod sink;
pub mod update;
mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lore_chat::{ChatHandler, EventKind};
use serde::Deserialize;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, BotCommand, UpdateKind};
use teloxide::{ApiError, RequestError};
use tokio::task::JoinSet;

use admins::Admins;
use files::TelegramFile;
use redact::Redactor;
use sink::{Outbox, TelegramSink};
use update::{Identity, translate};

/// `[telegram]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Bot API base URL (teloxide's `set_api_url`); tests point it at 127.0.0.1.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Deprecated alias of `[bot] admin_user_ids` (as "telegram:ID"); the application folds
    /// it in at start-up, so the adapter itself leaves admin decisions to the bot core.
    pub admin_user_ids: Vec<i64>,
    /// Least time between two edits of the bot's messages in one chat.
    pub edit_interval_ms: u64,
    /// How long one `getUpdates` long poll waits for news.
    pub poll_timeout_secs: u32,
    /// How long a `getChatMember` answer (admin or not) is trusted.
    pub admin_cache_secs: u64,
    /// A 429 asking to wait longer than this fails the request instead of waiting.
    pub max_retry_after_secs: u64,
    /// Public HTTPS URL Telegram posts updates to; unset = long polling.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Address the webhook listener binds (behind the TLS proxy that serves `webhook_url`).
    #[serde(default)]
    pub webhook_listen: Option<String>,
}

impl TelegramSettings {
    /// Range checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.poll_timeout_secs == 0 || self.poll_timeout_secs > 50 {
            return Err((
                "telegram.poll_timeout_secs".into(),
                "must be between 1 and 50".into(),
            ));
        }
        if let Some(url) = &self.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(("telegram.api_url".into(), "must be an http(s) URL".into()));
        }
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err((
                    "telegram.webhook_url".into(),
                    "must be an http(s) URL (Telegram itself requires https)".into(),
                ));
            }
            let listen_ok = self
                .webhook_listen
                .as_deref()
                .is_some_and(|l| l.parse::<std::net::SocketAddr>().is_ok());
            if !listen_ok {
                return Err((
                    "telegram.webhook_listen".into(),
                    "must be an address such as 127.0.0.1:8443 when webhook_url is set".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The updates lore asks Telegram for.
const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::ChannelPost,
    AllowedUpdate::EditedChannelPost,
];

/// Why the Telegram surface could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TelegramError(pub(crate) String);

/// Longest pause between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often "typing…" is renewed while an answer is being prepared.
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Connects with `token`, registers the commands and long-polls (or, with `webhook_url`,
/// takes webhook deliveries) until `shutdown` resolves; then waits for the replies under way.
pub async fn run(
    settings: TelegramSettings,
    token: String,
    handler: Arc<dyn ChatHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TelegramError> {
    let redactor = Redactor::new(&token);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        TelegramError(format!("{what}: {}", redactor.clean(e)))
    };
    let token = token.trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(TelegramError(
            "TELEGRAM_BOT_TOKEN is empty or malformed".into(),
        ));
    }
    // teloxide's client times out after 17 s, shorter than a long poll: give it room.
    let client = teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(
            u64::from(settings.poll_timeout_secs) + 30,
        ))
        .build()
        .map_err(|e| fail("building the HTTP client", &e))?;
    let mut bot = Bot::with_client(token.clone(), client);
    if let Some(url) = &settings.api_url {
        let url = url.trim_end_matches('/');
        bot = bot.set_api_url(
            url.parse()
                .map_err(|e| fail("telegram.api_url is not a URL", &e))?,
        );
    }
    let me = bot
        .get_me()
        .await
        .map_err(|e| fail("Telegram refused the bot token (getMe)", &e))?;
    let me = Identity {
        id: me.user.id,
        username: me.user.username.clone().unwrap_or_default(),
    };
    tracing::info!(bot = %me.username, "connected to Telegram");
    let commands = update::menu()
        .into_iter()
        .map(|(name, about)| BotCommand::new(name, about));
    if let Err(e) = bot.set_my_commands(commands).await {
        tracing::warn!(error = %redactor.clean(&e), "setMyCommands failed; commands still work");
    }
    let router = Router {
        files: TelegramFile {
            bot: bot.clone(),
            redactor: redactor.clone(),
        },
        outbox: Arc::new(Outbox::new(
            bot.clone(),
            redactor.clone(),
            Duration::from_millis(settings.edit_interval_ms),
            Duration::from_secs(settings.max_retry_after_secs),
        )),
        admins: Admins::new(
            bot.clone(),
            redactor.clone(),
            Duration::from_secs(settings.admin_cache_secs),
        ),
        handler,
        me,
    };
    let mut inflight = match &settings.webhook_url {
        Some(url) => webhook::serve(&bot, &settings, url, &router, shutdown).await?,
        None => {
            prepare_polling(&bot, &redactor).await;
            let (offset, inflight) = poll(&bot, &settings, &router, &redactor, shutdown).await;
            // Confirms what was handled, so a restart does not see it again.
            let confirm = bot.get_updates().offset(offset).limit(1).timeout(0);
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), confirm.send()).await {
                tracing::warn!(error = %e, "could not confirm the last updates");
            }
            inflight
        }
    };
    // The core finishes (or the caller's grace period abandons) the replies under way.
    while inflight.join_next().await.is_some() {}
    tracing::info!("Telegram stopped");
    Ok(())
}

/// Long polling and a webhook exclude each other: a webhook left set is removed.
async fn prepare_polling(bot: &Bot, redactor: &Redactor) {
    match bot.get_webhook_info().await {
        Ok(info) if info.url.is_none() => {}
        Ok(_) => {
            tracing::info!("removing the webhook to use long polling");
            if let Err(e) = bot.delete_webhook().await {
                tracing::warn!(error = %redactor.clean(&e), "deleteWebhook failed");
            }
        }
        Err(e) => tracing::warn!(error = %redactor.clean(&e), "getWebhookInfo failed"),
    }
}

/// The polling loop; returns the offset after the last update handled and the events
/// still being handled.
async fn poll(
    bot: &Bot,
    settings: &TelegramSettings,
    router: &Router,
    redactor: &Redactor,
    shutdown: impl Future<Output = ()>,
) -> (i32, JoinSet<()>) {
    tokio::pin!(shutdown);
    let mut offset = 0;
    let mut backoff = Duration::from_secs(1);
    let mut inflight = JoinSet::new();
    loop {
        let request = bot
            .get_updates()
            .offset(offset)
            .timeout(settings.poll_timeout_secs)
            .allowed_updates(ALLOWED_UPDATES)
            .send();
        let result = tokio::select! {
            () = &mut shutdown => break,
            result = request => result,
        };
        let pause = match result {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                for update in updates {
                    offset = offset.max(update.id.as_offset());
                    router.dispatch(update, &mut inflight).await;
                }
                while inflight.try_join_next().is_some() {}
                continue;
            }
            Err(RequestError::RetryAfter(after)) => after.duration(),
            Err(e) => {
                let level_error = matches!(
                    e,
                    RequestError::Api(
                        ApiError::InvalidToken | ApiError::TerminatedByOtherGetUpdates
                    )
                );
                if level_error {
                    tracing::error!(error = %redactor.clean(&e), "getUpdates failed");
                } else {
                    tracing::warn!(error = %redactor.clean(&e), "getUpdates failed; retrying");
                }
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    (offset, inflight)
}

/// Turns updates into core events and keeps track of the ones being handled.
pub(crate) struct Router {
    files: TelegramFile,
    pub(crate) outbox: Arc<Outbox>,
    admins: Admins,
    handler: Arc<dyn ChatHandler>,
    me: Identity,
}

impl Router {
    pub(crate) async fn dispatch(&self, update: Update, inflight: &mut JoinSet<()>) {
        let Some(mut t) = translate(&update, &self.me, &self.files) else {
            if let UpdateKind::Error(_) = update.kind {
                tracing::warn!(update = update.id.0, "unreadable update skipped");
            }
            return;
        };
        let chat = t.chat.id.0;
        let event = &mut t.event;
        // Admin rights only matter for commands; other messages cost no getChatMember.
        let wants_rights = event.addressing.command.is_some() || event.text.starts_with('/');
        if let Some(user) = t.check_admin
            && wants_rights
            && !event.author.is_admin
        {
            event.author.is_admin = self.admins.is_admin(chat, user).await;
        }
        let addressed = event.addressing.is_addressed() && event.kind == EventKind::Posted;
        let reply_to = (!t.chat.is_private()).then_some(t.message);
        let sink = Arc::new(TelegramSink::new(
            self.outbox.clone(),
            chat,
            t.topic,
            reply_to,
        ));
        let handled = self.handler.submit(t.event, sink);
        let outbox = self.outbox.clone();
        let topic = t.topic;
        inflight.spawn(async move {
            if addressed {
                let typing = async {
                    loop {
                        outbox.typing(chat, topic).await;
                        tokio::time::sleep(TYPING_EVERY).await;
                    }
                };
                tokio::select! {
                    _ = handled => {}
                    () = typing => {}
                }
            } else {
                let _ = handled.await;
            }
        });
    }
}
