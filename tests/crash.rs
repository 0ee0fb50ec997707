//! kill -9 during `lore ingest`: what was flushed before the kill is kept, nothing is
//! duplicated, and running the same ingest again ends where one clean run does.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Enough files that an ingest lasts several of its one-second flush intervals.
const FILES: usize = 6000;
const KILLS: usize = 3;

fn lore(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lore"));
    command
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_TENANT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run(data: &Path, args: &[&str]) -> String {
    let out: Output = lore(data).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lore {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Small notes, each with a word of its own; every 200th is long enough for many chunks.
fn corpus(dir: &Path) {
    for i in 0..FILES {
        let mut text = format!(
            "Note {i} carries the code word code{i}. It is about topic{}.",
            i % 17
        );
        if i % 200 == 0 {
            for s in 0..120 {
                text.push_str(&format!(" Sentence {s} of the long note {i} on harbours."));
            }
        }
        std::fs::write(dir.join(format!("n{i:05}.txt")), text).unwrap();
    }
}

/// Sources and their chunk counts, as `lore sources --json` lists them.
fn sources(data: &Path) -> Vec<(String, u64)> {
    run(data, &["sources", "--json"])
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["source"].as_str().unwrap().to_owned(),
                v["chunks"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The hits of a few queries (each word is in exactly one note) and the total chunk count.
fn answers(data: &Path) -> (Vec<String>, u64) {
    let mut hits = Vec::new();
    for query in ["code17", "code2999", "code4000", "code5999"] {
        for line in run(data, &["search", query, "--json", "-k", "3"]).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            hits.push(format!("{query}: {} {}", v["source"], v["text"]));
        }
    }
    let stats: serde_json::Value = serde_json::from_str(&run(data, &["stats", "--json"])).unwrap();
    (hits, stats["total_chunks"].as_u64().unwrap())
}

/// Starts `lore ingest`, waits until it reports its first flush, and kills it with
/// SIGKILL. Returns the sources that flush made durable, or None if the ingest finished
/// before flushing (nothing left to interrupt).
fn ingest_killed_after_a_flush(data: &Path, docs: &Path) -> Option<u64> {
    let mut child = lore(data)
        .args(["ingest", docs.to_str().unwrap()])
        .env("LORE_LOG", "warn,lore_core::ingest=debug")
        .env("LORE_LOG_FORMAT", "json")
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut flushed = None;
    for line in stderr.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
            continue;
        };
        if event["fields"]["message"] == "ingest flushed" {
            flushed = event["fields"]["sources"].as_u64();
            break;
        }
    }
    // Child::kill is SIGKILL on Unix: no handler, no flush, as an OOM kill or power cut.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    if flushed.is_some() {
        assert!(!status.success(), "killed: {status:?}");
    }
    flushed
}

#[test]
fn kill_9_during_ingest_keeps_what_was_flushed_and_a_rerun_completes_it() {
    let docs = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let clean_dir = tempfile::tempdir().unwrap();
    run(clean_dir.path(), &["ingest", docs.path().to_str().unwrap()]);
    let clean = sources(clean_dir.path());
    assert_eq!(clean.len(), FILES);

    let data = tempfile::tempdir().unwrap();
    let mut kept = 0;
    let mut kills = 0;
    for _ in 0..KILLS {
        let Some(flushed) = ingest_killed_after_a_flush(data.path(), docs.path()) else {
            break;
        };
        kills += 1;
        let after = sources(data.path());
        // The run flushed `flushed` sources of its own on top of what earlier runs kept.
        assert!(
            after.len() as u64 >= kept + flushed,
            "kill {kills}: {} sources kept, {kept} + {flushed} were flushed",
            after.len()
        );
        // Nothing is duplicated: no source has more chunks than a clean run gives it.
        for (source, chunks) in &after {
            let whole = clean.iter().find(|(s, _)| s == source).map(|(_, c)| *c);
            assert!(
                whole.is_some_and(|w| *chunks <= w),
                "kill {kills}: {source} has {chunks} chunks, a clean run {whole:?}"
            );
        }
        eprintln!(
            "kill {kills}: {} of {FILES} sources kept ({flushed} flushed by this run)",
            after.len()
        );
        // Sources cut off mid-write (if any) are stored again, and counted, by the next run.
        kept = after.iter().filter(|entry| clean.contains(entry)).count() as u64;
    }
    assert!(kills > 0, "the ingest never flushed before it finished");

    run(data.path(), &["ingest", docs.path().to_str().unwrap()]);
    assert_eq!(sources(data.path()), clean);
    assert_eq!(answers(data.path()), answers(clean_dir.path()));
}
