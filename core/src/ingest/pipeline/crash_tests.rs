//! A crash at any step of storing a document loses nothing finished and duplicates nothing.
//! A crash is simulated by copying the store directory at the faulting step (a kill -9
//! leaves exactly the files' contents at that moment; the engine does not replay its WAL)
//! and stopping the ingest there. The copy is then opened and the same ingest run again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::write::{FaultHook, Step};
use super::{Ingestor, SourceOutcome};
use crate::embed::bm25::Bm25Encoder;
use crate::ingest::IngestSettings;
use crate::ingest::document::{DocKind, Document, Section};
use crate::progress::Quiet;
use crate::store::embedded::EmbeddedStore;
use crate::store::{KnowledgeStore, SearchRequest, StoreError, StoreQuery, TenantScope};

const TENANT: &str = "t";
const QUERIES: [&str; 4] = ["topic3 rivers", "sentence 17", "lanterns", "harbour topic5"];

fn settings() -> IngestSettings {
    let mut settings: IngestSettings = crate::test_defaults::section("ingest");
    // Small chunks, so one file needs several write batches.
    settings.chunk_size = 60;
    settings.chunk_overlap = 0;
    settings
}

/// Five files; `version` 2 makes one shorter, one longer, and changes another.
fn corpus(version: u32) -> Vec<(&'static str, String)> {
    let sentences = |n: usize, word: &str| -> String {
        (0..n)
            .map(|i| format!("Sentence {i} about topic{} {word}.", i % 13))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (b, c) = match version {
        1 => (sentences(700, "rivers"), sentences(5, "lanterns")),
        _ => (sentences(300, "harbour rivers"), sentences(400, "lanterns")),
    };
    vec![
        (
            "a.txt",
            "A short note about lanterns and rivers.".to_owned(),
        ),
        ("b.txt", b),
        ("c.txt", c),
        (
            "d.txt",
            format!("Version {version} of the notes on harbours."),
        ),
        ("e.txt", sentences(40, "harbour")),
    ]
}

fn write_corpus(dir: &Path, version: u32) -> Vec<String> {
    corpus(version)
        .into_iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        })
        .collect()
}

fn open(dir: &Path) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir, None).unwrap())
}

fn ingestor(store: &Arc<EmbeddedStore>, hook: Option<FaultHook>) -> Ingestor {
    let mut ingestor = Ingestor::new(
        store.clone(),
        None,
        Arc::new(Bm25Encoder::new()),
        &settings(),
    );
    // Flush after every file, so "finished" and "durable" are the same moment here.
    ingestor.flush_every = std::time::Duration::ZERO;
    match hook {
        Some(hook) => ingestor.with_fault_hook(hook),
        None => ingestor,
    }
}

/// What a user sees, by file name: sources with chunk counts, and every chunk each query
/// matches (all of them, so ties in score cannot reorder what is compared).
#[derive(Debug, PartialEq)]
struct Seen {
    sources: BTreeMap<String, usize>,
    results: Vec<Vec<(String, u32, String)>>,
}

fn file_name(source: &str) -> String {
    Path::new(source)
        .file_name()
        .map_or(source.to_owned(), |n| n.to_string_lossy().into_owned())
}

