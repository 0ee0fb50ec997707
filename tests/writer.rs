//! One writer per data dir: a second lore process is refused at once with who holds the
//! dir and what to do (the same request over the holder's HTTP API); a full disk is an
//! error, not SIGBUS; an interrupted store creation is moved aside and created afresh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for an event (a process taking the data dir, listening) before failing.
const PATIENCE: Duration = Duration::from_secs(120);

fn lore(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lore"));
    command
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_TENANT")
        .env_remove("LORE_HTTP__LISTEN")
        .env_remove("DISCORD_TOKEN")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(data: &Path, args: &[&str]) -> Output {
    lore(data).args(args).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "lore failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn docs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tea.md"),
        "# Tea\n\nOolong is a semi-oxidised tea from Fujian and Taiwan.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rust.txt"),
        "The borrow checker enforces Rust's ownership rules at compile time.",
    )
    .unwrap();
    dir
}

/// Kills a process by id when dropped, so a failed test leaves nothing running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits until the data dir's lock file names `pid` (and an HTTP address, when `http`),
/// returning the lock file's JSON.
fn wait_for_holder(data: &Path, pid: u32, http: bool, child: &mut Child) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(data.join("lore.lock"))
            && let Ok(holder) = serde_json::from_str::<serde_json::Value>(&text)
            && holder["pid"] == pid
            && (!http || holder["http"].is_string())
        {
            return holder;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the holder ended before taking the data dir: {status:?}");
        }
        assert!(
            started.elapsed() < PATIENCE,
            "pid {pid} never took the data dir"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A second `lore ingest` while another lore process has the data dir fails at once, naming
/// that process; nothing is changed, and the ingest works once the holder is gone.
#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let docs = docs();
    let data = tempfile::tempdir().unwrap();
    ok(&run(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
    ));
    // The holder: a batch search that keeps the data dir open while its stdin is open.
    let mut holder = lore(data.path())
        .args(["search", "--batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let _cleanup = KillOnDrop(holder.id());
    let pid = holder.id();
    wait_for_holder(data.path(), pid, false, &mut holder);

    let out = run(data.path(), &["ingest", docs.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("in use by another lore process"), "{err}");
    assert!(err.contains("search --batch -"), "names the command: {err}");
    assert!(
        err.contains("no HTTP API") && err.contains("stop it"),
        "{err}"
    );
    assert!(!err.contains("WAL"), "{err}");

    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let out = ok(&run(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
    ));
    assert!(out.contains("2 unchanged"), "nothing was lost: {out}");
}

/// `lore stats` while `lore serve` runs with HTTP on: the error names the server's address
/// and prints the equivalent curl requests.
#[test]
fn stats_while_serve_runs_prints_the_http_request() {
    let docs = docs();
    let data = tempfile::tempdir().unwrap();
    ok(&run(
        data.path(),
        &["ingest", docs.path().to_str().unwrap()],
    ));
    let mut serve = lore(data.path())
        .arg("serve")
        .env("LORE_HTTP__LISTEN", "127.0.0.1:0")
        .env("LORE_HTTP_TOKENS", "writer-test-token-0123:global:read")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = serve.id();
    let _cleanup = KillOnDrop(pid);
    // Drain the log so the server never blocks on a full pipe.
    let stderr = serve.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines().map_while(Result::ok) {});
    let holder = wait_for_holder(data.path(), pid, true, &mut serve);
    let address = holder["http"].as_str().unwrap().to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    let out = run(data.path(), &["stats"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&address), "{err}");
    assert!(
        err.contains(&format!(
            "curl -H \"Authorization: Bearer $LORE_TOKEN\" http://{address}/v1/sources"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("curl -s http://{address}/metrics")),
        "{err}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(serve.wait().unwrap().success());
    // The server is gone: the command works, on an intact store.
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&run(data.path(), &["stats", "--json"]))).unwrap();
    assert_eq!(stats["sources"], 2);
}

/// A store whose creation was cut off (engine files, no manifest) is moved aside, kept,
/// and created afresh; the ingest that was interrupted completes.
#[test]
fn an_interrupted_store_creation_is_moved_aside_and_the_ingest_completes() {
    let docs = docs();
    let whole = tempfile::tempdir().unwrap();
    ok(&run(
        whole.path(),
        &["ingest", docs.path().to_str().unwrap()],
    ));
    // What a creation cut off before its last step leaves: the engine's files without the
    // manifest lore writes last.
    let data = tempfile::tempdir().unwrap();
    let knowledge = data.path().join("knowledge");
    copy_dir(&whole.path().join("knowledge"), &knowledge);
    std::fs::remove_file(knowledge.join("lore-store.json")).unwrap();

    let out = run(data.path(), &["ingest", docs.path().to_str().unwrap()]);
    let text = ok(&out);
    assert!(text.contains("ingested 2 files"), "{text}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("moved them aside"), "{log}");
    let aside: Vec<PathBuf> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("knowledge.partial-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "kept for inspection, never deleted");
    assert!(aside[0].join("segments").is_dir());
    let sources = ok(&run(data.path(), &["sources"]));
    assert!(
        sources.contains("tea.md") && sources.contains("rust.txt"),
        "{sources}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A 3 MiB file system (tmpfs in a user and mount namespace of its own, so no root is
/// needed): `lore ingest` ends with exit code 1 and "disk is full", never SIGBUS; after the
/// file system grows, the same ingest succeeds; filled to the last byte, the existing store
/// refuses to open with the same message, and opens once the space is freed. Skipped where unprivileged namespaces are
/// off.
#[test]
fn a_full_disk_is_an_error_and_the_store_opens_once_space_is_freed() {
    let docs = docs();
    let mount = tempfile::tempdir().unwrap();
    let lore = env!("CARGO_BIN_EXE_lore");
    let script = format!(
        "mount -t tmpfs -o size=3m tmpfs {m} || exit 90
         {lore} ingest {d} >{m}/../out1 2>{m}/../err1; echo \"first=$?\"
         mount -o remount,size=400m {m} || exit 91
         {lore} ingest {d} >{m}/../out2 2>{m}/../err2; echo \"second=$?\"
         dd if=/dev/zero of={m}/fill bs=1M 2>/dev/null
         {lore} search oolong >{m}/../out3 2>{m}/../err3; echo \"full=$?\"
         rm {m}/fill
         {lore} search oolong >{m}/../out4 2>{m}/../err4; echo \"freed=$?\"",
        m = mount.path().join("fs").display(),
        d = docs.path().display(),
    );
    std::fs::create_dir(mount.path().join("fs")).unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("LORE_STORE__DATA_DIR", mount.path().join("fs/data"))
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_TENANT")
        .output();
    let out = match out {
        Ok(out) if out.status.code() != Some(90) && out.status.code() != Some(91) => out,
        other => {
            eprintln!("skipped: cannot mount a tmpfs in a user namespace here: {other:?}");
            return;
        }
    };
    let report = String::from_utf8_lossy(&out.stdout);
    if !report.contains("first=") {
        eprintln!(
            "skipped: no user namespace here: {report} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let read = |name: &str| std::fs::read_to_string(mount.path().join(name)).unwrap_or_default();
    assert!(report.contains("first=1"), "{report}\n{}", read("err1"));
    let err = read("err1");
    assert!(
        err.contains("disk is full") && err.contains("free space and run again"),
        "{err}"
    );
    assert!(report.contains("second=0"), "{report}\n{}", read("err2"));
    assert!(
        read("out2").contains("ingested 2 files"),
        "{}",
        read("out2")
    );
    // A store that exists, on a disk filled to the last byte: opening it even to read is
    // refused with the same message (loading maps WAL pages), and works once space is freed.
    assert!(report.contains("full=1"), "{report}\n{}", read("err3"));
    assert!(read("err3").contains("disk is full"), "{}", read("err3"));
    assert!(report.contains("freed=0"), "{report}\n{}", read("err4"));
}
