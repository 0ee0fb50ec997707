//! No tenant learns anything about another: 10,000 random probes by tenant "globex" through
//! the CLI, the HTTP API and the bot core, each run in two worlds that differ only in what
//! tenant "acme" stores (its secrets and 300 notes heavy with globex's own words, or one
//! unrelated note). Every result, score, count, citation and error globex sees must be the
//! same in both worlds, and none may name acme's sources or words.

#[path = "support/http.rs"]
mod support;

#[path = "support/bot.rs"]
mod scripted;

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const VICTIM: &str = "globex";
const OTHER: &str = "acme";
const VICTIM_TOKEN: &str = "admin-token-globex-0123456789";
const OTHER_TOKEN: &str = "admin-token-acme-0123456789";

/// globex's own notes (the same in both worlds).
const VICTIM_NOTES: [(&str, &str); 4] = [
    (
        "tea.md",
        "# Tea\n\nOolong tea is partly oxidised and comes from Fujian and Taiwan. \
         乌龙茶是一种半发酵茶，主要产自福建和台湾。\n",
    ),
    (
        "coffee.md",
        "# Coffee\n\nArabica coffee grows in the highlands; espresso is pressed hot water. \
         咖啡豆需要烘焙。\n",
    ),
    (
        "onboarding.md",
        "# Onboarding\n\nNew staff get a laptop, a badge and a tea mug on day one. \
         The wifi password is in the handbook.\n",
    ),
    (
        "release.md",
        "# Release\n\nThe release train leaves every Tuesday; hotfixes need two reviews.\n",
    ),
];

/// Words acme writes only in the world with secrets.
const SECRET_WORDS: [&str; 6] = [
    "zorblax",
    "quintessa",
    "蓝鲸计划",
    "launchcode",
    "moonbase",
    "hyperion",
];

/// globex's words (acme's notes repeat them, which moved globex's IDF before).
const VICTIM_WORDS: [&str; 14] = [
    "oolong",
    "tea",
    "Fujian",
    "Taiwan",
    "coffee",
    "espresso",
    "laptop",
    "badge",
    "wifi",
    "release",
    "Tuesday",
    "hotfixes",
    "乌龙茶",
    "咖啡豆",
];

const JUNK: [&str; 6] = ["the", "what", "is", "?", "和", "qwxz"];

/// One world's folders and data dir, named relative to `root` so sources are named alike.
struct World {
    root: PathBuf,
}

impl World {
    fn build(root: &Path, with_secrets: bool) -> World {
        let write = |dir: &str, name: &str, text: &str| {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join(name), text).unwrap();
        };
        for (name, text) in VICTIM_NOTES {
            write(VICTIM, name, text);
        }
        write(
            "shared",
            "handbook.md",
            "# Handbook\n\nThe office opens at nine.\n",
        );
        if with_secrets {
            write(
                OTHER,
                "secret.md",
                &format!("# Secret\n\n{}\n", SECRET_WORDS.join(" ")),
            );
            let mut rng = StdRng::seed_from_u64(7);
            for i in 0..300 {
                let words: Vec<&str> = (0..40)
                    .map(|_| *VICTIM_WORDS.choose(&mut rng).unwrap())
                    .collect();
                write(OTHER, &format!("note-{i:03}.md"), &words.join(" "));
            }
        } else {
            write(OTHER, "hello.md", "# Hello\n\nNothing to see.\n");
        }
        let world = World {
            root: root.to_owned(),
        };
        world.cli(&["--tenant", VICTIM, "ingest", VICTIM]);
        world.cli(&["--tenant", OTHER, "ingest", OTHER]);
        world.cli(&["ingest", "shared"]);
        world
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Runs the CLI in the world's folder; returns exit success, stdout and stderr.
    fn run_cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(support::lore_bin())
            .current_dir(&self.root)
            .args(["--data-dir", "data"])
            .args(args)
            .env("LORE_EMBEDDING__PROVIDER", "none")
            .env("LORE_LLM__PROVIDER", "none")
            .env("LORE_LOG", "error")
            .output()
            .expect("lore runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn cli(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run_cli(args);
        assert!(ok, "lore {args:?} failed:\n{stderr}");
        stdout
    }
}

