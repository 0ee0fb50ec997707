//! The `lore` binary's contract, which evaluation scripts and people depend on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn lore(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(args)
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_TENANT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "lore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn corpus(dir: &Path) {
    std::fs::write(
        dir.join("tea.md"),
        "# 茶\n\n## 乌龙茶\n\n乌龙茶是一种半发酵茶，主要产自福建和台湾。\n\n## 绿茶\n\n绿茶不发酵，龙井是有名的绿茶。\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rust.txt"),
        "The borrow checker enforces Rust's ownership rules at compile time.",
    )
    .unwrap();
}

/// A data dir with the corpus ingested; the temp dirs live as long as the returned guards.
fn ingested() -> (tempfile::TempDir, tempfile::TempDir) {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    stdout(&lore(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
        None,
    ));
    (docs, data)
}

#[test]
fn search_json_lines_carry_the_documented_fields() {
    let (_docs, data) = ingested();

    let out = stdout(&lore(
        data.path(),
        &["search", "乌龙茶产自哪里", "--json", "-k", "2"],
        None,
    ));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["rank"], 1);
    assert!(first["score"].as_f64().unwrap() > 0.0);
    assert!(first["source"].as_str().unwrap().ends_with("tea.md"));
    assert!(first["page"].is_null());
    assert_eq!(first["heading"], "茶 > 乌龙茶");
    assert!(first["text"].as_str().unwrap().contains("福建"));
    assert!(first.get("query").is_none());
}

#[test]
fn search_ranks_distinct_sections_and_chunks_on_request() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // One long section (many chunks about 乌龙茶) next to two short ones.
    let long: String = (1..=12)
        .map(|i| format!("乌龙茶的第{i}种制法要经过萎凋、做青和烘焙，乌龙茶因此香气浓郁。"))
        .collect();
    std::fs::write(
        docs.path().join("tea.md"),
        format!("# 茶\n\n## 乌龙茶\n\n{long}\n\n## 绿茶\n\n绿茶不发酵，乌龙茶半发酵。\n\n## 红茶\n\n红茶全发酵，和乌龙茶不同。\n"),
    )
    .unwrap();
    stdout(&lore(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
        None,
    ));
    let headings = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["search", "乌龙茶的制法", "--json", "-k", "3"];
        args.extend_from_slice(extra);
        stdout(&lore(data.path(), &args, None))
            .lines()
            .map(|l| {
                let hit: serde_json::Value = serde_json::from_str(l).unwrap();
                hit["heading"].as_str().unwrap().to_owned()
            })
            .collect()
    };

    let sections = headings(&[]);
    assert_eq!(sections.len(), 3, "{sections:?}");
    assert_eq!(sections[0], "茶 > 乌龙茶");
    let distinct: std::collections::HashSet<_> = sections.iter().collect();
    assert_eq!(distinct.len(), 3, "one hit per section: {sections:?}");

    let chunks = headings(&["--chunks"]);
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    assert!(
        chunks.iter().all(|h| h == "茶 > 乌龙茶"),
        "raw chunks come from the long section: {chunks:?}"
    );
}

#[test]
fn batch_search_numbers_queries_by_line() {
    let (_docs, data) = ingested();
    let out = stdout(&lore(
        data.path(),
        &["search", "--batch", "-", "--json", "-k", "1"],
        Some("borrow checker\n\n龙井是什么茶\n"),
    ));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["query"], 0);
    assert!(lines[0]["source"].as_str().unwrap().ends_with("rust.txt"));
    // Line 1 is blank: numbering follows the file's lines.
    assert_eq!(lines[1]["query"], 2);
    assert!(lines[1]["source"].as_str().unwrap().ends_with("tea.md"));
}

#[test]
fn ask_cites_sources_and_admits_ignorance() {
    let (_docs, data) = ingested();
    let out = stdout(&lore(data.path(), &["ask", "乌龙茶产自哪里？"], None));
    assert!(out.contains("未配置大语言模型"), "{out}");
    assert!(out.contains("[1]") && out.contains("tea.md"), "{out}");
    let out = stdout(&lore(
        data.path(),
        &["ask", "How do I rotate TLS certificates?"],
        None,
    ));
    assert!(out.contains("could not find"), "{out}");
    assert!(!out.contains("Sources:"), "{out}");
}

