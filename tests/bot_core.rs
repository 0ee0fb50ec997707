//! The bot core driven by a scripted in-memory platform: every scenario an adapter relies on.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lore::settings::Settings;
use lore_chat::{
    Addressing, Attachment, Author, ChannelHistory, ChatError, ChatHandler, ChunkSink, Download,
    EventKind, HistoryPage, IncomingEvent, MessageHandle, ReplySink, SlashCommand,
};
use lore_core::bot::Engine;
use lore_core::bot::reply::Streamer;
use lore_core::kb::KnowledgeBase as App;

/// Messages the scripted platform shows, in order; edits replace a message's text.
#[derive(Default)]
struct Screen {
    messages: Mutex<Vec<String>>,
}

struct ScriptedSink {
    screen: Arc<Screen>,
    limit: usize,
    send_delay: Duration,
    history: Option<Arc<dyn ChannelHistory>>,
}

struct ScriptedMessage {
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
struct Platform {
    engine: Engine,
    screen: Arc<Screen>,
    sink: Arc<dyn ReplySink>,
}

impl Platform {
    fn new(engine: Engine) -> Self {
        Self::with_sink(engine, 2000, Duration::ZERO, None)
    }

    fn with_sink(
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
    async fn send(&self, event: IncomingEvent) -> Vec<String> {
        let before = self.screen.messages.lock().unwrap().len();
        self.engine
            .submit(event, self.sink.clone())
            .await
            .expect("handled");
        self.screen.messages.lock().unwrap()[before..].to_vec()
    }

    async fn say(&self, event: IncomingEvent) -> String {
        self.send(event).await.join("\n")
    }
}

fn settings(data: &Path) -> Settings {
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

async fn engine(settings: Settings) -> Engine {
    let bot = settings.bot.clone();
    Engine::open(
        Arc::new(App::open(settings.knowledge()).await.unwrap()),
        bot,
    )
    .unwrap()
}

fn message(tenant: &str, channel: &str, user: &str, text: &str) -> IncomingEvent {
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

fn admin(mut event: IncomingEvent) -> IncomingEvent {
    event.author.is_admin = true;
    event
}

fn quiet(mut event: IncomingEvent) -> IncomingEvent {
    event.addressing = Addressing::default();
    event
}

const TEA: &str = "乌龙茶是一种半发酵茶，主要产自福建和台湾。";
const GREEN: &str = "绿茶不发酵，龙井是有名的绿茶。";

#[tokio::test]
async fn a_follow_up_uses_the_conversation_so_far() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    let ingest = admin(message(
        "t1",
        "c",
        "ann",
        &format!("/ingest \"{TEA} {GREEN}\""),
    ));
    assert!(p.say(ingest).await.contains('✓'));
    assert!(
        p.say(message("t1", "c", "ann", "乌龙茶产自哪里？"))
            .await
            .contains("Sources:")
    );
    // "Tell me more" matches nothing alone: only the conversation gives it sources.
    let follow_up = p.say(message("t1", "c", "ann", "详细说说")).await;
    assert!(follow_up.contains("Sources:"), "{follow_up}");
    // Another channel has no such history.
    let elsewhere = p.say(message("t1", "other", "ann", "详细说说")).await;
    assert!(!elsewhere.contains("Sources:"), "{elsewhere}");
}

#[tokio::test]
async fn a_knowledge_post_is_ingested_edited_and_deleted() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    let on = p
        .say(admin(message("t1", "kb", "ann", "/knowledge-channel on")))
        .await;
    assert!(on.contains("now a knowledge channel"), "{on}");

    let mut post = quiet(message(
        "t1",
        "kb",
        "bob",
        "The VPN gateway is vpn.example.com on port 4443.",
    ));
    post.permalink = Some("https://chat.example/t1/kb/42".into());
    assert!(
        p.send(post.clone()).await.is_empty(),
        "posts are learnt silently"
    );
    // A platform delivering the same event twice changes nothing.
    assert!(p.send(post.clone()).await.is_empty());
    let answer = p
        .say(message(
            "t1",
            "c",
            "cy",
            "Which port does the VPN gateway use?",
        ))
        .await;
    assert!(
        answer.contains("4443") && answer.contains("chat.example/t1/kb/42"),
        "{answer}"
    );
    assert!(answer.contains("bob"), "the author is cited: {answer}");

    let mut edit = post.clone();
    edit.kind = EventKind::Edited;
    edit.text = "The VPN gateway moved to port 5553.".into();
    p.send(edit).await;
    let answer = p
        .say(message(
            "t1",
            "c",
            "cy",
            "Which port does the VPN gateway use?",
        ))
        .await;
    assert!(
        answer.contains("5553") && !answer.contains("4443"),
        "{answer}"
    );

    let mut delete = post;
    delete.kind = EventKind::Deleted;
    delete.text.clear();
    p.send(delete).await;
    let answer = p
        .say(message(
            "t1",
            "c",
            "cy",
            "Which port does the VPN gateway use?",
        ))
        .await;
    assert!(!answer.contains("Sources:"), "{answer}");
}

#[tokio::test]
async fn a_non_admin_cannot_ingest_forget_or_mark_channels() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    for command in [
        "/ingest \"secret plans\"",
        "/forget notes.md",
        "/knowledge-channel on",
    ] {
        let reply = p.say(message("t1", "c", "mallory", command)).await;
        assert!(reply.contains("only an admin"), "{command}: {reply}");
    }
    let sources = p.say(message("t1", "c", "mallory", "/sources")).await;
    assert!(sources.contains("no sources of its own"), "{sources}");
}

#[tokio::test]
async fn two_tenants_do_not_see_each_other_but_both_see_global() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    p.say(admin(message(
        "acme",
        "c",
        "ann",
        "/ingest \"The acme launch code is 7781.\"",
    )))
    .await;
    p.say(admin(message(
        "global",
        "c",
        "op",
        "/ingest \"The office wifi password is teapot.\"",
    )))
    .await;
    let own = p
        .say(message("acme", "c", "ann", "What is the acme launch code?"))
        .await;
    assert!(own.contains("7781"), "{own}");
    let other = p
        .say(message(
            "globex",
            "c",
            "eve",
            "What is the acme launch code?",
        ))
        .await;
    assert!(!other.contains("7781"), "{other}");
    let shared = p
        .say(message(
            "globex",
            "c",
            "eve",
            "What is the office wifi password?",
        ))
        .await;
    assert!(shared.contains("teapot"), "{shared}");
}

