//! Replies: the core's text rendered as Telegram HTML, sent and edited in place. Edits of a
//! chat are paced (at most one per `edit_interval`), a 429 makes the chat wait its
//! `retry_after` and slows its edits down, and HTML that Telegram refuses is resent as the
//! plain text it would have shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lore_chat::{ChatError, MessageHandle, ReplySink};
use teloxide::prelude::*;
use teloxide::types::{
    ChatAction, LinkPreviewOptions, MessageId, ParseMode, ReplyParameters, ThreadId,
};
use teloxide::{ApiError, RequestError};
use tokio::time::Instant;

use crate::failure;
use crate::html::{self, Part};
use crate::redact::Redactor;

/// Telegram's message limit, in visible UTF-16 units after entity parsing.
pub const MESSAGE_LIMIT: usize = 4096;
/// 429s in a row after which a request is given up.
const MAX_RETRIES: u32 = 5;
/// How far repeated 429s may stretch a chat's edit interval, as a multiple of the base.
const MAX_SLOWDOWN: u32 = 16;

/// Per chat: when the next edit may go, at what interval, and until when Telegram asked
/// us to stay quiet.
struct Pace {
    next_edit: Instant,
    interval: Duration,
    quiet_until: Instant,
}

/// Everything that talks to one bot's chats, shared by all replies.
pub struct Outbox {
    pub bot: Bot,
    pub redactor: Redactor,
    edit_interval: Duration,
    max_retry_after: Duration,
    chats: Mutex<HashMap<i64, Pace>>,
}

impl Outbox {
    pub fn new(
        bot: Bot,
        redactor: Redactor,
        edit_interval: Duration,
        max_retry_after: Duration,
    ) -> Self {
        Self {
            bot,
            redactor,
            edit_interval,
            max_retry_after,
            chats: Mutex::new(HashMap::new()),
        }
    }

    fn with_pace<R>(&self, chat: i64, f: impl FnOnce(&mut Pace) -> R) -> R {
        let mut chats = self.chats.lock().expect("not poisoned");
        let now = Instant::now();
        let pace = chats.entry(chat).or_insert(Pace {
            next_edit: now,
            interval: self.edit_interval,
            quiet_until: now,
        });
        f(pace)
    }

    /// Runs a request for `chat`, waiting out any `retry_after` Telegram gave the chat.
    async fn request<T, F, Fut>(&self, chat: i64, mut call: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut attempts = 0;
        loop {
            let quiet_until = self.with_pace(chat, |p| p.quiet_until);
            tokio::time::sleep_until(quiet_until).await;
            match call().await {
                Err(RequestError::RetryAfter(after)) => {
                    let wait = after.duration();
                    attempts += 1;
                    if attempts > MAX_RETRIES || wait > self.max_retry_after {
                        return Err(RequestError::RetryAfter(after));
                    }
                    tracing::info!(
                        chat,
                        seconds = wait.as_secs(),
                        "Telegram asked to slow down"
                    );
                    let base = self.edit_interval;
                    self.with_pace(chat, |p| {
                        p.quiet_until = p.quiet_until.max(Instant::now() + wait);
                        p.interval = (p.interval * 2).clamp(base, base * MAX_SLOWDOWN);
                        p.next_edit = p.next_edit.max(p.quiet_until);
                    });
                }
                other => return other,
            }
        }
    }

    /// Waits for the chat's next edit slot and reserves it.
    async fn edit_slot(&self, chat: i64) {
        let at = self.with_pace(chat, |p| {
            let at = p.next_edit.max(p.quiet_until).max(Instant::now());
            p.next_edit = at + p.interval;
            at
        });
        tokio::time::sleep_until(at).await;
    }

    /// After an edit was answered, the next one waits a full interval from now (so
    /// Telegram sees them apart however long this one took), and a slowed-down chat drifts
    /// back to the base interval.
    fn edit_done(&self, chat: i64, ok: bool) {
        let base = self.edit_interval;
        self.with_pace(chat, |p| {
            if ok {
                p.interval = (p.interval.mul_f64(0.9)).max(base);
            }
            p.next_edit = p.next_edit.max(Instant::now() + p.interval);
        });
    }

    fn error(&self, e: &RequestError) -> ChatError {
        failure::chat_error(e, &self.redactor)
    }

    /// Sends one part: HTML first, the plain text if Telegram cannot parse the HTML.
    async fn send_part(&self, to: &Target, part: &Part) -> Result<MessageId, ChatError> {
        let html = self
            .request(to.chat, || to.send(&self.bot, &part.html, true))
            .await;
        let plain = match html {
            Ok(m) => return Ok(m.id),
            Err(RequestError::Api(ApiError::CantParseEntities(reason))) => {
                tracing::warn!(chat = to.chat, %reason, "HTML refused; resending as plain text");
                self.request(to.chat, || to.send(&self.bot, &part.plain, false))
                    .await
            }
            Err(e) => Err(e),
        };
        plain.map(|m| m.id).map_err(|e| self.error(&e))
    }