async fn seen(store: &EmbeddedStore) -> Seen {
    let scope = TenantScope::only(TENANT);
    let sources = store
        .sources(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (file_name(&s.source), s.chunks))
        .collect();
    let bm25 = Bm25Encoder::new();
    let mut results = Vec::new();
    for query in QUERIES {
        let hits = store
            .search(SearchRequest {
                scope: scope.clone(),
                query: StoreQuery::Sparse(bm25.query(query)),
                limit: 10_000,
                candidates: 10_000,
                with_vectors: false,
            })
            .await
            .unwrap();
        let mut matched: Vec<_> = hits
            .into_iter()
            .map(|h| (file_name(&h.chunk.source), h.chunk.index, h.chunk.text))
            .collect();
        matched.sort();
        results.push(matched);
    }
    Seen { sources, results }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The clean result of ingesting `version` of the corpus (all of it) once.
async fn clean_run(version: u32) -> Seen {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let inputs = write_corpus(docs.path(), version);
    let store = open(data.path());
    ingestor(&store, None)
        .ingest(&inputs, TENANT, &Quiet)
        .await
        .unwrap();
    seen(&store).await
}

/// Fails the `nth` time (from 1) `step` is reached, after copying the store as a kill
/// would leave it; counts the flushes that went through before.
struct Crash {
    step: Step,
    nth: usize,
    reached: AtomicUsize,
    flushed: AtomicUsize,
    live: std::path::PathBuf,
    left: std::path::PathBuf,
    fired: Mutex<bool>,
}

impl Crash {
    fn hook(self: &Arc<Self>) -> FaultHook {
        let crash = self.clone();
        Arc::new(move |step| {
            if step == crash.step && crash.reached.fetch_add(1, Ordering::SeqCst) + 1 == crash.nth {
                copy_dir(&crash.live, &crash.left);
                *crash.fired.lock().unwrap() = true;
                return Err(StoreError::internal(format!("injected crash at {step:?}")));
            }
            if step == Step::BeforeFlush {
                crash.flushed.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    }
}

const FAULTS: [(Step, usize); 8] = [
    (Step::Deleted, 1),
    (Step::Deleted, 2),
    (Step::Batch, 1),
    (Step::Batch, 2),
    (Step::BeforeHead, 2),
    (Step::BeforeHead, 3),
    (Step::BeforeFlush, 1),
    (Step::BeforeFlush, 3),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_then_the_same_ingest_gives_the_clean_result() {
    let clean = Arc::new([clean_run(1).await, clean_run(2).await]);
    // Fresh: version 1 into an empty store. Replacing: version 2 over a stored version 1.
    // The cases are independent; run together, they wait for the disk together.
    let cases = futures::future::join_all(
        [false, true]
            .into_iter()
            .flat_map(|replacing| FAULTS.map(|(step, nth)| (replacing, step, nth)))
            .map(|(replacing, step, nth)| {
                tokio::spawn(crash_case(replacing, step, nth, clean.clone()))
            }),
    )
    .await;
    for case in cases {
        case.unwrap();
    }
}

async fn crash_case(replacing: bool, step: Step, nth: usize, clean: Arc<[Seen; 2]>) {
    let case = format!("crash at {step:?} #{nth}, replacing: {replacing}");
    let docs = tempfile::tempdir().unwrap();
    let live = tempfile::tempdir().unwrap();
    let left = tempfile::tempdir().unwrap();
    let mut inputs = write_corpus(docs.path(), 1);
    let version = if replacing {
        let store = open(live.path());
        ingestor(&store, None)
            .ingest(&inputs, TENANT, &Quiet)
            .await
            .unwrap();
        inputs = write_corpus(docs.path(), 2);
        2
    } else {
        1
    };
    let crash = Arc::new(Crash {
        step,
        nth,
        reached: AtomicUsize::new(0),
        flushed: AtomicUsize::new(0),
        live: live.path().to_owned(),
        left: left.path().to_owned(),
        fired: Mutex::new(false),
    });
    {
        let store = open(live.path());
        let result = ingestor(&store, Some(crash.hook()))
            .ingest(&inputs, TENANT, &Quiet)
            .await;
        assert!(result.is_err(), "{case}: the fault stops the ingest");
    }
    assert!(*crash.fired.lock().unwrap(), "{case}: the step was reached");

    let store = open(left.path());
    let after_crash = seen(&store).await;
    let expected = &clean[version as usize - 1];
    // Files the ingest leaves as they were, then those it stores, in its order.
    let (kept, stored): (Vec<_>, Vec<_>) = corpus(version)
        .into_iter()
        .zip(corpus(1))
        .map(|((name, new), (_, old))| (name, replacing && new == old))
        .partition(|(_, unchanged)| *unchanged);
    // Every file flushed before the crash is there in full, in its new version.
    let flushed = crash.flushed.load(Ordering::SeqCst);
    for (name, _) in kept.iter().chain(&stored[..flushed]) {
        assert_eq!(
            after_crash.sources.get(*name),
            expected.sources.get(*name),
            "{case}: {name} was finished before the crash"
        );
    }
    // A source whose head landed is whole (in one version or the other).
    for summary in store.sources(&TenantScope::only(TENANT)).await.unwrap() {
        if store
            .source_hash(TENANT, &summary.source)
            .await
            .unwrap()
            .is_some()
        {
            let name = file_name(&summary.source);
            let whole: Vec<usize> = clean
                .iter()
                .filter_map(|c| c.sources.get(&name).copied())
                .collect();
            assert!(
                whole.contains(&summary.chunks),
                "{case}: {name} has {} chunks",
                summary.chunks
            );
        }
    }

    let report = ingestor(&store, None)
        .ingest(&inputs, TENANT, &Quiet)
        .await
        .unwrap();
    assert!(report.unchanged >= flushed, "{case}: {report:?}");
    assert_eq!(
        &seen(&store).await,
        expected,
        "{case}: the second run ends where a clean run does"
    );
}

fn document(text: String) -> Document {
    Document {
        source: "upload.txt".into(),
        kind: DocKind::Text,
        title: None,
        sections: vec![Section {
            text,
            ..Section::default()
        }],
    }
}

/// The served case: an upload is cut off after its first batch, another request's commit
/// makes that part durable, and the process is killed. The same upload must then be stored
/// again in full, not answered "unchanged".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_cut_off_after_another_commit_is_stored_again_not_unchanged() {
    let live = tempfile::tempdir().unwrap();
    let left = tempfile::tempdir().unwrap();
    let old = corpus(1).remove(1).1;
    let new = corpus(2).remove(2).1;
    {
        let store = open(live.path());
        let first = ingestor(&store, None)
            .ingest_document(document(old), TENANT)
            .await
            .unwrap();
        assert!(matches!(first, SourceOutcome::Stored { .. }));
        store.commit().await.unwrap();
        let cut_off: FaultHook = Arc::new(|step| match step {
            Step::Batch => Err(StoreError::internal("cut off")),
            _ => Ok(()),
        });
        let cut = ingestor(&store, Some(cut_off))
            .ingest_document(document(new.clone()), TENANT)
            .await;
        assert!(cut.is_err());
        store.flush().await.unwrap();
        copy_dir(live.path(), left.path());
    }
    let store = open(left.path());
    let again = ingestor(&store, None)
        .ingest_document(document(new.clone()), TENANT)
        .await
        .unwrap();
    let SourceOutcome::Stored { chunks, .. } = again else {
        panic!("a partly stored upload was taken as unchanged");
    };
    let sources = store.sources(&TenantScope::only(TENANT)).await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].chunks, chunks, "no stale tail, no missing chunk");
    assert!(chunks > 256, "the upload needs several write batches");
}
