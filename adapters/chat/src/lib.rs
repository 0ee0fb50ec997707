//! Platform-neutral chat types: what an adapter (Discord, Telegram, the terminal) hands the
//! core, and how the core talks back. Adapters translate; every decision lives in the core.

pub mod commands;
mod error;
mod inflight;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use commands::{CATALOGUE, CommandId, CommandSpec};
pub use error::{ChatError, ChatErrorKind};
pub use inflight::{InFlight, InFlightGuard};

/// Who wrote a message, as the platform reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// Stable platform user id.
    pub id: String,
    /// Display name, kept with every remembered turn.
    pub name: String,
    /// Role names (Discord roles; empty where the platform has none).
    pub roles: Vec<String>,
    /// The platform's own admin notion: Manage Server on Discord, chat admin on Telegram.
    /// Configured admins (`[bot] admin_roles`, `admin_user_ids`) are the core's decision.
    pub is_admin: bool,
}

/// Why the bot should (or should not) answer a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addressing {
    /// A direct message.
    pub direct: bool,
    /// The message mentions the bot (the adapter strips the mention from the text).
    pub mentioned: bool,
    /// The message replies to one of the bot's messages.
    pub reply_to_bot: bool,
    /// A slash command: its name (without `/`) and argument text.
    pub command: Option<SlashCommand>,
}

impl Addressing {
    /// True when the bot must answer: a DM, a mention, a reply to it, or a slash command.
    pub fn is_addressed(&self) -> bool {
        self.direct || self.mentioned || self.reply_to_bot || self.command.is_some()
    }
}

/// A platform slash command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    pub name: String,
    pub args: String,
}

/// What happened to a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A new message.
    #[default]
    Posted,
    /// An existing message's new text.
    Edited,
    /// A message was deleted (text and attachments are empty).
    Deleted,
}

/// Where a download's bytes go as they arrive (the core spools them to a temporary file
/// within its byte budget), so no attachment is ever held whole in memory.
#[async_trait]
pub trait ChunkSink: Send {
    /// Takes the next chunk; an error stops the download (the sink keeps its own reason).
    async fn write(&mut self, chunk: &[u8]) -> Result<(), ChatError>;
}

/// Downloads an attachment's bytes on demand, so only ingested files are fetched.
#[async_trait]
pub trait Download: Send + Sync {
    /// Writes the bytes into `sink` chunk by chunk, failing as soon as they would pass
    /// `max_bytes` (before writing the chunk that passes it); returns the bytes written.
    async fn download(&self, max_bytes: u64, sink: &mut dyn ChunkSink) -> Result<u64, ChatError>;
}

/// A sink that keeps the bytes in memory, for tests and tiny in-process attachments.
#[async_trait]
impl ChunkSink for Vec<u8> {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), ChatError> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// A file attached to a message.
#[derive(Clone)]
pub struct Attachment {
    pub name: String,
    pub size: u64,
    /// MIME type, when the platform gives one.
    pub content_type: Option<String>,
    pub handle: Arc<dyn Download>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// One incoming chat event, platform-neutral.
#[derive(Debug, Clone, Default)]
pub struct IncomingEvent {
    /// "discord", "telegram", "terminal", ...: namespaces every key.
    pub platform: String,
    /// Discord guild, Telegram chat, or the user's id for a DM.
    pub tenant: String,
    pub channel: String,
    /// Thread (or forum topic) inside the channel.
    pub thread: Option<String>,
    pub message_id: String,
    pub kind: EventKind,
    pub author: Author,
    /// The text, with any mention of the bot removed.
    pub text: String,
    pub attachments: Vec<Attachment>,
    pub addressing: Addressing,
    /// A link back to the message, when the platform has one.
    pub permalink: Option<String>,
    /// When it was posted (RFC 3339), for citations of knowledge posts.
    pub timestamp: Option<String>,
}

/// A message the bot sent, which it may edit in place while an answer streams.
#[async_trait]
pub trait MessageHandle: Send + Sync {
    /// Replaces the message's text.
    async fn edit(&self, text: &str) -> Result<(), ChatError>;
}

/// One page of a channel's history, oldest first, and the cursor of the next page.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub events: Vec<IncomingEvent>,
    /// None when the history is exhausted.
    pub next: Option<String>,
}

/// Reads a channel's past messages, for the backfill of a new knowledge channel.
#[async_trait]
pub trait ChannelHistory: Send + Sync {
    /// The page after `cursor` (None = the oldest messages).
    async fn page(&self, cursor: Option<&str>) -> Result<HistoryPage, ChatError>;
}

/// Where replies to one event go; adapters implement it over their platform API.
#[async_trait]
pub trait ReplySink: Send + Sync {
    /// The platform's message length limit in characters (2000 on Discord, 4096 on Telegram).
    fn max_message_chars(&self) -> usize;
    /// False where messages cannot be edited (a terminal): only final text is sent.
    fn supports_edits(&self) -> bool {
        true
    }
    /// Sends a new message in the event's channel (and thread).
    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError>;
    /// The channel's history, where the adapter can read it.
    fn history(&self) -> Option<Arc<dyn ChannelHistory>> {
        None
    }
}

/// Resolves when an event has been handled (answered, refused or ignored).
pub type Handled = tokio::sync::oneshot::Receiver<()>;

/// The core, as adapters see it.
pub trait ChatHandler: Send + Sync {
    /// Queues an event; events of one channel are handled in the order they are submitted,
    /// so adapters call this from their event loop without awaiting.
    fn submit(&self, event: IncomingEvent, sink: Arc<dyn ReplySink>) -> Handled;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dms_mentions_replies_and_commands_are_addressed() {
        assert!(!Addressing::default().is_addressed());
        let dm = Addressing {
            direct: true,
            ..Default::default()
        };
        assert!(dm.is_addressed());
        let cmd = Addressing {
            command: Some(SlashCommand {
                name: "help".into(),
                args: String::new(),
            }),
            ..Default::default()
        };
        assert!(cmd.is_addressed());
    }
}
