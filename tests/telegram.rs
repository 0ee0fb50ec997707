//! The Telegram adapter end to end: the real core (App + Engine, BM25 only; a local
//! OpenAI-compatible server where an LLM answer is needed) and the real teloxide client,
//! long-polling a local Bot API (`support/telegram_fake.rs`) over HTTP.

#[path = "support/telegram_fake.rs"]
mod telegram_fake;

use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use lore::settings::Settings;
use lore_core::bot::Engine;
use lore_core::kb::KnowledgeBase as App;
use lore_core::store::TenantScope;
use serde_json::{Value, json};
use telegram_fake::{BOT_ID, BOT_USERNAME, FakeTelegram, Shown, parse_html, user};
use tokio::sync::oneshot;

const TEA: &str = "乌龙茶是一种半发酵茶，主要产自福建和台湾。";
const GREEN_MD: &str = "# 绿茶\n\n龙井是有名的绿茶，产自杭州西湖。\n";

/// Everything the adapter logs, to check that the token never appears.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
    });
}

/// The core and the adapter running against a fresh fake Telegram.
struct Harness {
    fake: FakeTelegram,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), lore_telegram::TelegramError>>,
    _data: tempfile::TempDir,
}

impl Harness {
    async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        capture_logs();
        let data = tempfile::tempdir().unwrap();
        let fake = FakeTelegram::start().await;
        let mut settings = Settings::load(
            None,
            [
                ("LORE_STORE__DATA_DIR", data.path().to_str().unwrap()),
                ("LORE_EMBEDDING__PROVIDER", "none"),
                ("LORE_TELEGRAM__API_URL", fake.url.as_str()),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        assert_eq!(
            settings.telegram.api_url.as_deref(),
            Some(fake.url.as_str())
        );
        settings.bot.questions_per_user_per_minute = 1000;
        settings.bot.questions_per_channel_per_minute = 1000;
        settings.telegram.edit_interval_ms = 50;
        settings.telegram.poll_timeout_secs = 20;
        configure(&mut settings);
        let telegram = settings.telegram.clone();
        let app = Arc::new(App::open(settings.knowledge()).await.unwrap());
        let engine = Engine::open(app.clone(), settings.bot.clone()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(lore_telegram::run(
            telegram,
            fake.token.clone(),
            Arc::new(engine),
            async move {
                let _ = stopped.await;
            },
        ));
        fake.wait_for("setMyCommands", |f| f.commands()).await;
        Self {
            fake,
            app,
            stop: Some(stop),
            task,
            _data: data,
        }
    }

    /// Sends `text` from `from` in `chat` and returns the bot's finished reply to it.
    async fn ask(&self, chat: i64, from: Value, text: &str, extra: Value) -> Vec<Shown> {
        let before = self.fake.shown_in(chat).len();
        let m = self.fake.message(chat, from, text, extra);
        self.fake.push("message", &m);
        self.fake.reply(chat, before).await
    }

    /// Stops the adapter and checks it returned cleanly and logged no secret.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("the adapter stops when asked")
            .unwrap()
            .unwrap();
        let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
        let secret = self.fake.token.split_once(':').unwrap().1;
        assert!(!logs.contains(secret), "the bot token reached the logs");
    }
}

fn text_of(parts: &[Shown]) -> String {
    parts
        .iter()
        .map(|p| p.visible.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_are_answered_and_groups_only_when_addressed() {
    let h = Harness::start(|_| {}).await;
    let f = &h.fake;
    let names: Vec<String> = f
        .commands()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_owned())
        .collect();
    for wanted in [
        "ask",
        "ingest",
        "forget",
        "sources",
        "reset",
        "stats",
        "knowledge_channel",
        "help",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not registered: {names:?}"
        );
    }

    // A DM: its owner fills their own knowledge and every message is a question.
    let ann = f.private_chat(501, "Ann");
    let ingested = h
        .ask(
            ann,
            user(501, "Ann"),
            &format!("/ingest \"{TEA}\""),
            json!({}),
        )
        .await;
    assert!(text_of(&ingested).contains('✓'), "{}", text_of(&ingested));
    let answer = h
        .ask(ann, user(501, "Ann"), "乌龙茶产自哪里？", json!({}))
        .await;
    let answer_text = text_of(&answer);
    assert!(answer_text.contains("Sources:"), "{answer_text}");
    assert!(answer_text.contains("福建"), "{answer_text}");
    assert!(answer.iter().all(|m| m.html && m.reply_to.is_none()));
    f.wait_for("typing in the DM", |f| {
        f.calls("SendChatAction")
            .iter()
            .any(|c| c.params["chat_id"] == json!(ann) && c.params["action"] == json!("typing"))
            .then_some(())
    })
    .await;

    // A group: knowledge ingested by an admin; a plain message is not for the bot.
    let group = f.supergroup(-1001000000001, "Tea team");
    f.make_admin(group, 601);
    let ingested = h
        .ask(
            group,
            user(601, "Boss"),
            &format!("/ingest@{BOT_USERNAME} \"{TEA}\""),
            json!({}),
        )
        .await;
    assert!(text_of(&ingested).contains('✓'), "{}", text_of(&ingested));
    let before = f.shown_in(group).len();
    let plain = f.message(group, user(602, "Bob"), "乌龙茶产自哪里？", json!({}));
    f.push("message", &plain);
    let mention = f.message(
        group,
        user(602, "Bob"),
        &format!("@{BOT_USERNAME} 乌龙茶产自哪里？"),
        json!({}),
    );
    f.push("message", &mention);
    let reply = f.reply(group, before).await;
    // Events of a chat are handled in order: the plain message was seen and ignored.
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(reply[0].reply_to, mention["message_id"].as_i64());
    assert!(
        reply[0].visible.contains("Sources:"),
        "{}",
        reply[0].visible
    );
    assert!(
        f.shown_in(group)
            .iter()
            .all(|m| m.reply_to != plain["message_id"].as_i64())
    );
    let typed_in_group = f
        .calls("SendChatAction")
        .iter()
        .filter(|c| c.params["chat_id"] == json!(group))
        .count();

    // A reply to the bot's message, and /ask, are addressed too; /ask for another bot is not.
    let bots_message = json!({"message_id": reply[0].id, "date": 0, "chat": {"id": group, "type": "supergroup", "title": "Tea team"},
                              "from": {"id": BOT_ID, "is_bot": true, "first_name": "Lore", "username": BOT_USERNAME},
                              "text": reply[0].visible});
    let follow = h
        .ask(
            group,
            user(602, "Bob"),
            "台湾也产吗？",
            json!({"reply_to_message": bots_message}),
        )
        .await;
    assert_eq!(follow.len(), 1);
    let before = f.shown_in(group).len();
    let other = f.message(
        group,
        user(602, "Bob"),
        "/ask@other_bot 乌龙茶产自哪里？",
        json!({}),
    );
    f.push("message", &other);
    let asked = h
        .ask(group, user(602, "Bob"), "/ask 乌龙茶产自哪里？", json!({}))
        .await;
    assert_eq!(f.shown_in(group).len(), before + asked.len());
    assert!(text_of(&asked).contains("Sources:"), "{}", text_of(&asked));
    assert!(
        typed_in_group >= 1,
        "typing shown while answering in the group"
    );

    // An update teloxide cannot read is skipped; the next one is still answered.
    f.push_raw(json!({"message": {"message_id": "not a number", "chat": 5}}));
    let after_bad = h.ask(ann, user(501, "Ann"), "/help", json!({})).await;
    assert!(
        text_of(&after_bad).contains("/ingest"),
        "{}",
        text_of(&after_bad)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_ingested_by_admins_only_and_chats_stay_apart() {
    let h = Harness::start(|_| {}).await;
    let f = &h.fake;
    let group = f.supergroup(-1001000000002, "Tea team");
    let other_group = f.supergroup(-1001000000003, "Coffee team");
    f.make_admin(group, 601);
    let tea = f.add_document(
        "F1",
        "documents/file_1.md",
        "tea.md",
        format!("# 乌龙\n\n{TEA}\n").as_bytes(),
    );

    let refused = h
        .ask(
            group,
            user(602, "Bob"),
            "",
            json!({"caption": "/ingest", "document": tea}),
        )
        .await;
    assert!(
        text_of(&refused).contains("only an admin"),
        "{}",
        text_of(&refused)
    );
    assert!(
        f.calls("GetFile").is_empty(),
        "nothing is downloaded for a refused ingest"
    );

    let stored = h
        .ask(
            group,
            user(601, "Boss"),
            "",
            json!({"caption": format!("/ingest@{BOT_USERNAME}"), "document": tea}),
        )
        .await;
    assert!(
        text_of(&stored).contains("✓ tea.md"),
        "{}",
        text_of(&stored)
    );
    assert_eq!(f.calls("GetFile").len(), 1);

    // /ingest as a reply to a message that carries a document.
    let green = f.add_document("F2", "documents/file_2.md", "green.md", GREEN_MD.as_bytes());
    let posted = f.message(group, user(602, "Bob"), "", json!({"document": green}));
    f.push("message", &posted);
    let stored = h
        .ask(
            group,
            user(601, "Boss"),
            "/ingest",
            json!({"reply_to_message": posted}),
        )
        .await;
    assert!(
        text_of(&stored).contains("✓ green.md"),
        "{}",
        text_of(&stored)
    );

    // /ingest as a reply to a text message stores its text.
    let note = f.message(group, user(602, "Bob"), "碧螺春产自苏州太湖。", json!({}));
    f.push("message", &note);
    let stored = h
        .ask(
            group,
            user(601, "Boss"),
            "/ingest",
            json!({"reply_to_message": note}),
        )
        .await;
    assert!(text_of(&stored).contains('✓'), "{}", text_of(&stored));

    let answer = h
        .ask(
            group,
            user(602, "Bob"),
            &format!("@{BOT_USERNAME} 龙井产自哪里？"),
            json!({}),
        )
        .await;
    let answer = text_of(&answer);
    assert!(
        answer.contains("Sources:") && answer.contains("green.md"),
        "{answer}"
    );
    let answer = text_of(
        &h.ask(
            group,
            user(602, "Bob"),
            &format!("@{BOT_USERNAME} 碧螺春产自哪里？"),
            json!({}),
        )
        .await,
    );
    assert!(answer.contains("苏州"), "{answer}");

    // Another chat sees none of it.
    let elsewhere = text_of(
        &h.ask(
            other_group,
            user(602, "Bob"),
            &format!("@{BOT_USERNAME} 龙井产自哪里？"),
            json!({}),
        )
        .await,
    );
    assert!(
        !elsewhere.contains("Sources:") && !elsewhere.contains("西湖"),
        "{elsewhere}"
    );
    let hits = h
        .app
        .retriever
        .search(
            &TenantScope::only(&other_group.to_string()),
            "龙井 绿茶 乌龙茶",
            None,
            10,
        )
        .await
        .unwrap();
    assert!(hits.hits.is_empty());
    let hits = h
        .app
        .retriever
        .search(
            &TenantScope::only(&group.to_string()),
            "龙井 绿茶",
            None,
            10,
        )
        .await
        .unwrap();
    assert!(hits.hits.iter().any(|h| h.chunk.source == "green.md"));

    // A failed download says why, and neither the reply nor the logs carry the token.
    let lost = f.add_document("F3", "documents/file_3.md", "lost.md", b"# lost\n\ngone");
    f.lose_file("F3");
    let failed = text_of(
        &h.ask(
            group,
            user(601, "Boss"),
            "",
            json!({"caption": "/ingest", "document": lost}),
        )
        .await,
    );
    assert!(failed.contains("✗ lost.md"), "{failed}");
    let secret = f.token.split_once(':').unwrap().1;
    assert!(!failed.contains(secret), "{failed}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_chat_posts_and_edits_are_reflected_in_search() {
    let h = Harness::start(|_| {}).await;
    let f = &h.fake;
    let group = f.supergroup(-1001000000004, "Ops");
    f.make_admin(group, 601);
    let refused = text_of(
        &h.ask(group, user(602, "Bob"), "/knowledge on", json!({}))
            .await,
    );
    assert!(refused.contains("only an admin"), "{refused}");
    let on = text_of(
        &h.ask(group, user(601, "Boss"), "/knowledge on", json!({}))
            .await,
    );
    assert!(on.contains("knowledge channel"), "{on}");

    let post = f.message(
        group,
        user(602, "Bob"),
        "The kettle password is 4417, ask Bob.",
        json!({}),
    );
    f.push("message", &post);
    let first = text_of(
        &h.ask(
            group,
            user(602, "Bob"),
            &format!("@{BOT_USERNAME} what is the kettle password?"),
            json!({}),
        )
        .await,
    );
    assert!(first.contains("4417"), "{first}");

    let mut edited = post.clone();
    edited["text"] = json!("The kettle password is 9932 since Monday.");
    edited["edit_date"] = edited["date"].clone();
    f.push("edited_message", &edited);
    let second = text_of(
        &h.ask(
            group,
            user(602, "Bob"),
            &format!("@{BOT_USERNAME} what is the kettle password?"),
            json!({}),
        )
        .await,
    );
    assert!(
        second.contains("9932") && !second.contains("4417"),
        "{second}"
    );
    let hits = h
        .app
        .retriever
        .search(
            &TenantScope::only(&group.to_string()),
            "kettle password",
            None,
            10,
        )
        .await
        .unwrap();
    assert!(hits.hits.iter().any(|h| h.chunk.text.contains("9932")));
    assert!(hits.hits.iter().all(|h| !h.chunk.text.contains("4417")));
    // The post's permalink is its source.
    assert!(
        hits.hits
            .iter()
            .any(|h| h.chunk.source.starts_with("https://t.me/c/1000000004/")),
        "{:?}",
        hits.hits
            .iter()
            .map(|h| &h.chunk.source)
            .collect::<Vec<_>>()
    );

    // A channel: posts come from the channel itself (its admins), edits replace.
    let channel = f.channel(-1002000000001, "Announcements");
    let sender = json!({"id": channel, "type": "channel", "title": "Announcements"});
    let cmd = f.message(
        channel,
        Value::Null,
        "/knowledge on",
        json!({"sender_chat": sender}),
    );
    let before = f.shown_in(channel).len();
    f.push("channel_post", &cmd);
    assert!(text_of(&f.reply(channel, before).await).contains("knowledge channel"));
    let news = f.message(
        channel,
        Value::Null,
        "The office moves to Pier 7 in March.",
        json!({"sender_chat": sender}),
    );
    f.push("channel_post", &news);
    let mut fixed = news.clone();
    fixed["text"] = json!("The office moves to Pier 9 in April.");
    fixed["edit_date"] = fixed["date"].clone();
    f.push("edited_channel_post", &fixed);
    let ask = f.message(
        channel,
        Value::Null,
        &format!("@{BOT_USERNAME} where does the office move?"),
        json!({"sender_chat": sender}),
    );
    let before = f.shown_in(channel).len();
    f.push("channel_post", &ask);
    let answer = text_of(&f.reply(channel, before).await);
    assert!(
        answer.contains("Pier 9") && !answer.contains("Pier 7"),
        "{answer}"
    );
    h.stop().await;
}

/// What the fake model streams, and the chat whose progress paces it.
struct Stream {
    pieces: Vec<String>,
    telegram: std::sync::OnceLock<(FakeTelegram, i64)>,
}

/// Messages sent or edited in `chat` so far.
fn shown_calls(f: &FakeTelegram, chat: i64) -> usize {
    ["SendMessage", "EditMessageText"]
        .iter()
        .flat_map(|m| f.calls(m))
        .filter(|c| c.params["chat_id"] == json!(chat) && c.error.is_none())
        .count()
}

/// A local OpenAI-compatible server streaming `pieces` as one answer. Piece i goes out once
/// the bot has shown i messages or edits since the stream began, so every piece is seen.
async fn fake_llm(stream: Arc<Stream>) -> String {
    let fake = lore_testkit::FakeOpenAi::start().await;
    fake.respond_with(move |request| {
        if !request.is_stream() {
            return lore_testkit::Reply::text("");
        }
        let (fake, chat) = stream.telegram.get().cloned().expect("telegram is set");
        let base = shown_calls(&fake, chat);
        lore_testkit::Reply::stream(&stream.pieces).paced(move |i| {
            let fake = fake.clone();
            Box::pin(async move {
                if i > 0 {
                    fake.wait_for("the bot to show the last piece", |f| {
                        (shown_calls(f, chat) >= base + i).then_some(())
                    })
                    .await;
                }
            })
        })
    });
    fake.base_url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_streamed_answer_is_paced_split_and_parseable() {
    let sentence =
        "乌龙茶的制作需要萎凋、做青、杀青、揉捻和干燥等多道工序，每一步都影响香气与滋味。";
    // (No `x[i]` in the code: the core drops every [n] that names no source, even in code.)
    let code: String = (0..120)
        .map(|i| {
            format!("    if leaf({i}) < limit && temp > 80 {{ roast(&mut batch, \"<{i}>\"); }}\n")
        })
        .collect();
    let outro = "总之，福建和台湾的乌龙茶各有特色 [1]。".repeat(30);
    // Three short pieces, each shown as an edit, then the long rest in one piece.
    let pieces = vec![
        sentence.repeat(2),
        sentence.repeat(2),
        sentence.repeat(2),
        format!("{}\n\n```rust\n{code}```\n\n{outro}", sentence.repeat(34)),
    ];
    let stream = Arc::new(Stream {
        pieces,
        telegram: std::sync::OnceLock::new(),
    });
    let llm = fake_llm(stream.clone()).await;
    let h = Harness::start(|s| {
        s.llm.provider = "openai".parse().unwrap();
        s.llm.base_url = Some(llm.clone());
        s.llm.model = "test-model".into();
        // Only the adapter paces edits here: the core would edit on every delta.
        s.bot.edit_interval_ms = 0;
        s.telegram.edit_interval_ms = 400;
    })
    .await;
    let f = &h.fake;
    let ann = f.private_chat(501, "Ann");
    let _ = stream.telegram.set((f.clone(), ann));
    h.ask(
        ann,
        user(501, "Ann"),
        &format!("/ingest \"{TEA}\""),
        json!({}),
    )
    .await;
    let before = f.shown_in(ann).len();
    let question = f.message(ann, user(501, "Ann"), "乌龙茶产自哪里？", json!({}));
    f.push("message", &question);
    let parts = f
        .wait_for("the whole answer", |f| {
            let shown: Vec<Shown> = f.shown_in(ann).into_iter().skip(before).collect();
            shown
                .last()
                .is_some_and(|m| m.visible.contains("Sources:"))
                .then_some(shown)
        })
        .await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for p in &parts {
        assert!(p.html, "every part went out as HTML");
        let visible = parse_html(&p.source).expect("well-formed Telegram HTML");
        assert_eq!(visible, p.visible);
        assert!(visible.encode_utf16().count() <= 4096);
        assert_eq!(
            p.source.matches("<pre>").count(),
            p.source.matches("</pre>").count()
        );
    }
    let all = text_of(&parts);
    for i in 0..120 {
        let line =
            format!("    if leaf({i}) < limit && temp > 80 {{ roast(&mut batch, \"<{i}>\"); }}");
        assert!(
            all.contains(&line),
            "code line {i} was cut or lost:\n{}",
            parts
                .iter()
                .map(|p| format!("---- {} chars\n{}", p.visible.chars().count(), p.source))
                .collect::<String>()
        );
    }
    assert!(all.contains("福建和台湾的乌龙茶各有特色 [1]"));
    assert!(
        parts
            .iter()
            .any(|p| p.source.starts_with("<pre><code class=\"language-rust\">")),
        "a code block continues in the next message"
    );
    let refused: Vec<_> = f
        .calls("SendMessage")
        .into_iter()
        .chain(f.calls("EditMessageText"))
        .filter_map(|c| c.error)
        .collect();
    assert!(
        refused.iter().all(|e| e.contains("not modified")),
        "{refused:?}"
    );

    // Edits of the chat were paced: each one a full 400 ms after the previous was answered.
    let edits: Vec<_> = f
        .calls("EditMessageText")
        .into_iter()
        .filter(|c| c.params["chat_id"] == json!(ann))
        .collect();
    assert!(
        // Pieces 2 and 3 wait for their edits; the last may be outrun by the final text.
        edits.len() >= 3,
        "two previews and the final text: {}",
        edits.len()
    );
    for pair in edits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(400), "edits {gap:?} apart");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_html_is_resent_plain_and_429_is_waited_out() {
    let h = Harness::start(|_| {}).await;
    let f = &h.fake;
    let ann = f.private_chat(501, "Ann");
    h.ask(
        ann,
        user(501, "Ann"),
        &format!("/ingest \"{TEA}\""),
        json!({}),
    )
    .await;

    f.fail_next(
        "SendMessage",
        ann,
        400,
        "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
        None,
    );
    let calls_before = f.calls("SendMessage").len();
    let answer = h
        .ask(ann, user(501, "Ann"), "乌龙茶产自哪里？", json!({}))
        .await;
    assert_eq!(answer.len(), 1);
    // Whether the refused send was a streaming preview (later edited as HTML) or the final
    // text depends on timing, so the resend is checked in the call log below, not on screen.
    assert!(
        answer[0].visible.contains("Sources:"),
        "{}",
        answer[0].visible
    );
    let sends = f.calls("SendMessage");
    let [refused, resent] = &sends[calls_before..] else {
        panic!("{:?}", &sends[calls_before..])
    };
    assert_eq!(refused.params["parse_mode"], json!("HTML"));
    assert!(resent.params.get("parse_mode").is_none());
    // The plain resend is what the HTML would have shown.
    let html = refused.params["text"].as_str().unwrap();
    assert_eq!(
        parse_html(html).unwrap(),
        resent.params["text"].as_str().unwrap()
    );

    f.fail_next(
        "SendMessage",
        ann,
        429,
        "Too Many Requests: retry after 2",
        Some(2),
    );
    let calls_before = f.calls("SendMessage").len();
    let answer = h
        .ask(ann, user(501, "Ann"), "乌龙茶产自哪里？", json!({}))
        .await;
    assert!(text_of(&answer).contains("Sources:"));
    let sends = f.calls("SendMessage");
    let [limited, retried] = &sends[calls_before..] else {
        panic!("{:?}", &sends[calls_before..])
    };
    assert!(
        limited
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("Too Many Requests"))
    );
    assert!(retried.error.is_none());
    assert!(
        retried.at - limited.at >= Duration::from_secs(2),
        "retried after {:?}",
        retried.at - limited.at
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_takes_updates_only_with_the_secret() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let hook_url = format!("http://127.0.0.1:{port}/telegram-hook");
    let h = Harness::start(|s| {
        s.telegram.webhook_url = Some(hook_url.clone());
        s.telegram.webhook_listen = Some(format!("127.0.0.1:{port}"));
    })
    .await;
    let f = &h.fake;
    let hook = f.wait_for("setWebhook", |f| f.webhook()).await;
    assert_eq!(hook["url"], json!(hook_url));
    assert_eq!(
        hook["max_connections"],
        json!(1),
        "one connection keeps updates in order"
    );
    let secret = hook["secret_token"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);

    let client = reqwest::Client::new();
    let deliver = |update: Value, secret: String| {
        client
            .post(&hook_url)
            .header("content-type", "application/json")
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
            .body(update.to_string())
            .send()
    };
    let ann = f.private_chat(501, "Ann");
    let forged = f.message(ann, user(501, "Ann"), "/sources", json!({}));
    let status = deliver(json!({"update_id": 1, "message": forged}), "guess".into())
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);

    let help = f.message(ann, user(501, "Ann"), "/help", json!({}));
    let update = json!({"update_id": 2, "message": help});
    assert!(
        deliver(update.clone(), secret.clone())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let reply = f.reply(ann, 0).await;
    assert!(text_of(&reply).contains("/ingest"), "{}", text_of(&reply));
    // Telegram redelivers when it missed our answer: handled once.
    assert!(
        deliver(update, secret.clone())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let again = f.message(ann, user(501, "Ann"), "/help", json!({}));
    assert!(
        deliver(json!({"update_id": 3, "message": again}), secret.clone())
            .await
            .unwrap()
            .status()
            .is_success()
    );
    f.reply(ann, 1).await;
    assert_eq!(
        f.shown_in(ann).len(),
        2,
        "the forged and the repeated update got no answer"
    );
    assert!(
        f.calls("GetUpdates").is_empty(),
        "no long polling in webhook mode"
    );
    h.stop().await;
}

/// Kills the child if the test ends before it exits.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lore_serve_starts_telegram_from_the_token_and_stops_on_sigterm() {
    let fake = FakeTelegram::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut serve = Child(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_lore"))
            .arg("serve")
            .env("LORE_STORE__DATA_DIR", data.path())
            .env("LORE_EMBEDDING__PROVIDER", "none")
            .env("LORE_TELEGRAM__API_URL", &fake.url)
            .env("TELEGRAM_BOT_TOKEN", &fake.token)
            .env_remove("DISCORD_TOKEN")
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    fake.wait_for("setMyCommands", |f| f.commands()).await;
    let ann = fake.private_chat(501, "Ann");
    let m = fake.message(ann, user(501, "Ann"), "/help", json!({}));
    fake.push("message", &m);
    let reply = fake.reply(ann, 0).await;
    assert!(text_of(&reply).contains("/ingest"), "{}", text_of(&reply));

    let child = serve.0.take().unwrap();
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let out = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("lore serve stops on SIGTERM")
        .unwrap()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("telegram"), "{logs}");
    assert!(
        !logs.contains(fake.token.split_once(':').unwrap().1),
        "token in the logs"
    );
}
