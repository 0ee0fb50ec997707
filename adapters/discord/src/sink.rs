//! The core's replies, as Discord messages: channel messages (replies to the asker),
//! interaction responses and follow-ups, in-place edits, channel history and attachment
//! downloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use lore_chat::{
    ChannelHistory, ChatError, ChunkSink, Download, HistoryPage, MessageHandle, ReplySink,
};
use serenity::all::{
    ChannelId, CommandInteraction, CreateAllowedMentions, CreateInteractionResponseFollowup,
    CreateMessage, EditInteractionResponse, EditMessage, GetMessages, Http, MessageId,
    MessageReference,
};

/// Discord's message length limit, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Messages the bot sends mention nobody: no `@everyone`, no roles, no users, and a reply
/// does not ping the person replied to.
pub fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().replied_user(false)
}

/// The HTTP status and Discord error code of a failed request, for log lines.
fn rejection(e: &serenity::Error) -> Option<(u16, isize)> {
    match e {
        serenity::Error::Http(serenity::all::HttpError::UnsuccessfulRequest(r)) => {
            Some((r.status_code.as_u16(), r.error.code))
        }
        _ => None,
    }
}

/// Tries a request up to this many times while it is rate limited (429).
const RATE_LIMITED_TRIES: u32 = 5;

