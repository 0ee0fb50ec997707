//! Who is a chat administrator (Telegram's own notion, reported to the core), asked with `getChatMember` and remembered briefly, so a
//! burst of commands costs one request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use teloxide::prelude::*;
use tokio::time::Instant;

use crate::redact::Redactor;

pub struct Admins {
    bot: Bot,
    redactor: Redactor,
    ttl: Duration,
    cache: Mutex<HashMap<(i64, u64), (bool, Instant)>>,
}

impl Admins {
    pub fn new(bot: Bot, redactor: Redactor, ttl: Duration) -> Self {
        Self {
            bot,
            redactor,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// True for an owner or administrator of the chat (configured admins are the core's
    /// decision). A failed check counts as "not an admin" (and is not cached).
    pub async fn is_admin(&self, chat: i64, user: UserId) -> bool {
        let key = (chat, user.0);
        if let Some((admin, at)) = self.cache.lock().expect("not poisoned").get(&key)
            && at.elapsed() < self.ttl
        {
            return *admin;
        }
        match self.bot.get_chat_member(ChatId(chat), user).await {
            Ok(member) => {
                let admin = member.is_privileged();
                let mut cache = self.cache.lock().expect("not poisoned");
                cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
                cache.insert(key, (admin, Instant::now()));
                admin
            }
            Err(e) => {
                tracing::warn!(chat, error = %self.redactor.clean(&e), "getChatMember failed; not an admin");
                false
            }
        }
    }
}