#[test]
fn sources_forget_and_stats() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let out = stdout(&lore(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
        None,
    ));
    assert!(out.contains("ingested 2 files"), "{out}");
    // Sources are named relative to the folder ingested.
    let tea = "tea.md";
    let out = stdout(&lore(data.path(), &["sources"], None));
    assert!(out.contains(tea), "{out}");
    assert!(!out.contains(docs.path().to_str().unwrap()), "{out}");
    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&lore(data.path(), &["stats", "--json"], None))).unwrap();
    assert_eq!(stats["sources"], 2);
    assert!(stats["bytes_on_disk"].as_u64().unwrap() > 0);
    stdout(&lore(data.path(), &["forget", tea], None));
    let stats: serde_json::Value =
        serde_json::from_str(&stdout(&lore(data.path(), &["stats", "--json"], None))).unwrap();
    assert_eq!(stats["sources"], 1);
    // Forgetting what is not there is an error that names it.
    let out = lore(data.path(), &["forget", "nope.md"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.md"));
}

#[test]
fn chat_reads_questions_from_a_pipe_and_uses_the_previous_question() {
    let (_docs, data) = ingested();
    let out = stdout(&lore(
        data.path(),
        &["chat"],
        Some("乌龙茶产自哪里？\n详细说说\n"),
    ));
    assert_eq!(out.matches("Sources:").count(), 2, "{out}");
}

#[test]
fn a_bad_setting_is_one_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(["stats"])
        .env("LORE_STORE__DATA_DIR", data.path())
        .env("LORE_RETRIEVAL__MODE", "telepathy")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retrieval.mode") || err.contains("mode"),
        "{err}"
    );
}

#[test]
fn chat_conversation_resumes_after_a_restart() {
    let (_docs, data) = ingested();
    let chat = |id: &str, line: &str| {
        stdout(&lore(
            data.path(),
            &["chat", "--conversation", id],
            Some(&format!("{line}\n")),
        ))
    };
    assert!(chat("tea", "乌龙茶产自哪里？").contains("Sources:"));
    // A new process: the follow-up ("tell me more") matches nothing alone, so it only finds
    // sources with the remembered question.
    let resumed = chat("tea", "详细说说");
    assert!(resumed.contains("Sources:"), "{resumed}");
    let fresh = chat("other", "详细说说");
    assert!(!fresh.contains("Sources:"), "{fresh}");
    assert!(chat("tea", "/reset").contains("cleared"));
    assert!(!chat("tea", "详细说说").contains("Sources:"));
}

/// `lore check-config` checks what `lore serve` checks: a misspelt key or provider, a bad
/// shard range or guild id, each reported with the key and what is allowed.
#[test]
fn check_config_refuses_misspelt_keys_and_providers() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good = write(
        "good.toml",
        "[llm]\nprovider = \"openai\"\ntemperature = 0.3\n",
    );
    let provider = write("provider.toml", "[llm]\nprovider = \"opneai\"\n");
    let key = write("key.toml", "[llm]\ntempreture = 0.3\n");
    let shards = write("shards.toml", "[discord]\nshards = \"4-2/8\"\n");
    let guild = write("guild.toml", "[discord]\nguild_id = \"my-server\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(["check-config", &good, &provider, &key, &shards, &guild])
        .env_remove("LORE_LLM__PROVIDER")
        .output()
        .unwrap();
    assert!(!out.status.success(), "bad files must fail the check");
    let report = String::from_utf8_lossy(&out.stdout);
    let line = |path: &str| {
        report
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("no line for {path}: {report}"))
            .to_owned()
    };
    assert!(line(&good).ends_with(": OK"), "{report}");
    let p = line(&provider);
    assert!(
        p.contains("opneai") && p.contains("openai") && p.contains("zhipu"),
        "{p}"
    );
    let k = line(&key);
    assert!(k.contains("tempreture") && k.contains("temperature"), "{k}");
    assert!(line(&shards).contains("discord.shards"), "{report}");
    assert!(line(&guild).contains("discord.guild_id"), "{report}");
}

