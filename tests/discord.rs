//! The Discord adapter end to end: the real serenity client against a local Discord
//! (tests/support/discord_fake.rs), feeding the real core (App + Engine, BM25-only, with or
//! without a local OpenAI-compatible model).

#[path = "support/discord_fake.rs"]
mod discord_fake;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use discord_fake::{BOT_ID, FakeDiscord, MANAGE_GUILD, Posted, User, shard_of};
use lore::settings::Settings;
use lore_core::bot::Engine;
use lore_core::kb::KnowledgeBase as App;
use lore_core::store::TenantScope;
use lore_discord::{DiscordSettings, ShardRange};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const GUILD_A: u64 = 2_000 << 22;
const GUILD_B: u64 = 3_000 << 22;
const GENERAL_A: u64 = 11;
const KNOWLEDGE_A: u64 = 12;
const GENERAL_B: u64 = 21;
const ROLE_MOD: u64 = 501;
const ROLE_LIBRARIAN: u64 = 502;

const TEA: &str = "# Tea\n\n## Oolong\n\nOolong is a partly oxidised tea, grown mostly in Fujian and Taiwan.\n\n## Green tea\n\nGreen tea is not oxidised; Longjing and Biluochun are famous green teas.\n";

/// A running bot: the fake Discord, the core it feeds, and the way to stop it.
struct Bot {
    fake: FakeDiscord,
    app: Arc<App>,
    engine: Engine,
    stop: Option<oneshot::Sender<()>>,
    /// None once a test awaited the client itself.
    running: Option<tokio::task::JoinHandle<Result<(), lore_discord::DiscordError>>>,
    _data: tempfile::TempDir,
}

impl Bot {
    async fn start(llm: Option<&str>) -> Self {
        Self::start_with(llm, false).await
    }