/// A question mixing globex's words, acme's secrets and noise.
fn question(rng: &mut StdRng) -> String {
    let n = rng.random_range(1..=6);
    (0..n)
        .map(|_| match rng.random_range(0..10) {
            0..=4 => *VICTIM_WORDS.choose(rng).unwrap(),
            5..=7 => *SECRET_WORDS.choose(rng).unwrap(),
            _ => *JUNK.choose(rng).unwrap(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A source name of acme's, or one that exists nowhere.
fn other_source(rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => format!("{OTHER}/secret.md"),
        1 => format!("{OTHER}/note-{:03}.md", rng.random_range(0..300)),
        _ => format!("{OTHER}/missing-{}.md", rng.random_range(0..1000)),
    }
}

/// Fails when globex's view differs between the worlds or names anything of acme's.
fn assert_same(surface: &str, probe: &str, with_secrets: &str, without: &str) {
    if with_secrets != without {
        let (line, (a, b)) = with_secrets
            .lines()
            .zip(without.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, (with_secrets, without)));
        panic!(
            "{surface}: probe {probe:?} shows acme's content; first difference at line {line}:\n\
             with acme's secrets: {a}\nwithout:             {b}"
        );
    }
    // A question may quote a secret word back; a result or a source never may.
    let shown = with_secrets.replace(probe, "");
    for word in SECRET_WORDS.iter().copied().chain(["note-", "secret.md"]) {
        assert!(
            !shown.contains(word),
            "{surface}: probe {probe:?} revealed {word:?}: {shown}"
        );
    }
}

/// 3,000 CLI probes: searches in all modes (one batch per mode), and sources, forget and
/// the tenant's figures of stats.
fn cli_probes(worlds: &[World; 2], rng: &mut StdRng) -> usize {
    let mut probes = 0;
    for mode in ["sparse", "hybrid", "mmr"] {
        let queries: Vec<String> = (0..990).map(|_| question(rng)).collect();
        let views = worlds.each_ref().map(|w| {
            std::fs::write(w.root.join("batch.txt"), queries.join("\n")).unwrap();
            w.cli(&[
                "--tenant",
                VICTIM,
                "search",
                "--json",
                "--mode",
                mode,
                "--batch",
                "batch.txt",
            ])
        });
        assert_same("lore search", mode, &views[0], &views[1]);
        probes += queries.len();
    }
    for _ in 0..10 {
        let source = other_source(rng);
        let views = worlds.each_ref().map(|w| {
            let (ok, stdout, stderr) = w.run_cli(&["--tenant", VICTIM, "forget", &source]);
            format!(
                "{ok}\n{stdout}\n{}",
                stderr.replace(&*w.root.to_string_lossy(), "")
            )
        });
        assert_same("lore forget", &source, &views[0], &views[1]);
        probes += 1;
    }
    for args in [&["sources"][..], &["sources", "--json"]] {
        let views = worlds
            .each_ref()
            .map(|w| w.cli(&[&["--tenant", VICTIM][..], args].concat()));
        assert_same("lore sources", "", &views[0], &views[1]);
        probes += 1;
    }
    // The operator's store-wide figures (all tenants, bytes on disk) are the CLI user's to
    // see; the tenant's own are compared.
    let views = worlds.each_ref().map(|w| {
        let stats: Value =
            serde_json::from_str(&w.cli(&["--tenant", VICTIM, "stats", "--json"])).unwrap();
        json!([stats["tenant"], stats["sources"], stats["chunks"]]).to_string()
    });
    assert_same("lore stats", "", &views[0], &views[1]);
    probes + 1
}

/// globex's view of one HTTP response: status and body, minus the fresh conversation id.
fn http_view(reply: support::Reply) -> String {
    let mut json = reply.json;
    if let Some(map) = json.as_object_mut() {
        map.remove("conversation_id");
    }
    format!(
        "{} {}",
        reply.status,
        if json.is_null() {
            reply.text
        } else {
            json.to_string()
        }
    )
}

async fn http_probes(worlds: &[World; 2], rng: &mut StdRng, count: usize) {
    let tokens = format!("{VICTIM_TOKEN}:{VICTIM}:admin,{OTHER_TOKEN}:{OTHER}:admin");
    let mut servers = Vec::new();
    for world in worlds {
        let server = support::Server::start(
            &world.data(),
            None,
            &[
                ("LORE_HTTP_TOKENS", tokens.as_str()),
                ("LORE_BOT__QUESTIONS_PER_USER_PER_MINUTE", "100000"),
                ("LORE_BOT__QUESTIONS_PER_CHANNEL_PER_MINUTE", "100000"),
            ],
        )
        .await;
        servers.push(server);
    }
    let client = support::client();
    for _ in 0..count {
        let (probe, requests): (String, Vec<reqwest::RequestBuilder>) =
            match rng.random_range(0..10) {
                0..=3 => {
                    let body = json!({"query": question(rng), "top_k": rng.random_range(1..=8)});
                    let requests = servers
                        .iter()
                        .map(|s| client.post(s.url("/v1/search")).json_body(&body))
                        .collect();
                    (body.to_string(), requests)
                }
                4..=6 => {
                    let body = json!({"question": question(rng)});
                    let requests = servers
                        .iter()
                        .map(|s| client.post(s.url("/v1/ask")).json_body(&body))
                        .collect();
                    (body.to_string(), requests)
                }
                7 => {
                    // Naming the other tenant outright is refused alike in both worlds.
                    let body = json!({"query": question(rng), "tenant": OTHER});
                    let requests = servers
                        .iter()
                        .map(|s| client.post(s.url("/v1/search")).json_body(&body))
                        .collect();
                    (body.to_string(), requests)
                }
                8 => {
                    let requests = servers
                        .iter()
                        .map(|s| client.get(s.url("/v1/sources")))
                        .collect();
                    ("GET /v1/sources".to_owned(), requests)
                }
                _ => {
                    let source = other_source(rng);
                    let path = format!("/v1/sources/{}", source.replace('/', "%2F"));
                    let requests = servers
                        .iter()
                        .map(|s| client.delete(s.url(&path)))
                        .collect();
                    (source, requests)
                }
            };
        let mut views = Vec::new();
        for request in requests {
            views.push(http_view(
                support::send(request.bearer_auth(VICTIM_TOKEN)).await,
            ));
        }
        assert_same("HTTP", &probe, &views[0], &views[1]);
    }
    for mut server in servers {
        server.terminate();
        assert!(server.wait_exit().await.success());
    }
}

trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

async fn bot_probes(worlds: &[World; 2], rng: &mut StdRng, count: usize) {
    let mut platforms = Vec::new();
    for world in worlds {
        // Rate limits run on the clock, which differs between the two worlds' calls.
        let engine = scripted::engine(scripted::settings(&world.data()))
            .await
            .without_rate_limits();
        platforms.push(scripted::Platform::new(engine));
    }
    // acme is busy in the world with secrets: its conversations and answers must not show
    // in globex's figures.
    for i in 0..20 {
        let text = format!("what is {}?", SECRET_WORDS[i % SECRET_WORDS.len()]);
        platforms[0]
            .say(scripted::message(OTHER, &format!("a{i}"), "ann", &text))
            .await;
    }
    for _ in 0..count {
        let channel = format!("c{}", rng.random_range(0..4));
        // The probe is what the reply may quote back: the question, or the source named.
        let (text, probe) = match rng.random_range(0..10) {
            0..=4 => {
                let q = question(rng);
                (q.clone(), q)
            }
            5 => {
                let q = question(rng);
                (format!("/ask {q}"), q)
            }
            6 => ("/sources".to_owned(), String::new()),
            7 => ("/stats".to_owned(), String::new()),
            _ => {
                let source = other_source(rng);
                (format!("/forget {source}"), source)
            }
        };
        let mut views = Vec::new();
        for platform in &platforms {
            let event = scripted::admin(scripted::message(VICTIM, &channel, "gil", &text));
            views.push(platform.say(event).await);
        }
        assert_same("bot", &probe, &views[0], &views[1]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_probes_reveal_nothing_of_another_tenant() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let worlds = [
        World::build(dirs[0].path(), true),
        World::build(dirs[1].path(), false),
    ];
    let mut rng = StdRng::seed_from_u64(16);
    let cli = cli_probes(&worlds, &mut rng);
    let http = 3_000;
    http_probes(&worlds, &mut rng, http).await;
    bot_probes(&worlds, &mut rng, 10_000 - cli - http).await;
}
