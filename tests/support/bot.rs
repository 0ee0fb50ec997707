//! A scripted in-memory chat platform for driving the bot core in tests: a screen of
//! messages, a reply sink that writes to it, and events as a platform would send them.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lore::settings::Settings;
use lore_chat::{
    Addressing, Author, ChannelHistory, ChatError, ChatHandler, IncomingEvent, MessageHandle,
    ReplySink,
};
use lore_core::bot::Engine;
use lore_core::kb::KnowledgeBase as App;

/// Messages the scripted platform shows, in order; edits replace a message's text.
#[derive(Default)]
pub struct Screen {
    pub messages: Mutex<Vec<String>>,
}

pub struct ScriptedSink {
    pub screen: Arc<Screen>,
    pub limit: usize,
    pub send_delay: Duration,
    pub history: Option<Arc<dyn ChannelHistory>>,
}

pub struct ScriptedMessage {
    screen: Arc<Screen>,
    index: usize,
}

#[async_trait]
impl MessageHandle for ScriptedMessage {
    async fn edit(&self, text: &str) -> Result<(), ChatError> {
        self.screen.messages.lock().unwrap()[self.index] = text.to_owned();
        Ok(())
    }
}

#[async_trait]
impl ReplySink for ScriptedSink {
    fn max_message_chars(&self) -> usize {
        self.limit
    }

    async fn send(&self, text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        tokio::time::sleep(self.send_delay).await;
        assert!(
            text.chars().count() <= self.limit,
            "over the platform limit"
        );
        let mut messages = self.screen.messages.lock().unwrap();
        messages.push(text.to_owned());
        Ok(Box::new(ScriptedMessage {
            screen: self.screen.clone(),
            index: messages.len() - 1,
        }))
    }

    fn history(&self) -> Option<Arc<dyn ChannelHistory>> {
        self.history.clone()
    }
}

/// One platform's view of the bot.
pub struct Platform {
    pub engine: Engine,
    pub screen: Arc<Screen>,
    pub sink: Arc<dyn ReplySink>,
}

impl Platform {
    pub fn new(engine: Engine) -> Self {
        Self::with_sink(engine, 2000, Duration::ZERO, None)
    }

    pub fn with_sink(
        engine: Engine,
        limit: usize,
        send_delay: Duration,
        history: Option<Arc<dyn ChannelHistory>>,
    ) -> Self {
        let screen = Arc::new(Screen::default());
        let sink = Arc::new(ScriptedSink {
            screen: screen.clone(),
            limit,
            send_delay,
            history,
        });
        Self {
            engine,
            screen,
            sink,
        }
    }

    /// Submits an event and returns what the bot showed for it.
    pub async fn send(&self, event: IncomingEvent) -> Vec<String> {
        let before = self.screen.messages.lock().unwrap().len();
        self.engine
            .submit(event, self.sink.clone())
            .await
            .expect("handled");
        self.screen.messages.lock().unwrap()[before..].to_vec()
    }

    pub async fn say(&self, event: IncomingEvent) -> String {
        self.send(event).await.join("\n")
    }
}

pub fn settings(data: &Path) -> Settings {
    let mut s = Settings::load(
        None,
        [
            ("LORE_STORE__DATA_DIR", data.to_str().unwrap()),
            ("LORE_EMBEDDING__PROVIDER", "none"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    s.bot.questions_per_user_per_minute = 1000;
    s.bot.questions_per_channel_per_minute = 1000;
    s
}

pub async fn engine(settings: Settings) -> Engine {
    let bot = settings.bot.clone();
    Engine::open(
        Arc::new(App::open(settings.knowledge()).await.unwrap()),
        bot,
    )
    .unwrap()
}

pub fn message(tenant: &str, channel: &str, user: &str, text: &str) -> IncomingEvent {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    IncomingEvent {
        platform: "scripted".into(),
        tenant: tenant.into(),
        channel: channel.into(),
        message_id: id.to_string(),
        author: Author {
            id: user.into(),
            name: user.into(),
            ..Author::default()
        },
        text: text.into(),
        addressing: Addressing {
            mentioned: true,
            ..Addressing::default()
        },
        timestamp: Some("2026-11-28T12:00:00Z".into()),
        ..IncomingEvent::default()
    }
}

pub fn admin(mut event: IncomingEvent) -> IncomingEvent {
    event.author.is_admin = true;
    event
}

pub fn quiet(mut event: IncomingEvent) -> IncomingEvent {
    event.addressing = Addressing::default();
    event
}
