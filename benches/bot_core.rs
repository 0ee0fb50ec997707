//! Core overhead per message: everything but the embedding and the LLM (sparse-only
//! retrieval, a fake LLM that answers at once), at 1,000 messages/s across 1,000 channels.
//! Prints p50/p99 latency from submit to handled, and peak RSS.
//!
//! `cargo bench -p lore --bench bot_core` (LORE_BENCH_MESSAGES sets the message count).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use lore::settings::Settings;
use lore_chat::{
    Addressing, Author, ChatError, ChatHandler, IncomingEvent, MessageHandle, ReplySink,
};
use lore_core::answer::Assistant;
use lore_core::bot::Engine;
use lore_core::ingest::document::{DocKind, Document, Section};
use lore_core::kb::KnowledgeBase as App;
use lore_core::llm::{ChatModel, ChatRequest, ChatResponse, LlmError, TextStream};

const CHANNELS: usize = 1000;
const RATE_PER_SEC: u64 = 1000;

/// Answers at once, citing the first source, in three deltas.
struct InstantModel;

#[async_trait]
impl ChatModel for InstantModel {
    fn id(&self) -> &str {
        "fake:instant"
    }
    fn context_window(&self) -> usize {
        8192
    }
    async fn chat(&self, _req: ChatRequest) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            text: "Oolong comes from Fujian and Taiwan [1].".into(),
            usage: None,
        })
    }
    async fn chat_stream(&self, _req: ChatRequest) -> Result<TextStream, LlmError> {
        let parts = ["Oolong comes ", "from Fujian and ", "Taiwan [1]."];
        Ok(futures::stream::iter(parts.map(|p| Ok(p.to_owned()))).boxed())
    }
}

/// Discards replies, as a platform that answers instantly would.
struct NullSink;
struct NullMessage;

#[async_trait]
impl MessageHandle for NullMessage {
    async fn edit(&self, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
}

#[async_trait]
impl ReplySink for NullSink {
    fn max_message_chars(&self) -> usize {
        2000
    }
    async fn send(&self, _text: &str) -> Result<Box<dyn MessageHandle>, ChatError> {
        Ok(Box::new(NullMessage))
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let messages: usize = std::env::var("LORE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(
        None,
        [
            ("LORE_STORE__DATA_DIR", data.path().to_str().unwrap()),
            ("LORE_EMBEDDING__PROVIDER", "none"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    settings.bot.questions_per_user_per_minute = 1_000_000;
    settings.bot.questions_per_channel_per_minute = 1_000_000;
    let bot = settings.bot.clone();
    let mut app = App::open(settings.knowledge()).await.unwrap();
    app.assistant = Arc::new(Assistant::new(
        app.retriever.clone(),
        Some(Arc::new(InstantModel)),
        app.settings.answer.clone(),
        None,
    ));
    for (i, text) in [
        "Oolong tea is half-fermented and comes mostly from Fujian and Taiwan.",
        "Green tea is not fermented; Longjing is a famous green tea.",
        "Black tea is fully fermented and has a strong taste.",
    ]
    .iter()
    .enumerate()
    {
        let doc = Document {
            source: format!("tea-{i}.md"),
            kind: DocKind::Text,
            title: None,
            sections: vec![Section {
                text: (*text).to_owned(),
                ..Section::default()
            }],
        };
        app.ingestor.ingest_document(doc, "global").await.unwrap();
    }
    app.store.commit().await.unwrap();
    let engine = Engine::open(Arc::new(app), bot).unwrap();
    let sink: Arc<dyn ReplySink> = Arc::new(NullSink);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
    let started = Instant::now();
    let mut waiters = Vec::with_capacity(messages);
    for i in 0..messages {
        tick.tick().await;
        let channel = i % CHANNELS;
        let event = IncomingEvent {
            platform: "bench".into(),
            tenant: format!("team-{}", channel % 10),
            channel: format!("c{channel}"),
            message_id: i.to_string(),
            author: Author {
                id: format!("u{channel}"),
                name: format!("user {channel}"),
                ..Author::default()
            },
            text: "Where does oolong tea come from?".into(),
            addressing: Addressing {
                mentioned: true,
                ..Addressing::default()
            },
            ..IncomingEvent::default()
        };
        let submitted = Instant::now();
        let handled = engine.submit(event, sink.clone());
        let latencies = latencies.clone();
        waiters.push(tokio::spawn(async move {
            handled.await.unwrap();
            latencies.lock().unwrap().push(submitted.elapsed());
        }));
    }
    for w in waiters {
        w.await.unwrap();
    }
    let wall = started.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    println!(
        "bot_core: {messages} messages over {CHANNELS} channels at {RATE_PER_SEC}/s offered, \
         {:.0}/s achieved; per message p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; peak RSS {:.0} MiB; \
         {} conversations remembered",
        messages as f64 / wall.as_secs_f64(),
        percentile(&l, 0.50).as_secs_f64() * 1e3,
        percentile(&l, 0.99).as_secs_f64() * 1e3,
        l.last().unwrap().as_secs_f64() * 1e3,
        peak_rss_mib(),
        engine.core().memory.len(),
    );
}
