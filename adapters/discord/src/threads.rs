//! Threads the bot opens for answers, remembered so a follow-up in the thread continues
//! the conversation of its parent channel.

use std::collections::HashMap;
use std::sync::Mutex;

use serenity::all::{AutoArchiveDuration, ChannelId, CreateThread, Http, Message};

/// Threads remembered at most; older ones then start fresh conversations.
const MAX_THREADS: usize = 10_000;

/// Thread → parent channel, for the threads the bot opened.
#[derive(Default)]
pub struct Threads(Mutex<HashMap<ChannelId, ChannelId>>);

impl Threads {
    /// The conversation's channel and thread: a thread the bot opened for an answer belongs
    /// to its parent channel's conversation.
    pub fn conversation(&self, channel: ChannelId) -> (ChannelId, Option<ChannelId>) {
        match self.0.lock().expect("not poisoned").get(&channel) {
            Some(parent) => (*parent, Some(channel)),
            None => (channel, None),
        }
    }

    fn remember(&self, thread: ChannelId, parent: ChannelId) {
        let mut threads = self.0.lock().expect("not poisoned");
        if threads.len() >= MAX_THREADS {
            threads.clear();
        }
        threads.insert(thread, parent);
    }

    /// Opens a thread on the question for its answer; None (answer in the channel) when
    /// Discord refuses, e.g. because the question already is in a thread.
    pub async fn open(&self, http: &Http, msg: &Message, question: &str) -> Option<ChannelId> {
        let thread = CreateThread::new(thread_name(question))
            .auto_archive_duration(AutoArchiveDuration::OneDay);
        match msg
            .channel_id
            .create_thread_from_message(http, msg.id, thread)
            .await
        {
            Ok(thread) => {
                self.remember(thread.id, msg.channel_id);
                Some(thread.id)
            }
            Err(e) => {
                tracing::debug!(channel = %msg.channel_id, error = %e, "no thread for the answer; replying in the channel");
                None
            }
        }
    }
}

/// A thread's name: the question's start (Discord allows 100 characters).
fn thread_name(question: &str) -> String {
    let name: String = question.chars().take(90).collect();
    if name.trim().is_empty() {
        "Question".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_belongs_to_its_parents_conversation() {
        let threads = Threads::default();
        let (parent, thread) = (ChannelId::new(1), ChannelId::new(2));
        assert_eq!(threads.conversation(thread), (thread, None));
        threads.remember(thread, parent);
        assert_eq!(threads.conversation(thread), (parent, Some(thread)));
        assert_eq!(threads.conversation(parent), (parent, None));
    }

    #[test]
    fn thread_names_are_short_and_never_empty() {
        assert_eq!(thread_name("  "), "Question");
        assert_eq!(thread_name(&"é".repeat(200)).chars().count(), 90);
    }
}
