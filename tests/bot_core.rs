//! The bot core driven by a scripted in-memory platform: every scenario an adapter relies on.

#[path = "support/bot.rs"]
mod scripted;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lore_chat::{
    Attachment, ChannelHistory, ChatError, ChatHandler, ChunkSink, Download, EventKind,
    HistoryPage, ReplySink, SlashCommand,
};
use lore_core::bot::reply::Streamer;
use scripted::*;

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
async fn stats_shows_a_tenant_only_its_own_figures() {
    let data = tempfile::tempdir().unwrap();
    let p = Platform::new(engine(settings(data.path())).await);
    // acme is busy: a knowledge channel, a post kept, and questions answered.
    p.say(admin(message("acme", "kb", "ann", "/knowledge-channel on")))
        .await;
    p.send(quiet(message(
        "acme",
        "kb",
        "ann",
        "The acme launch code is 7781.",
    )))
    .await;
    for channel in ["c1", "c2", "c3"] {
        p.say(message("acme", channel, "ann", "What is the launch code?"))
            .await;
    }
    let acme = p.say(admin(message("acme", "c1", "ann", "/stats"))).await;
    assert!(acme.contains("Knowledge channels: 1"), "{acme}");
    assert!(acme.contains("Posts kept: 1"), "{acme}");
    assert!(!acme.contains("Answered: 0,"), "{acme}");
    let globex = p.say(admin(message("globex", "c1", "gil", "/stats"))).await;
    for figure in [
        "Sources: 0",
        "Conversations remembered: 0",
        "Knowledge channels: 0",
        "Posts kept: 0",
        "Answered: 0, refused: 0",
    ] {
        assert!(globex.contains(figure), "{figure} in {globex}");
    }
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

/// A chat reply names sources as people know them: the path relative to the folder
/// ingested, never the server's path; a source an older lore stored under an absolute path
/// shows its last two components and can be forgotten by that name.
#[tokio::test]
async fn replies_never_show_a_server_path() {
    use lore_core::ingest::document::{DocKind, Document, Section};
    let data = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir(docs.path().join("teas")).unwrap();
    std::fs::write(docs.path().join("teas").join("oolong.md"), TEA).unwrap();
    let settings = settings(data.path());
    let bot = settings.bot.clone();
    let app = lore_core::kb::KnowledgeBase::open(settings.knowledge())
        .await
        .unwrap();
    let folder = docs.path().to_str().unwrap().to_owned();
    let report = app
        .ingestor
        .ingest(
            std::slice::from_ref(&folder),
            "t1",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
    assert_eq!(report.files, 1);
    // As an older lore stored it: under the absolute path it was given.
    let legacy = Document {
        source: "/srv/lore/knowledge_db/green/green.md".into(),
        kind: DocKind::Text,
        title: None,
        sections: vec![Section {
            text: GREEN.into(),
            ..Section::default()
        }],
    };
    app.ingestor.ingest_document(legacy, "t1").await.unwrap();
    app.store.commit().await.unwrap();
    let p = Platform::new(lore_core::bot::Engine::open(Arc::new(app), bot).unwrap());
    let answer = p.say(message("t1", "c", "ann", "乌龙茶产自哪里？")).await;
    assert!(answer.contains("teas/oolong.md"), "{answer}");
    assert!(!answer.contains(&folder), "{answer}");
    let answer = p.say(message("t1", "c", "ann", "龙井是什么茶？")).await;
    assert!(answer.contains("green/green.md"), "{answer}");
    assert!(!answer.contains("/srv/lore"), "{answer}");
    let sources = p.say(message("t1", "c", "ann", "/sources")).await;
    assert!(
        sources.contains("teas/oolong.md") && sources.contains("green/green.md"),
        "{sources}"
    );
    assert!(
        !sources.contains(&folder) && !sources.contains("/srv/lore"),
        "{sources}"
    );
    let forgot = p
        .say(admin(message("t1", "c", "ann", "/forget green/green.md")))
        .await;
    assert!(!forgot.contains("no source"), "{forgot}");
    let sources = p.say(message("t1", "c", "ann", "/sources")).await;
    assert!(!sources.contains("green"), "{sources}");
}