/// The model is found from any working directory: by default it lives in the per-user
/// data directory, not beside the checkout.
#[test]
fn the_model_is_found_from_another_working_directory() {
    let installed = lore_core::embed::local::default_model_path();
    if !installed.is_file() {
        eprintln!(
            "skipped: no local model at {} (scripts/fetch-model.sh installs it)",
            installed.display()
        );
        return;
    }
    let data_home = tempfile::tempdir().unwrap();
    let models = data_home.path().join("lore/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(&installed, models.join("e5-small-q4.bin")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(["stats", "--json"])
        .current_dir(elsewhere.path())
        .env("XDG_DATA_HOME", data_home.path())
        .env("LORE_STORE__DATA_DIR", data.path())
        .env_remove("LORE_EMBEDDING__MODEL_PATH")
        .env_remove("LORE_EMBEDDING__PROVIDER")
        .output()
        .unwrap();
    let text = stdout(&out);
    let stats: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(stats["dense_embedder"], "e5-small-q4/384", "{text}");
}

/// A SIGTERM during start-up (after the handlers are in, while the knowledge base opens)
/// ends `lore serve` cleanly: exit code 0, the store flushed, never death by the signal.
#[test]
fn sigterm_during_start_up_is_a_clean_stop() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lore"))
        .arg("serve")
        .env("LORE_STORE__DATA_DIR", data.path())
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_HTTP__LISTEN", "127.0.0.1:0")
        .env("LORE_HTTP_TOKENS", "start-up-test-token:team:read")
        .env("LORE_LOG", "warn,lore=debug")
        .env_remove("DISCORD_TOKEN")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    // Never leave a server behind when the test fails before it is stopped.
    let leftover = KillOnDrop(pid);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let patience = std::time::Duration::from_secs(120);
    let mut log = Vec::new();
    loop {
        let line = lines
            .recv_timeout(patience)
            .unwrap_or_else(|_| panic!("no start-up line; log so far: {log:#?}"));
        let ready = line.contains("stop signals handled");
        log.push(line);
        if ready {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done
        .recv_timeout(patience)
        .expect("lore serve stops on SIGTERM")
        .unwrap();
    std::mem::forget(leftover);
    log.extend(lines.try_iter());
    assert!(status.success(), "{status:?}; log: {log:#?}");
}

/// Kills a process by id when dropped (a test that panics drops it).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// No output shows where the server keeps the files: sources are named by their path
/// relative to the folder ingested (or their file name), titles and configured links
/// shown, and a store written by an older lore (absolute names) reads the same way.
#[test]
fn sources_are_named_relative_to_the_folder_ingested_never_by_server_path() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(docs.path().join("guide")).unwrap();
    std::fs::write(
        docs.path().join("guide").join("tea.md"),
        "# 茶经\n\n## 乌龙茶\n\n乌龙茶是一种半发酵茶，主要产自福建和台湾。\n",
    )
    .unwrap();
    let single = tempfile::tempdir().unwrap();
    let rust = single.path().join("rust.txt");
    std::fs::write(
        &rust,
        "The borrow checker enforces Rust's ownership rules at compile time.",
    )
    .unwrap();
    let config = single.path().join("links.toml");
    std::fs::write(
        &config,
        "[answer.source_links]\n\"guide/\" = \"https://git.example/kb/blob/main/guide/\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let secret = |out: &str| {
        assert!(!out.contains(docs.path().to_str().unwrap()), "{out}");
        assert!(!out.contains(single.path().to_str().unwrap()), "{out}");
    };
    let out = stdout(&lore(
        data.path(),
        &[
            "ingest",
            docs.path().to_str().unwrap(),
            rust.to_str().unwrap(),
        ],
        None,
    ));
    secret(&out);
    let out = stdout(&lore(data.path(), &["sources"], None));
    secret(&out);
    assert!(
        out.contains("guide/tea.md") && out.contains("rust.txt"),
        "{out}"
    );
    let out = stdout(&lore(data.path(), &["sources", "--json"], None));
    secret(&out);
    let out = stdout(&lore(
        data.path(),
        &["--config", config, "ask", "乌龙茶产自哪里？"],
        None,
    ));
    secret(&out);
    assert!(
        out.contains(
            "[1] 茶经 (guide/tea.md) · 乌龙茶 <https://git.example/kb/blob/main/guide/tea.md>"
        ),
        "{out}"
    );
    let out = stdout(&lore(
        data.path(),
        &["--config", config, "ask", "--json", "乌龙茶产自哪里？"],
        None,
    ));
    secret(&out);
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["citations"][0]["source"], "guide/tea.md");
    assert_eq!(answer["citations"][0]["title"], "茶经");
    assert_eq!(
        answer["citations"][0]["url"],
        "https://git.example/kb/blob/main/guide/tea.md"
    );
    let out = stdout(&lore(
        data.path(),
        &["search", "--json", "borrow checker"],
        None,
    ));
    secret(&out);
    let hit: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(hit["source"], "rust.txt");

    // Ingesting the folder again replaces nothing and duplicates nothing.
    let out = stdout(&lore(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
        None,
    ));
    secret(&out);
    let out = stdout(&lore(data.path(), &["sources"], None));
    assert_eq!(out.lines().count(), 2, "{out}");
    stdout(&lore(data.path(), &["forget", "guide/tea.md"], None));
    let out = stdout(&lore(data.path(), &["sources"], None));
    assert_eq!(out.lines().count(), 1, "{out}");
}