#[tokio::test]
async fn memory_survives_a_restart_mid_conversation() {
    let data = tempfile::tempdir().unwrap();
    {
        let p = Platform::new(engine(settings(data.path())).await);
        p.say(admin(message(
            "t1",
            "c",
            "ann",
            &format!("/ingest \"{TEA} {GREEN}\""),
        )))
        .await;
        p.say(message("t1", "c", "ann", "乌龙茶产自哪里？")).await;
        p.engine.shutdown().await.unwrap();
    }
    let p = Platform::new(engine(settings(data.path())).await);
    let follow_up = p.say(message("t1", "c", "ann", "详细说说")).await;
    assert!(follow_up.contains("Sources:"), "{follow_up}");
    assert!(
        p.say(message("t1", "c", "ann", "/reset"))
            .await
            .contains("cleared")
    );
    assert!(
        !p.say(message("t1", "c", "ann", "详细说说"))
            .await
            .contains("Sources:")
    );
}

#[tokio::test]
async fn a_long_answer_is_split_with_its_code_fence_intact() {
    let screen = Arc::new(Screen::default());
    let sink: Arc<dyn ReplySink> = Arc::new(ScriptedSink {
        screen: screen.clone(),
        limit: 2000,
        send_delay: Duration::ZERO,
        history: None,
    });
    let code: String = (0..400).map(|i| format!("    step_{i:03}();\n")).collect();
    let prose = "This is prose that explains things. ".repeat(60);
    let text = format!("{prose}\n\n```rust\nfn main() {{\n{code}}}\n```\n\n{prose}");
    assert!(text.chars().count() >= 10_000);
    let mut out = Streamer::new(sink, None, Duration::from_millis(1000));
    out.push(&text[..100]).await.unwrap();
    out.finish(&text).await.unwrap();
    let parts = screen.messages.lock().unwrap().clone();
    assert!(parts.len() >= 5, "{} parts", parts.len());
    for part in &parts {
        assert!(part.chars().count() <= 2000);
        assert_eq!(part.matches("```").count() % 2, 0, "a fence is cut: {part}");
    }
    let all = parts.concat();
    assert!(all.contains("step_399();"));
    assert!(
        parts[0].starts_with("This is prose"),
        "the streamed preview was replaced"
    );
}

#[tokio::test]
async fn everyone_mentions_in_an_answer_are_neutralised() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    p.say(admin(message(
        "t1",
        "c",
        "ann",
        "/ingest \"Release freeze starts Friday @everyone <@&123> <@456>, tell @here too.\"",
    )))
    .await;
    let answer = p
        .say(message(
            "t1",
            "c",
            "bob",
            "When does the release freeze start?",
        ))
        .await;
    assert!(answer.contains("Friday"), "{answer}");
    for mention in ["@everyone", "@here", "<@&123>", "<@456>"] {
        assert!(!answer.contains(mention), "{mention} in {answer}");
    }
}

#[tokio::test]
async fn the_bot_answers_only_when_addressed_and_always_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    let mut s = settings(data.path());
    s.bot.questions_per_user_per_minute = 1;
    let p = Platform::new(engine(s).await);
    assert!(
        p.send(quiet(message("t1", "c", "ann", "just chatting")))
            .await
            .is_empty()
    );
    let first = p.say(message("t1", "c", "ann", "What is oolong?")).await;
    assert!(first.contains("could not find"), "{first}");
    let limited = p.say(message("t1", "c", "ann", "And green tea?")).await;
    assert!(limited.contains("try again in"), "{limited}");
    let mut slash = quiet(message("t1", "c", "bob", ""));
    slash.addressing.command = Some(SlashCommand {
        name: "help".into(),
        args: String::new(),
    });
    assert!(p.say(slash).await.contains("/knowledge-channel"));
}