/// Runs `call`, retrying after a growing pause while Discord answers 429. Behind a proxy
/// serenity's own rate limiter is off, so a 429 from the proxy arrives here; without a proxy
/// serenity has already waited and retried by Discord's headers.
async fn patiently<T, F, Fut>(mut call: F) -> serenity::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = serenity::Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(500);
    let mut tries = 1;
    loop {
        match call().await {
            Err(e)
                if tries < RATE_LIMITED_TRIES
                    && rejection(&e).is_some_and(|(status, _)| status == 429) =>
            {
                tracing::debug!(seconds = pause.as_secs_f32(), "Discord rate limit; waiting");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// The failure as the core sees it: its kind from the HTTP status, or transient when the
/// request never got an answer.
pub(crate) fn chat_error(e: serenity::Error) -> ChatError {
    match rejection(&e) {
        Some((status, code)) => rejected(status, code),
        None => match &e {
            serenity::Error::Http(serenity::all::HttpError::Request(_))
            | serenity::Error::Io(_) => ChatError::transient(e.to_string()),
            _ => ChatError::other(e.to_string()),
        },
    }
}

/// A request Discord answered with an error status.
fn rejected(status: u16, code: isize) -> ChatError {
    // Discord's 429 body names the wait, but serenity keeps only code and message.
    ChatError::from_http_status(
        status,
        None,
        format!("Discord answered {status} (code {code})"),
    )
}

/// Replies in a channel: the first message answers the asker's message as a reply.
pub struct ChannelSink {
    pub http: Arc<Http>,
    pub channel: ChannelId,
    /// The message being answered; only the first part refers to it.
    pub reply_to: Option<MessageId>,
    pub replied: AtomicBool,
    pub history: Arc<dyn ChannelHistory>,
}

impl ChannelSink {
    pub fn new(
        http: Arc<Http>,
        channel: ChannelId,
        reply_to: Option<MessageId>,
        history: Arc<dyn ChannelHistory>,
    ) -> Self {
        Self {
            http,
            channel,
            reply_to,
            replied: AtomicBool::new(false),
            history,
        }
    }

    async fn post(&self, text: &str, reply: Option<MessageId>) -> serenity::Result<MessageId> {
        let mut message = CreateMessage::new()
            .content(text)
            .allowed_mentions(no_mentions());
        if let Some(id) = reply {
            message = message.reference_message(MessageReference::from((self.channel, id)));
        }
        let sent = patiently(|| self.channel.send_message(&self.http, message.clone())).await?;
        Ok(sent.id)
    }
}

#[async_trait]
impl ReplySink for ChannelSink {
    fn max_message_chars(&self) -> usize {
        MAX_MESSAGE_CHARS
    }

    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        let reply = self
            .reply_to
            .filter(|_| !self.replied.swap(true, Ordering::Relaxed));
        let sent = match self.post(text, reply).await {
            // A reply to a message that is gone (or any other refused form) is retried as a
            // plain message, so the asker still gets the answer.
            Err(e) if reply.is_some() && rejection(&e).is_some_and(|(s, _)| s == 400) => {
                let (status, code) = rejection(&e).unwrap_or_default();
                tracing::warn!(channel = %self.channel, status, code, "Discord refused the reply; sending it as a plain message");
                self.post(text, None).await
            }
            other => other,
        };
        match sent {
            Ok(id) => Ok(Box::new(ChannelMessage {
                http: self.http.clone(),
                channel: self.channel,
                id,
            })),
            Err(e) => {
                let (status, code) = rejection(&e).unwrap_or_default();
                tracing::warn!(channel = %self.channel, status, code, error = %e, "Discord refused a message");
                Err(chat_error(e))
            }
        }
    }

    fn history(&self) -> Option<Arc<dyn ChannelHistory>> {
        Some(self.history.clone())
    }
}

/// A message the bot posted in a channel.
struct ChannelMessage {
    http: Arc<Http>,
    channel: ChannelId,
    id: MessageId,
}

#[async_trait]
impl MessageHandle for ChannelMessage {
    async fn edit(&self, text: &str) -> Result<(), ChatError> {
        let edit = EditMessage::new()
            .content(text)
            .allowed_mentions(no_mentions());
        patiently(|| self.channel.edit_message(&self.http, self.id, edit.clone()))
            .await
            .map(drop)
            .map_err(|e| {
                let (status, code) = rejection(&e).unwrap_or_default();
                tracing::warn!(channel = %self.channel, status, code, "Discord refused an edit");
                chat_error(e)
            })
    }
}

/// Replies to a slash command: the first message completes the deferred response, the rest
/// are follow-ups.
pub struct InteractionSink {
    pub http: Arc<Http>,
    pub interaction: Arc<CommandInteraction>,
    pub sent: AtomicUsize,
    pub history: Arc<dyn ChannelHistory>,
}

#[async_trait]
impl ReplySink for InteractionSink {
    fn max_message_chars(&self) -> usize {
        MAX_MESSAGE_CHARS
    }

    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        let first = self.sent.fetch_add(1, Ordering::Relaxed) == 0;
        let channel = self.interaction.channel_id;
        let result = if first {
            let edit = EditInteractionResponse::new()
                .content(text)
                .allowed_mentions(no_mentions());
            patiently(|| self.interaction.edit_response(&self.http, edit.clone()))
                .await
                .map(|_| None)
        } else {
            let followup = CreateInteractionResponseFollowup::new()
                .content(text)
                .allowed_mentions(no_mentions());
            patiently(|| {
                self.interaction
                    .create_followup(&self.http, followup.clone())
            })
            .await
            .map(|m| Some(m.id))
        };
        match result {
            Ok(followup) => Ok(Box::new(InteractionMessage {
                http: self.http.clone(),
                interaction: self.interaction.clone(),
                followup,
            })),
            Err(e) => {
                let (status, code) = rejection(&e).unwrap_or_default();
                tracing::warn!(%channel, status, code, error = %e, "Discord refused an interaction reply");
                Err(chat_error(e))
            }
        }
    }

    fn history(&self) -> Option<Arc<dyn ChannelHistory>> {
        Some(self.history.clone())
    }
}

/// The original response (None) or a follow-up of an interaction.
struct InteractionMessage {
    http: Arc<Http>,
    interaction: Arc<CommandInteraction>,
    followup: Option<MessageId>,
}

#[async_trait]
impl MessageHandle for InteractionMessage {
    async fn edit(&self, text: &str) -> Result<(), ChatError> {
        let result = match self.followup {
            None => {
                let edit = EditInteractionResponse::new()
                    .content(text)
                    .allowed_mentions(no_mentions());
                patiently(|| self.interaction.edit_response(&self.http, edit.clone())).await
            }
            Some(id) => {
                let edit = CreateInteractionResponseFollowup::new()
                    .content(text)
                    .allowed_mentions(no_mentions());
                patiently(|| self.interaction.edit_followup(&self.http, id, edit.clone())).await
            }
        };
        result.map(drop).map_err(chat_error)
    }
}

/// Turns a page of Discord messages into core events (the events module knows how).
pub type MessageMapper =
    Arc<dyn Fn(&serenity::all::Message) -> Option<lore_chat::IncomingEvent> + Send + Sync>;

/// A channel's past messages, oldest first, 100 per request.
pub struct History {
    pub http: Arc<Http>,
    pub channel: ChannelId,
    pub map: MessageMapper,
}

/// Messages per history request (Discord's maximum).
const PAGE: u8 = 100;

#[async_trait]
impl ChannelHistory for History {
    async fn page(&self, cursor: Option<&str>) -> Result<HistoryPage, ChatError> {
        let after = match cursor {
            Some(c) => c
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| ChatError::other(format!("bad history cursor {c:?}")))?,
            // Snowflakes start above 1, so "after 1" is the channel's first message.
            None => 1,
        };
        let request = GetMessages::new().after(MessageId::new(after)).limit(PAGE);
        let mut messages = patiently(|| self.channel.messages(&self.http, request))
            .await
            .map_err(|e| {
                let (status, code) = rejection(&e).unwrap_or_default();
                tracing::warn!(channel = %self.channel, status, code, "Discord refused the channel history");
                chat_error(e)
            })?;
        // Discord returns a page newest first.
        messages.sort_by_key(|m| m.id);
        let next = (messages.len() >= usize::from(PAGE))
            .then(|| messages.last().map(|m| m.id.get().to_string()))
            .flatten();
        let events = messages.iter().filter_map(|m| (self.map)(m)).collect();
        Ok(HistoryPage { events, next })
    }
}