    /// Replaces one message's text, paced; same plain-text fallback as `send_part`.
    async fn edit_part(&self, chat: i64, id: MessageId, part: &Part) -> Result<(), ChatError> {
        self.edit_slot(chat).await;
        let edit = |text: &str, as_html: bool| {
            let req = self
                .bot
                .edit_message_text(ChatId(chat), id, text)
                .link_preview_options(no_preview());
            let req = if as_html {
                req.parse_mode(ParseMode::Html)
            } else {
                req
            };
            req.send()
        };
        let mut result = self.request(chat, || edit(&part.html, true)).await;
        if let Err(RequestError::Api(ApiError::CantParseEntities(reason))) = &result {
            tracing::warn!(chat, %reason, "HTML refused; editing as plain text");
            result = self.request(chat, || edit(&part.plain, false)).await;
        }
        match result {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                self.edit_done(chat, true);
                Ok(())
            }
            Err(e) => {
                self.edit_done(chat, false);
                Err(self.error(&e))
            }
        }
    }

    /// Shows "typing…" in the chat (it lasts about five seconds).
    pub async fn typing(&self, chat: i64, topic: Option<ThreadId>) {
        let mut req = self.bot.send_chat_action(ChatId(chat), ChatAction::Typing);
        if let Some(t) = topic {
            req = req.message_thread_id(t);
        }
        if let Err(e) = req.send().await {
            tracing::debug!(chat, error = %self.redactor.clean(&e), "typing indicator failed");
        }
    }
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// Where replies to one message go.
#[derive(Clone)]
struct Target {
    chat: i64,
    topic: Option<ThreadId>,
    /// In groups, replies quote the question so the thread stays readable.
    reply_to: Option<MessageId>,
}

impl Target {
    fn send(
        &self,
        bot: &Bot,
        text: &str,
        as_html: bool,
    ) -> impl Future<Output = Result<teloxide::types::Message, RequestError>> + use<> {
        let mut req = bot
            .send_message(ChatId(self.chat), text)
            .link_preview_options(no_preview());
        if as_html {
            req = req.parse_mode(ParseMode::Html);
        }
        if let Some(t) = self.topic {
            req = req.message_thread_id(t);
        }
        if let Some(m) = self.reply_to {
            req = req.reply_parameters(ReplyParameters::new(m).allow_sending_without_reply());
        }
        req.send()
    }
}

/// The replies to one incoming message.
pub struct TelegramSink {
    outbox: Arc<Outbox>,
    target: Target,
}

impl TelegramSink {
    pub fn new(
        outbox: Arc<Outbox>,
        chat: i64,
        topic: Option<ThreadId>,
        reply_to: Option<MessageId>,
    ) -> Self {
        Self {
            outbox,
            target: Target {
                chat,
                topic,
                reply_to,
            },
        }
    }
}

fn render(text: &str) -> Result<Vec<Part>, ChatError> {
    let parts = html::render(text, MESSAGE_LIMIT);
    if parts.is_empty() {
        return Err(ChatError::other("nothing to send: the text is empty"));
    }
    Ok(parts)
}

#[async_trait]
impl ReplySink for TelegramSink {
    fn max_message_chars(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        let mut shown = Vec::new();
        for part in render(text)? {
            let id = self.outbox.send_part(&self.target, &part).await?;
            shown.push((id, part.html));
        }
        Ok(Box::new(TelegramMessage {
            outbox: self.outbox.clone(),
            target: self.target.clone(),
            shown: tokio::sync::Mutex::new(shown),
        }))
    }
}

/// A reply on screen. Its text is usually one Telegram message; text that renders longer
/// than one message continues in further messages, which later edits keep in step.
struct TelegramMessage {
    outbox: Arc<Outbox>,
    target: Target,
    /// The messages showing this reply, with the HTML each shows.
    shown: tokio::sync::Mutex<Vec<(MessageId, String)>>,
}

#[async_trait]
impl MessageHandle for TelegramMessage {
    async fn edit(&self, text: &str) -> Result<(), ChatError> {
        let parts = render(text)?;
        let mut shown = self.shown.lock().await;
        for (i, part) in parts.iter().enumerate() {
            match shown.get_mut(i) {
                Some((_, html)) if *html == part.html => {}
                Some((id, html)) => {
                    self.outbox.edit_part(self.target.chat, *id, part).await?;
                    html.clone_from(&part.html);
                }
                None => {
                    let id = self.outbox.send_part(&self.target, part).await?;
                    shown.push((id, part.html.clone()));
                }
            }
        }
        for (id, _) in shown.drain(parts.len()..) {
            let deleted = self
                .outbox
                .request(self.target.chat, || {
                    self.outbox
                        .bot
                        .delete_message(ChatId(self.target.chat), id)
                        .send()
                })
                .await;
            if let Err(e) = deleted {
                tracing::debug!(error = %self.outbox.redactor.clean(&e), "stale part not deleted");
            }
        }
        Ok(())
    }
}
