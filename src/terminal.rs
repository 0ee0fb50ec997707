//! The terminal as a third chat platform, for `lore chat`: one local operator, replies
//! printed whole (a terminal cannot edit a printed line).

use std::io::Write;

use async_trait::async_trait;
use lore_chat::{Addressing, Author, ChatError, IncomingEvent, MessageHandle, ReplySink};

/// Platform name of terminal conversations (their memory keys start with it).
pub const PLATFORM: &str = "terminal";

/// Prints replies to stdout, each followed by a blank line.
pub struct TerminalSink;

struct Printed;

fn print(text: &str) -> Result<(), ChatError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}\n")
        .and_then(|()| out.flush())
        .map_err(|e| ChatError::other(e.to_string()))
}

#[async_trait]
impl MessageHandle for Printed {
    async fn edit(&self, text: &str) -> Result<(), ChatError> {
        print(text)
    }
}

#[async_trait]
impl ReplySink for TerminalSink {
    fn max_message_chars(&self) -> usize {
        // A terminal has no message limit; this only keeps the splitter's arithmetic finite.
        1 << 20
    }

    fn supports_edits(&self) -> bool {
        false
    }

    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        print(text)?;
        Ok(Box::new(Printed))
    }
}

/// A line typed by the operator in conversation `conversation` of `tenant`; the operator
/// owns the store, so they are an admin.
pub fn event(tenant: &str, conversation: &str, seq: u64, text: &str) -> IncomingEvent {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
    IncomingEvent {
        platform: PLATFORM.to_owned(),
        tenant: tenant.to_owned(),
        channel: conversation.to_owned(),
        message_id: format!("{}-{seq}", lore_core::bot::memory::unix_now()),
        author: Author {
            id: user.clone(),
            name: user,
            roles: Vec::new(),
            is_admin: true,
        },
        text: text.to_owned(),
        addressing: Addressing {
            mentioned: true,
            ..Addressing::default()
        },
        ..IncomingEvent::default()
    }
}