    async fn start_with(llm: Option<&str>, answer_in_thread: bool) -> Self {
        let fake = FakeDiscord::start(1).await;
        let data = tempfile::tempdir().unwrap();
        let mut pairs = vec![
            (
                "LORE_STORE__DATA_DIR",
                data.path().to_str().unwrap().to_owned(),
            ),
            ("LORE_EMBEDDING__PROVIDER", "none".to_owned()),
        ];
        if let Some(url) = llm {
            pairs.extend([
                ("LORE_LLM__PROVIDER", "openai".to_owned()),
                ("LORE_LLM__BASE_URL", url.to_owned()),
                ("LORE_LLM__MODEL", "test-model".to_owned()),
                (
                    "LORE_LLM__API_KEY_ENV",
                    "LORE_TEST_DISCORD_LLM_KEY".to_owned(),
                ),
            ]);
            // The key comes from the environment, as in production.
            unsafe { std::env::set_var("LORE_TEST_DISCORD_LLM_KEY", "sk-test") };
        }
        let mut settings =
            Settings::load(None, pairs.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap();
        settings.bot.questions_per_user_per_minute = 1000;
        settings.bot.questions_per_channel_per_minute = 1000;
        // Configured admin roles are the core's rule; the adapter only reports roles.
        settings.bot.admin_roles = vec!["Librarian".into()];
        let app = Arc::new(App::open(settings.knowledge()).await.unwrap());
        let engine = Engine::open(app.clone(), settings.bot.clone()).unwrap();
        let handler = Arc::new(engine.clone());
        let discord = DiscordSettings {
            api_base: Some(fake.api_base.clone()),
            answer_in_thread,
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(lore_discord::run(
            discord,
            "test-token".into(),
            handler,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        fake.wait_shards(1).await;
        Self {
            fake,
            app,
            engine,
            stop: Some(stop),
            running: Some(running),
            _data: data,
        }
    }

    /// Stops the client, checks it ended cleanly, and closes the core before its data
    /// directory goes away.
    async fn stop(mut self) {
        self.stopped().await;
        // serenity's shard tasks let go of the handler (and with it the core) shortly after.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while Arc::strong_count(self.engine.core()) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.engine.shutdown().await.unwrap();
        self.app.store.commit().await.unwrap();
        drop(self.engine);
        drop(self.app);
        drop(self._data);
    }

    /// Asks the client to stop (unless already asked) and waits until it returned, cleanly.
    async fn stopped(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            let ended = tokio::time::timeout(Duration::from_secs(60), running)
                .await
                .expect("the client stops when asked");
            ended.unwrap().unwrap();
        }
    }

    /// Waits for the bot's complete answer to message `question` in `channel`: every part
    /// posted from the reply on, once the last carries the sources or a reason.
    async fn answer_to(&self, channel: u64, question: u64) -> Vec<Posted> {
        self.fake
            .wait_for(&format!("the answer to {question}"), |s| {
                let messages = s.bot_messages(channel);
                let start = messages.iter().position(|m| m.reply_to == Some(question))?;
                let parts = messages[start..].to_vec();
                finished(parts.last()?).then_some(parts)
            })
            .await
    }

    /// Waits for the completed response of the interaction with `token`.
    async fn response_to(&self, token: &str) -> Vec<Posted> {
        self.response_until(token, finished).await
    }

    /// Waits until the last part of the interaction's response satisfies `done`.
    async fn response_until(&self, token: &str, done: fn(&Posted) -> bool) -> Vec<Posted> {
        self.fake
            .wait_for(&format!("the response to {token}"), |s| {
                let parts = s.interaction_messages(token);
                done(parts.last()?).then_some(parts)
            })
            .await
    }

    /// Waits until `query` finds (or no longer finds) `needle` in `tenant`'s knowledge.
    async fn search_until(
        &self,
        tenant: &str,
        query: &str,
        needle: &str,
        present: bool,
    ) -> Vec<String> {
        let scope = TenantScope::only(tenant);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let hits = self
                .app
                .retriever
                .search(&scope, query, None, 5)
                .await
                .unwrap()
                .hits;
            let found: Vec<String> = hits
                .iter()
                .filter(|h| h.chunk.text.contains(needle))
                .map(|h| h.chunk.source.clone())
                .collect();
            if found.is_empty() != present {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{needle} {} in {tenant}'s knowledge",
                if present {
                    "never appeared"
                } else {
                    "never went away"
                }
            );
            // The knowledge sync has no signal the test can observe; poll the store.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// True when a reply is final: sources listed, or a reason given.
fn finished(last: &Posted) -> bool {
    let c = &last.content;
    !c.ends_with('…')
        && (c.contains("Sources:")
            || c.starts_with("⚠️")
            || c.contains("could not find")
            || c.contains("knowledge channel")
            || c.contains('✓')
            || c.contains('✗'))
}

fn mention(text: &str) -> String {
    format!("<@{BOT_ID}> {text}")
}

fn option(name: &str, value: Value, kind: u8) -> Value {
    json!({"name": name, "type": kind, "value": value})
}

/// Every message and edit the bot sent allowed no mentions at all.
fn assert_no_mentions_allowed(messages: &[Posted]) {
    for m in messages {
        for allowed in &m.allowed_mentions {
            assert_eq!(allowed["parse"], json!([]), "{allowed} on {m:?}");
            assert_eq!(allowed["users"], json!([]), "{allowed}");
            assert_eq!(allowed["roles"], json!([]), "{allowed}");
            assert_eq!(allowed["replied_user"], json!(false), "{allowed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mentions_slash_commands_admins_and_knowledge_channels() {
    let bot = Bot::start(None).await;
    let fake = &bot.fake;
    // READY registered the commands globally.
    let commands = fake.seen(|s| s.commands.clone());
    assert_eq!(commands[0].0, None);
    for name in [
        "ask",
        "ingest",
        "forget",
        "sources",
        "reset",
        "knowledge-channel",
        "help",
    ] {
        assert!(
            commands[0].1.iter().any(|c| c == name),
            "{name} not registered"
        );
    }
    // Only the intents lore needs: guild messages, DMs, message content.
    assert_eq!(
        fake.seen(|s| s.intents[0]),
        (1 << 9) | (1 << 12) | (1 << 15)
    );
    assert_eq!(fake.seen(|s| s.tokens[0].clone()), "Bot test-token");

    fake.add_role(GUILD_A, ROLE_MOD, "Moderator", MANAGE_GUILD);
    fake.add_role(GUILD_A, ROLE_LIBRARIAN, "Librarian", 0);
    let alice = User::new(101, "alice").with_role(ROLE_MOD);
    let bob = User::new(102, "bob");
    let carol = User::new(103, "carol").with_role(ROLE_LIBRARIAN);

    // /ingest of an attachment: refused for a plain member, done for an admin.
    let file = fake.add_file("tea.md", TEA.as_bytes(), "text/markdown");
    let options = vec![option("file", file["id"].clone(), 11)];
    let refused = fake.slash(
        GUILD_A,
        GENERAL_A,
        &bob,
        0,
        "ingest",
        options.clone(),
        vec![file.clone()],
    );
    let reply = bot.response_to(&refused).await;
    assert!(reply[0].content.contains("only an admin"), "{reply:?}");
    let token = fake.slash(
        GUILD_A,
        GENERAL_A,
        &alice,
        MANAGE_GUILD,
        "ingest",
        options,
        vec![file],
    );
    let reply = bot.response_to(&token).await;
    assert!(reply[0].content.contains("✓ tea.md"), "{reply:?}");
    // Every interaction was deferred (type 5) before it was answered.
    let callbacks = fake.seen(|s| s.callbacks.clone());
    assert_eq!(callbacks.len(), 2);
    assert!(
        callbacks.iter().all(|(_, kind)| *kind == 5),
        "{callbacks:?}"
    );
    let token = fake.slash(GUILD_A, GENERAL_A, &bob, 0, "sources", vec![], vec![]);
    let reply = bot.response_until(&token, |m| !m.content.is_empty()).await;
    assert!(reply[0].content.contains("tea.md"), "{reply:?}");

    // Type and size are checked before anything is downloaded.
    let mut big = fake.add_file("big.md", b"# big", "text/markdown");
    big["size"] = json!(200 << 20);
    let tool = fake.add_file("tool.exe", b"MZ", "application/octet-stream");
    let options = vec![option("file", big["id"].clone(), 11)];
    let token = fake.slash(
        GUILD_A,
        GENERAL_A,
        &alice,
        MANAGE_GUILD,
        "ingest",
        options,
        vec![big],
    );
    let reply = bot.response_to(&token).await;
    assert!(reply[0].content.contains("larger than"), "{reply:?}");
    let options = vec![option("file", tool["id"].clone(), 11)];
    let token = fake.slash(
        GUILD_A,
        GENERAL_A,
        &alice,
        MANAGE_GUILD,
        "ingest",
        options,
        vec![tool],
    );
    let reply = bot.response_to(&token).await;
    assert!(
        reply[0].content.contains("not a supported file type"),
        "{reply:?}"
    );
    let fetched = fake.seen(|s| s.requests.clone());
    assert!(
        fetched
            .iter()
            .all(|r| !r.contains("big.md") && !r.contains("tool.exe")),
        "{fetched:?}"
    );
    assert!(fetched.iter().any(|r| r == "GET /attachments/tea.md"));

    // A mention is answered as a reply, with sources, and the typing indicator shows.
    let question = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    let answer = bot.answer_to(GENERAL_A, question).await;
    let text: String = answer.iter().map(|m| m.content.as_str()).collect();
    assert!(text.contains("Fujian"), "{text}");
    assert!(
        text.contains("Sources:") && text.contains("tea.md"),
        "{text}"
    );
    // The typing indicator went out before the answer.
    let requests = fake.seen(|s| s.requests.clone());
    let typing = requests
        .iter()
        .position(|r| *r == format!("POST /api/v10/channels/{GENERAL_A}/typing"));
    let reply = requests
        .iter()
        .position(|r| *r == format!("POST /api/v10/channels/{GENERAL_A}/messages"));
    assert!(typing.is_some() && typing < reply, "{requests:?}");

    // A reply to the bot's answer is addressed too.
    let follow = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        "And which green teas are famous?",
        vec![],
        Some(answer[0].id),
    );
    let answer = bot.answer_to(GENERAL_A, follow).await;
    assert!(
        answer.iter().any(|m| m.content.contains("Longjing")),
        "{answer:?}"
    );

    // Over a mention, Manage Server comes from the member's roles.
    let refused = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("/ingest \"The boiler code is 4471.\""),
        vec![],
        None,
    );
    let reply = bot.answer_to(GENERAL_A, refused).await;
    assert!(reply[0].content.contains("only an admin"), "{reply:?}");
    let allowed = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &alice,
        &mention("/ingest \"The boiler code is 4471.\""),
        vec![],
        None,
    );
    let reply = bot.answer_to(GENERAL_A, allowed).await;
    assert!(reply[0].content.contains('✓'), "{reply:?}");
    bot.search_until(&GUILD_A.to_string(), "boiler code", "4471", true)
        .await;

    // A plain message nobody addressed to the bot gets no answer.
    let chatter = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        "oolong is nice",
        vec![],
        None,
    );

    // /ask is deferred and then completed by the response.
    let token = fake.slash(
        GUILD_A,
        GENERAL_A,
        &bob,
        0,
        "ask",
        vec![option("question", json!("Where is oolong grown?"), 3)],
        vec![],
    );
    let reply = bot.response_to(&token).await;
    assert!(
        reply[0].content.contains("Fujian") && reply[0].content.contains("Sources:"),
        "{reply:?}"
    );
    assert_eq!(fake.seen(|s| s.callbacks.len()), 6);
    assert!(fake.seen(|s| {
        s.bot_messages(GENERAL_A)
            .iter()
            .all(|m| m.reply_to != Some(chatter))
    }));

    // Another guild sees none of guild A's knowledge.
    let dave = User::new(201, "dave");
    let question = fake.post(
        Some(GUILD_B),
        GENERAL_B,
        &dave,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    let answer = bot.answer_to(GENERAL_B, question).await;
    assert!(answer[0].content.contains("could not find"), "{answer:?}");
    assert!(!answer[0].content.contains("Fujian"));

    // Knowledge channel: a post from before is backfilled from the channel's history once
    // an admin (by a configured role name) turns the channel on.
    let old = fake.post(
        Some(GUILD_A),
        KNOWLEDGE_A,
        &bob,
        "The kiln is fired every Thursday.",
        vec![],
        None,
    );
    let token = fake.slash(
        GUILD_A,
        KNOWLEDGE_A,
        &carol,
        0,
        "knowledge-channel",
        vec![option("mode", json!("on"), 3)],
        vec![],
    );
    let reply = bot.response_to(&token).await;
    assert!(
        reply[0].content.contains("now a knowledge channel"),
        "{reply:?}"
    );
    let sources = bot
        .search_until(&GUILD_A.to_string(), "kiln Thursday", "kiln", true)
        .await;
    assert_eq!(
        sources,
        [format!(
            "https://discord.com/channels/{GUILD_A}/{KNOWLEDGE_A}/{old}"
        )]
    );

    // New posts, edits and deletes are synced live.
    let post = fake.post(
        Some(GUILD_A),
        KNOWLEDGE_A,
        &bob,
        "The guest wifi password is lantern-42.",
        vec![],
        None,
    );
    let sources = bot
        .search_until(
            &GUILD_A.to_string(),
            "guest wifi password",
            "lantern-42",
            true,
        )
        .await;
    let jump = format!("https://discord.com/channels/{GUILD_A}/{KNOWLEDGE_A}/{post}");
    assert_eq!(sources, std::slice::from_ref(&jump));
    fake.edit(
        GUILD_A,
        KNOWLEDGE_A,
        post,
        &bob,
        "The guest wifi password is harbor-77.",
    );
    bot.search_until(
        &GUILD_A.to_string(),
        "guest wifi password",
        "harbor-77",
        true,
    )
    .await;
    bot.search_until(
        &GUILD_A.to_string(),
        "guest wifi password",
        "lantern-42",
        false,
    )
    .await;

    // A question cites the post with its jump link.
    let question = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("What is the guest wifi password?"),
        vec![],
        None,
    );
    let answer = bot.answer_to(GENERAL_A, question).await;
    let text: String = answer.iter().map(|m| m.content.as_str()).collect();
    assert!(text.contains("harbor-77") && text.contains(&jump), "{text}");

    fake.delete(GUILD_A, KNOWLEDGE_A, post);
    bot.search_until(
        &GUILD_A.to_string(),
        "guest wifi password",
        "harbor-77",
        false,
    )
    .await;
    // Guild B never saw any of it.
    let b = bot
        .app
        .retriever
        .search(
            &TenantScope::only(&GUILD_B.to_string()),
            "kiln Thursday oolong",
            None,
            5,
        )
        .await
        .unwrap();
    assert!(b.hits.is_empty(), "{:?}", b.hits.len());

    // /forget removes a source, for admins.
    let token = fake.slash(
        GUILD_A,
        GENERAL_A,
        &alice,
        MANAGE_GUILD,
        "forget",
        vec![option("source", json!("tea.md"), 3)],
        vec![],
    );
    let reply = bot.response_until(&token, |m| !m.content.is_empty()).await;
    assert!(reply[0].content.contains("Forgot tea.md"), "{reply:?}");
    bot.search_until(&GUILD_A.to_string(), "oolong Fujian", "Fujian", false)
        .await;

    assert_no_mentions_allowed(&fake.seen(|s| s.posted.clone()));
    bot.stop().await;
}

/// An OpenAI-compatible model that streams `reply` in pieces.
async fn streaming_llm(reply: String) -> String {
    let chars: Vec<char> = reply.chars().collect();
    let pieces: Vec<String> = chars.chunks(300).map(|p| p.iter().collect()).collect();
    let fake = lore_testkit::FakeOpenAi::start().await;
    fake.respond_with(move |request| match request.is_stream() {
        true => lore_testkit::Reply::stream(&pieces),
        false => lore_testkit::Reply::text(request.last_message()),
    });
    fake.base_url()
}

/// An OpenAI-compatible model whose streamed answers wait until `release()`.
async fn held_llm(reply: &'static str) -> lore_testkit::FakeOpenAi {
    let fake = lore_testkit::FakeOpenAi::start().await;
    fake.respond_with(move |request| match request.is_stream() {
        true => lore_testkit::Reply::stream(&[reply]).hold_after(0),
        false => lore_testkit::Reply::text(reply),
    });
    fake
}

/// Waits (generously) until the fake model has been asked for a streamed answer.
async fn until_a_stream_is_asked(fake: &lore_testkit::FakeOpenAi) {
    tokio::time::timeout(Duration::from_secs(120), async {
        while !fake.requests().iter().any(|r| r.is_stream()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the model is asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_waits_for_the_answers_under_way() {
    let model = held_llm("Oolong is grown in Fujian and Taiwan [1].").await;
    let mut bot = Bot::start(Some(&model.base_url())).await;
    ingest_tea(&bot.app, GUILD_A).await;
    let bob = User::new(102, "bob");
    let question = bot.fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    until_a_stream_is_asked(&model).await;
    // Shutdown while the model holds the answer: the gateway closes first.
    let _ = bot.stop.take().unwrap().send(());
    bot.fake
        .wait_for("the gateway closed", |s| {
            s.connected_shards().is_empty().then_some(())
        })
        .await;
    model.release();
    bot.stopped().await;
    // The client returned only after the answer under way was delivered.
    let answer = bot.fake.seen(|s| {
        let messages = s.bot_messages(GENERAL_A);
        let start = messages.iter().position(|m| m.reply_to == Some(question));
        start.map(|i| messages[i..].to_vec()).unwrap_or_default()
    });
    assert!(
        answer.last().is_some_and(finished),
        "the answer was not delivered before the client returned: {answer:?}"
    );
    assert!(
        answer.iter().any(|m| m.content.contains("Fujian")),
        "{answer:?}"
    );
    bot.stop().await;
}

/// Ingests the tea notes into `guild`'s knowledge.
async fn ingest_tea(app: &App, guild: u64) {
    let docs = tempfile::tempdir().unwrap();
    let path = docs.path().join("tea.md");
    std::fs::write(&path, TEA).unwrap();
    app.ingestor
        .ingest(
            &[path.display().to_string()],
            &guild.to_string(),
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_answers_are_split_at_2000_characters_and_mention_nobody() {
    let paragraph = "Oolong is grown in Fujian and Taiwan, rolled, bruised and partly oxidised before it is fired. ";
    let body: Vec<String> = (0..8)
        .map(|i| format!("Part {i}: {}", paragraph.repeat(6)))
        .collect();
    let reply = format!("@everyone listen: {} [1]", body.join("\n\n"));
    assert!(reply.chars().count() > 4500);
    let url = streaming_llm(reply).await;
    let bot = Bot::start(Some(&url)).await;
    ingest_tea(&bot.app, GUILD_A).await;
    let bob = User::new(102, "bob");
    let question = bot.fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    let parts = bot.answer_to(GENERAL_A, question).await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for part in &parts {
        for version in &part.versions {
            assert!(
                version.chars().count() <= 2000,
                "{} characters",
                version.chars().count()
            );
            assert!(
                !version.contains("@everyone"),
                "a live @everyone: {version}"
            );
        }
    }
    // Only the first part replies to the question; the text arrives whole, in order.
    assert_eq!(parts[0].reply_to, Some(question));
    assert!(parts[1..].iter().all(|p| p.reply_to.is_none()));
    let text: String = parts
        .iter()
        .map(|p| p.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut at = 0;
    for i in 0..8 {
        let found = text[at..]
            .find(&format!("Part {i}:"))
            .unwrap_or_else(|| panic!("Part {i} missing or out of order"));
        at += found;
    }
    assert!(text.contains("@\u{200B}everyone"), "{text}");
    assert!(parts.last().unwrap().content.contains("Sources:"));

    // Through /ask: the deferred response holds the first part, follow-ups the rest.
    let token = bot.fake.slash(
        GUILD_A,
        13,
        &bob,
        0,
        "ask",
        vec![option("question", json!("Where is oolong grown?"), 3)],
        vec![],
    );
    let parts = bot
        .response_until(&token, |m| m.content.contains("Sources:"))
        .await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    assert!(
        parts
            .iter()
            .flat_map(|p| &p.versions)
            .all(|v| v.chars().count() <= 2000)
    );
    let followups = bot.fake.seen(|s| {
        s.requests
            .iter()
            .filter(|r| r.starts_with("POST /api/v10/webhooks/"))
            .count()
    });
    assert_eq!(followups, parts.len() - 1);
    assert_no_mentions_allowed(&bot.fake.seen(|s| s.posted.clone()));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_malformed_events_refusals_and_a_dropped_gateway() {
    let bot = Bot::start(None).await;
    let fake = &bot.fake;
    let bob = User::new(102, "bob");

    // A malformed event is dropped; the next one is handled.
    fake.raw_dispatch(
        GUILD_A,
        "MESSAGE_CREATE",
        json!({"id": "not a snowflake", "content": 7}),
    );
    fake.raw_dispatch(
        GUILD_A,
        "INTERACTION_CREATE",
        json!({"type": 2, "data": null}),
    );
    let question = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("hello?"),
        vec![],
        None,
    );
    bot.answer_to(GENERAL_A, question).await;

    // A DM is answered in the DM channel, with the user as the tenant.
    let dm_channel = 77;
    let question = fake.post(
        None,
        dm_channel,
        &bob,
        "Where is oolong grown?",
        vec![],
        None,
    );
    let answer = bot.answer_to(dm_channel, question).await;
    assert!(answer[0].content.contains("could not find"), "{answer:?}");

    // Discord refuses the reply form (400): the answer still arrives, as a plain message.
    let refusing = 31;
    fake.refuse_replies_in(refusing);
    let question = fake.post(
        Some(GUILD_A),
        refusing,
        &bob,
        &mention("hello again?"),
        vec![],
        None,
    );
    let plain = fake
        .wait_for("a plain fallback", |s| {
            let m = s.bot_messages(refusing);
            (!m.is_empty() && finished(m.last().unwrap())).then_some(m)
        })
        .await;
    assert!(plain.iter().all(|m| m.reply_to.is_none()), "{plain:?}");
    let _ = question;

    // A 429 is waited out and the answer still arrives.
    let limited = 33;
    fake.rate_limit_once(limited);
    let question = fake.post(
        Some(GUILD_A),
        limited,
        &bob,
        &mention("hello there?"),
        vec![],
        None,
    );
    bot.answer_to(limited, question).await;
    let hits = fake.seen(|s| {
        s.requests
            .iter()
            .filter(|r| **r == format!("POST /api/v10/channels/{limited}/messages"))
            .count()
    });
    assert_eq!(hits, 2, "one 429, one success");

    // A channel where the bot may not write (403): nothing is posted, nothing breaks.
    let forbidden = 32;
    fake.forbid(forbidden);
    fake.post(
        Some(GUILD_A),
        forbidden,
        &bob,
        &mention("anyone?"),
        vec![],
        None,
    );

    // The gateway drops; the client resumes its session, and an event sent meanwhile is
    // replayed and answered.
    let before = fake.seen(|s| s.identifies.len());
    fake.drop_connection(0);
    let missed = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("are you back?"),
        vec![],
        None,
    );
    fake.wait_for("a RESUME", |s| s.resumes.first().copied())
        .await;
    bot.answer_to(GENERAL_A, missed).await;
    assert_eq!(
        fake.seen(|s| s.identifies.len()),
        before,
        "resumed, not re-identified"
    );
    assert!(fake.seen(|s| s.bot_messages(forbidden).is_empty()));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_in_a_thread_when_configured() {
    let bot = Bot::start_with(None, true).await;
    ingest_tea(&bot.app, GUILD_A).await;
    let fake = &bot.fake;
    let bob = User::new(102, "bob");
    let question = fake.post(
        Some(GUILD_A),
        GENERAL_A,
        &bob,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    let (thread, parent, starter, name) = fake
        .wait_for("a thread", |s| s.threads.first().cloned())
        .await;
    assert_eq!((parent, starter), (GENERAL_A, question));
    assert_eq!(name, "Where is oolong grown?");
    let answer = fake
        .wait_for("the answer in the thread", |s| {
            let m = s.bot_messages(thread);
            (!m.is_empty() && finished(m.last().unwrap())).then_some(m)
        })
        .await;
    assert!(answer[0].content.contains("Fujian"), "{answer:?}");
    assert!(fake.seen(|s| s.bot_messages(GENERAL_A).is_empty()));

    // A follow-up inside the thread is answered there; no second thread.
    let follow = fake.post(
        Some(GUILD_A),
        thread,
        &bob,
        &mention("And which green teas are famous?"),
        vec![],
        None,
    );
    let answer = bot.answer_to(thread, follow).await;
    assert!(
        answer.iter().any(|m| m.content.contains("Longjing")),
        "{answer:?}"
    );
    assert_eq!(fake.seen(|s| s.threads.len()), 1);

    // Where Discord refuses a thread, the answer is a reply in the channel.
    fake.refuse_threads_in(GENERAL_B);
    let question = fake.post(
        Some(GUILD_A),
        GENERAL_B,
        &bob,
        &mention("Where is oolong grown?"),
        vec![],
        None,
    );
    let answer = bot.answer_to(GENERAL_B, question).await;
    assert!(answer[0].content.contains("Fujian"), "{answer:?}");
    bot.stop().await;
}

/// A core that must never be reached.
struct NoEvents;

impl lore_chat::ChatHandler for NoEvents {
    fn submit(
        &self,
        event: lore_chat::IncomingEvent,
        _: Arc<dyn lore_chat::ReplySink>,
    ) -> lore_chat::Handled {
        panic!("no event expected, got {event:?}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_message_content_intent_stops_with_a_clear_error() {
    let fake = FakeDiscord::start(1).await;
    fake.deny_intents();
    let settings = DiscordSettings {
        api_base: Some(fake.api_base.clone()),
        ..Default::default()
    };
    let run = lore_discord::run(
        settings,
        "test-token".into(),
        Arc::new(NoEvents),
        None,
        std::future::pending(),
    );
    let error = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client gives up")
        .unwrap_err();
    assert!(
        matches!(
            error,
            lore_discord::DiscordError::MessageContentIntentDenied
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("Message Content Intent"),
        "{error}"
    );
}

#[test]
fn shard_ranges_use_the_documented_syntax() {
    let r: ShardRange = "0-3/8".parse().unwrap();
    assert_eq!((r.first, r.last, r.total), (0, 3, 8));
    assert!("4-8/8".parse::<ShardRange>().is_err());
}

/// `lore serve` with a shard range, its own data dir and its own token; its log goes to
/// `data/<token>.log`.
fn serve(
    fake: &FakeDiscord,
    data: &Path,
    token: &str,
    shards: &str,
) -> (Child, std::path::PathBuf) {
    let log = data.join(format!("{token}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(["serve", "--discord-shards", shards])
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_DISCORD__API_BASE", &fake.api_base)
        // The flag wins over the setting.
        .env("LORE_DISCORD__SHARDS", "0-3/4")
        .env("DISCORD_TOKEN", token)
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("LORE_HTTP__LISTEN")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// Sends SIGTERM, waits for a clean exit, and returns the process's log.
async fn terminate((mut child, log): (Child, std::path::PathBuf)) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(exit.success(), "lore serve failed: {log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_with_disjoint_shard_ranges_each_get_only_their_guilds() {
    let fake = FakeDiscord::start(4).await;
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(&fake, data_a.path(), "token-a", "0-1/4");
    let b = serve(&fake, data_b.path(), "token-b", "2-3/4");
    fake.wait_for("four identified shards from two processes", |s| {
        (s.connected_shards().len() == 4 && s.commands.len() == 2).then_some(())
    })
    .await;
    let mut identified: Vec<(u32, u32, String)> = fake.seen(|s| {
        s.identifies
            .iter()
            .zip(&s.tokens)
            .map(|((shard, total), token)| (*shard, *total, token.clone()))
            .collect()
    });
    identified.sort();
    assert_eq!(
        identified,
        [
            (0, 4, "Bot token-a".to_owned()),
            (1, 4, "Bot token-a".to_owned()),
            (2, 4, "Bot token-b".to_owned()),
            (3, 4, "Bot token-b".to_owned()),
        ]
    );
    // One guild per shard; each question is answered once, by the process owning its shard.
    let bob = User::new(102, "bob");
    let guilds: Vec<u64> = (0..4u64).map(|k| (4_000 + k) << 22).collect();
    let mut questions = Vec::new();
    for (i, guild) in guilds.iter().enumerate() {
        let channel = 100 + i as u64;
        questions.push((
            channel,
            fake.post(
                Some(*guild),
                channel,
                &bob,
                &mention("Where is oolong grown?"),
                vec![],
                None,
            ),
        ));
    }
    for (i, (channel, question)) in questions.iter().enumerate() {
        let answers = fake
            .wait_for(&format!("the answer in guild {i}"), |s| {
                let m = s.bot_messages(*channel);
                (!m.is_empty() && finished(m.last().unwrap())).then_some(m)
            })
            .await;
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].reply_to, Some(*question));
        let owner = if shard_of(guilds[i], 4) < 2 {
            "Bot token-a"
        } else {
            "Bot token-b"
        };
        assert_eq!(
            answers[0].auth, owner,
            "guild {i} answered by the wrong process"
        );
    }
    let log_a = terminate(a).await;
    let log_b = terminate(b).await;
    assert!(
        !log_a.contains("token-a") && !log_b.contains("token-b"),
        "a token was logged"
    );
}