/// A failed download: the CDN's status decides the kind; no status means the network failed.
fn download_error(name: &str, e: &reqwest::Error) -> ChatError {
    let message = format!("downloading {name}: {e}");
    match e.status() {
        Some(status) => ChatError::from_http_status(status.as_u16(), None, message),
        None => ChatError::transient(message),
    }
}

/// An attachment on Discord's CDN, fetched only when the core ingests it.
pub struct CdnFile {
    pub client: reqwest::Client,
    pub url: String,
    pub name: String,
    pub size: u64,
}

#[async_trait]
impl Download for CdnFile {
    async fn download(&self, max_bytes: u64, sink: &mut dyn ChunkSink) -> Result<u64, ChatError> {
        let too_large = || {
            ChatError::other(format!(
                "{} is larger than the {} byte limit",
                self.name, max_bytes
            ))
        };
        // Discord states the size up front: refuse before fetching anything.
        if self.size > max_bytes {
            return Err(too_large());
        }
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| download_error(&self.name, &e))?;
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        // Chunk by chunk into the core's sink: nothing here holds the file.
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| download_error(&self.name, &e))?
        {
            if written + chunk.len() as u64 > max_bytes {
                return Err(too_large());
            }
            sink.write(&chunk).await?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use lore_chat::ChatErrorKind;

    use super::*;

    #[test]
    fn failures_carry_their_kind() {
        assert_eq!(
            rejected(429, 20028).kind,
            ChatErrorKind::RateLimited { retry_after: None }
        );
        assert_eq!(rejected(403, 50013).kind, ChatErrorKind::Forbidden);
        assert_eq!(rejected(404, 10008).kind, ChatErrorKind::NotFound);
        assert_eq!(rejected(502, 0).kind, ChatErrorKind::Transient);
        assert_eq!(rejected(400, 50035).kind, ChatErrorKind::Other);
        assert_eq!(
            rejected(403, 50013).to_string(),
            "Discord answered 403 (code 50013)"
        );
        let io = serenity::Error::Io(std::io::Error::other("connection reset"));
        assert_eq!(chat_error(io).kind, ChatErrorKind::Transient);
        let other = serenity::Error::Other("unexpected");
        assert_eq!(chat_error(other).kind, ChatErrorKind::Other);
    }
}