#[tokio::test]
async fn one_channel_is_answered_in_order_and_a_backlog_reports_its_position() {
    let data = tempfile::tempdir().unwrap();
    let mut s = settings(data.path());
    s.bot.max_concurrent_channels = 1;
    let p = Platform::with_sink(engine(s).await, 2000, Duration::from_millis(50), None);
    let mut pending = Vec::new();
    for i in 0..4 {
        pending.push(p.engine.submit(
            message("t1", "a", "ann", &format!("/cmd{i}")),
            p.sink.clone(),
        ));
    }
    let other = p
        .engine
        .submit(message("t1", "b", "bob", "/help"), p.sink.clone());
    for done in pending {
        done.await.unwrap();
    }
    other.await.unwrap();
    let shown = p.screen.messages.lock().unwrap().clone();
    let order: Vec<usize> = (0..4)
        .map(|i| {
            shown
                .iter()
                .position(|m| m.contains(&format!("/cmd{i} ")))
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{shown:?}");
    // Channel b waited for channel a's slot: its notice became its answer, or it is listed.
    assert!(
        shown
            .iter()
            .any(|m| m.contains("in the queue") || m.contains("/knowledge-channel")),
        "{shown:?}"
    );
}

/// A channel history of three pages whose second read fails once, like a crash mid-backfill.
struct FlakyHistory {
    reads: Mutex<Vec<Option<String>>>,
    failed: AtomicUsize,
}

#[async_trait]
impl ChannelHistory for FlakyHistory {
    async fn page(&self, cursor: Option<&str>) -> Result<HistoryPage, ChatError> {
        self.reads.lock().unwrap().push(cursor.map(str::to_owned));
        let (n, next) = match cursor {
            None => (0, Some("p2")),
            Some("p2") => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    return Err(ChatError::transient("connection reset"));
                }
                (1, Some("p3"))
            }
            _ => (2, None),
        };
        let facts = [
            "The cafeteria opens at 8.",
            "Parking is on level minus two.",
            "Badges are renewed in March.",
        ];
        let mut event = quiet(message("t1", "kb", "old", facts[n]));
        event.message_id = format!("history-{n}");
        Ok(HistoryPage {
            events: vec![event],
            next: next.map(str::to_owned),
        })
    }
}

#[tokio::test]
async fn a_backfill_is_checkpointed_and_resumes_after_a_failure() {
    let data = tempfile::tempdir().unwrap();
    let mut s = settings(data.path());
    s.bot.backfill_pages_per_minute = 6000;
    let history = Arc::new(FlakyHistory {
        reads: Mutex::new(Vec::new()),
        failed: AtomicUsize::new(0),
    });
    let p = Platform::with_sink(engine(s).await, 2000, Duration::ZERO, Some(history.clone()));
    p.say(admin(message("t1", "kb", "ann", "/knowledge-channel on")))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The next post in the channel resumes the backfill at the failed page.
    p.send(quiet(message("t1", "kb", "ann", "Lunch is at noon.")))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = history.reads.lock().unwrap().clone();
    assert_eq!(reads.iter().filter(|r| r.is_none()).count(), 1, "{reads:?}");
    let answer = p
        .say(message("t1", "c", "bob", "When are badges renewed?"))
        .await;
    assert!(answer.contains("March"), "{answer}");
}

struct Bytes(Vec<u8>);

#[async_trait]
impl Download for Bytes {
    async fn download(&self, _max: u64, sink: &mut dyn ChunkSink) -> Result<u64, ChatError> {
        sink.write(&self.0).await?;
        Ok(self.0.len() as u64)
    }
}

#[tokio::test]
async fn attachments_are_ingested_within_the_quota() {
    let data = tempfile::tempdir().unwrap();
    let mut s = settings(data.path());
    s.bot.quota_bytes_per_tenant = 100;
    let p = Platform::new(engine(s).await);
    let file = |name: &str, text: &str| Attachment {
        name: name.into(),
        size: text.len() as u64,
        content_type: Some("text/plain".into()),
        handle: Arc::new(Bytes(text.as_bytes().to_vec())),
    };
    let mut ok = admin(message("t1", "c", "ann", "/ingest"));
    ok.attachments = vec![file("short.txt", "The printer is on floor three.")];
    assert!(p.say(ok).await.contains("✓ short.txt"));
    let mut big = admin(message("t1", "c", "ann", "/ingest"));
    big.attachments = vec![file("big.txt", &"All work and no play. ".repeat(20))];
    let refused = p.say(big).await;
    assert!(refused.contains("quota is full"), "{refused}");
    let forgot = p
        .say(admin(message("t1", "c", "ann", "/forget short.txt")))
        .await;
    assert!(forgot.contains("Forgot short.txt"), "{forgot}");
}
