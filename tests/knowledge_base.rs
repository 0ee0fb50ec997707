//! The knowledge base end to end through the library: ingest, idempotency, replacement,
//! forgetting, tenant isolation and persistence, on the embedded Qdrant store.

use std::path::Path;

use lore::settings::Settings;
use lore_core::kb::KnowledgeBase as App;
use lore_core::store::TenantScope;

fn settings(data_dir: &Path, extra: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        (
            "LORE_STORE__DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        ),
        // Sparse-only keeps these tests independent of the model file; the model has its own tests.
        ("LORE_EMBEDDING__PROVIDER".to_owned(), "none".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(None, env).unwrap()
}

async fn open(data_dir: &Path) -> App {
    App::open(settings(data_dir, &[]).knowledge())
        .await
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const RUST_DOC: &str = "# Ownership\n\nEvery value in Rust has a single owner. When the owner goes out of scope the value is dropped.\n\n## Borrowing\n\nReferences borrow a value without taking ownership; the borrow checker enforces the rules.\n";
const TEA_DOC: &str = "乌龙茶是一种半发酵茶，主要产自福建和台湾。泡乌龙茶的水温一般在九十五度左右。\n\n绿茶不发酵，龙井和碧螺春都是有名的绿茶。";

async fn top_source(app: &App, tenant: &str, query: &str) -> Option<String> {
    let r = app
        .retriever
        .search(&TenantScope::only(tenant), query, None, 3)
        .await
        .unwrap();
    r.hits.first().map(|h| h.chunk.source.clone())
}

#[tokio::test]
async fn ingest_search_reingest_change_and_forget() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write(docs.path(), "rust.md", RUST_DOC);
    write(docs.path(), "tea.txt", TEA_DOC);
    write(docs.path(), "image.xyz", "binary-ish");
    write(
        docs.path(),
        "broken.pdf",
        "%PDF-1.7 this is not really a pdf",
    );

    let app = open(data.path()).await;
    let inputs = [docs.path().display().to_string()];
    let report = app
        .ingestor
        .ingest(&inputs, "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    assert_eq!(report.files, 2, "{report:?}");
    assert_eq!(report.unsupported.len(), 1, "{report:?}");
    assert!(report.unsupported[0].ends_with("image.xyz"));
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].0.ends_with("broken.pdf"), "{report:?}");
    let chunks_first = report.chunks;
    assert!(chunks_first >= 2);

    assert_eq!(
        top_source(&app, "t", "乌龙茶的水温").await.as_deref(),
        Some("tea.txt")
    );
    assert_eq!(
        top_source(&app, "t", "borrow checker").await.as_deref(),
        Some("rust.md")
    );
    let hits = app
        .retriever
        .search(&TenantScope::only("t"), "borrow checker", None, 1)
        .await
        .unwrap();
    assert_eq!(
        hits.hits[0].chunk.heading.as_deref(),
        Some("Ownership > Borrowing")
    );

    // The same folder again changes nothing.
    let again = app
        .ingestor
        .ingest(&inputs, "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    assert_eq!(
        (again.files, again.unchanged, again.chunks),
        (0, 2, 0),
        "{again:?}"
    );
    let stats = app.store.stats().await.unwrap();
    assert_eq!(stats.chunks, chunks_first);

    // A changed file replaces its chunks: the old text is gone.
    write(
        docs.path(),
        "tea.txt",
        "红茶是全发酵茶，正山小种产自武夷山。",
    );
    let changed = app
        .ingestor
        .ingest(&inputs, "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    assert_eq!((changed.files, changed.unchanged), (1, 1), "{changed:?}");
    let r = app
        .retriever
        .search(&TenantScope::only("t"), "乌龙茶 水温 九十五度", None, 5)
        .await
        .unwrap();
    assert!(
        r.hits.iter().all(|h| !h.chunk.text.contains("乌龙茶")),
        "{:?}",
        r.hits
    );
    assert_eq!(
        top_source(&app, "t", "正山小种").await.as_deref(),
        Some("tea.txt")
    );

    // Forget removes a source entirely.
    let removed = app.store.delete_source("t", "tea.txt").await.unwrap();
    assert!(removed >= 1);
    let sources = app.store.sources(&TenantScope::only("t")).await.unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].source, "rust.md");
    assert_eq!(top_source(&app, "t", "正山小种").await, None);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tea = write(docs.path(), "tea.txt", TEA_DOC);
    let app = open(data.path()).await;
    app.ingestor
        .ingest(
            std::slice::from_ref(&tea),
            "team-a",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();

    assert_eq!(
        top_source(&app, "team-a", "乌龙茶").await.as_deref(),
        Some("tea.txt")
    );
    assert_eq!(top_source(&app, "team-b", "乌龙茶").await, None);
    assert!(
        app.store
            .sources(&TenantScope::only("team-b"))
            .await
            .unwrap()
            .is_empty()
    );
    // Forgetting in another tenant touches nothing.
    assert_eq!(
        app.store.delete_source("team-b", "tea.txt").await.unwrap(),
        0
    );
    assert_eq!(
        top_source(&app, "team-a", "乌龙茶").await.as_deref(),
        Some("tea.txt")
    );
    // A scope with the global tenant sees both.
    app.ingestor
        .ingest(
            &[write(docs.path(), "g.md", RUST_DOC)],
            "global",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
    let both = TenantScope::with_global("team-a", "global");
    let r = app
        .retriever
        .search(&both, "borrow checker", None, 3)
        .await
        .unwrap();
    assert!(r.hits[0].chunk.source.ends_with("g.md"));
}

#[tokio::test]
async fn knowledge_survives_a_restart() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let rust = write(docs.path(), "rust.md", RUST_DOC);
    {
        let app = open(data.path()).await;
        app.ingestor
            .ingest(
                std::slice::from_ref(&rust),
                "t",
                &lore_core::progress::Quiet,
            )
            .await
            .unwrap();
    }
    let app = open(data.path()).await;
    assert_eq!(
        top_source(&app, "t", "borrow checker").await.as_deref(),
        Some("rust.md")
    );
    let again = app
        .ingestor
        .ingest(&[rust], "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    assert_eq!(again.unchanged, 1);
}

#[tokio::test]
async fn unrelated_question_has_no_evidence() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = open(data.path()).await;
    app.ingestor
        .ingest(
            &[write(docs.path(), "tea.txt", TEA_DOC)],
            "t",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
    let scope = TenantScope::only("t");
    let related = app
        .retriever
        .search(&scope, "乌龙茶产自哪里", None, 3)
        .await
        .unwrap();
    assert!(related.evidence);
    let unrelated = app
        .retriever
        .search(&scope, "how do I configure kubernetes ingress", None, 3)
        .await
        .unwrap();
    assert!(!unrelated.evidence, "{:?}", unrelated.hits);
    let answer = lore_core::answer::extractive("how do I configure kubernetes ingress", &unrelated);
    assert!(!answer.grounded);
    assert!(answer.citations.is_empty());
}

#[tokio::test]
async fn oversized_file_is_an_error_and_others_still_go_in() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write(docs.path(), "big.txt", &"x".repeat(2 * 1024 * 1024));
    write(docs.path(), "small.md", RUST_DOC);
    let app = App::open(settings(data.path(), &[("LORE_INGEST__MAX_FILE_MIB", "1")]).knowledge())
        .await
        .unwrap();
    let report = app
        .ingestor
        .ingest(
            &[docs.path().display().to_string()],
            "t",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
    assert_eq!(report.files, 1, "{report:?}");
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].0.ends_with("big.txt"));
}

#[tokio::test]
async fn store_built_with_one_embedder_refuses_another() {
    let data = tempfile::tempdir().unwrap();
    drop(open(data.path()).await);
    let dir = data.path().join("knowledge");
    let err = lore_core::store::embedded::EmbeddedStore::open(&dir, Some(("some-model".into(), 8)))
        .err()
        .expect("mismatched embedder must not open");
    let msg = err.to_string();
    assert!(
        msg.contains("sparse-only") && msg.contains("some-model"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_known_question_finds_its_page_in_the_chinese_booklet() {
    // tests/fixtures/cjk_book.pdf: Chinese in a font without a ToUnicode map, page 2 blank.
    let pdf = lore_testkit::fixture("cjk_book.pdf").display().to_string();
    let data = tempfile::tempdir().unwrap();
    let app = open(data.path()).await;
    let report = app
        .ingestor
        .ingest(&[pdf], "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.pages, 6, "{report:?}");
    let scope = TenantScope::only("t");
    // Section 1.2 ("假设空间" and "版本空间") is on page 4 as a PDF viewer numbers it.
    let r = app
        .retriever
        .search(&scope, "什么是假设空间和版本空间", None, 3)
        .await
        .unwrap();
    assert!(r.evidence);
    assert!(
        r.hits.iter().any(|h| h.chunk.page == Some(4)),
        "{:?}",
        r.hits.iter().map(|h| h.chunk.page).collect::<Vec<_>>()
    );
    // Chapter 3 (linear models) opens on page 7.
    let r = app
        .retriever
        .search(&scope, "线性回归如何预测实值输出标记", None, 1)
        .await
        .unwrap();
    assert_eq!(r.hits[0].chunk.page, Some(7));
}

#[tokio::test]
async fn hybrid_search_with_the_local_model_matches_across_languages() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/e5-small-q4.bin");
    if !Path::new(model).is_file() {
        println!("local model not installed (scripts/fetch-model.sh): this test did not run");
        return;
    }
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tea = write(docs.path(), "tea.txt", TEA_DOC);
    let rust = write(docs.path(), "rust.md", RUST_DOC);
    let settings = settings(
        data.path(),
        &[
            ("LORE_EMBEDDING__PROVIDER", "local"),
            ("LORE_EMBEDDING__MODEL_PATH", model),
        ],
    );
    let app = App::open(settings.knowledge()).await.unwrap();
    assert_eq!(app.store.dense_dimension(), Some(384));
    app.ingestor
        .ingest(&[tea, rust], "t", &lore_core::progress::Quiet)
        .await
        .unwrap();
    let scope = TenantScope::only("t");
    // An English question about a Chinese passage: only the dense side can match it.
    for mode in [
        lore_core::retrieve::SearchMode::Dense,
        lore_core::retrieve::SearchMode::Hybrid,
    ] {
        let r = app
            .retriever
            .search(&scope, "Which regions produce oolong tea?", Some(mode), 2)
            .await
            .unwrap();
        assert_eq!(r.mode, mode);
        assert_eq!(r.hits[0].chunk.source, "tea.txt", "{mode:?}");
        assert!(r.hits[0].dense.as_ref().is_some_and(|v| v.len() == 384));
    }
}

#[tokio::test]
async fn a_question_naming_an_equation_finds_the_page_that_holds_it() {
    let docs = tempfile::tempdir().unwrap();
    // A page of derivations: every word of the question but the equation's number, and
    // the number's parts (13, 6) apart.
    let derivations = write(
        docs.path(),
        "derivations.md",
        "# 式(3.11)的推导\n\n式(3.11)的推导思路如下：先推导出凸性，再推导出式(3.11)，最后解释其含义。\
         第13行与第6行的推导说明了每一步的含义，推导出的式子含义清楚。\n",
    );
    let holder = write(
        docs.path(),
        "semi_supervised.md",
        "# 13.2.6 高斯混合的均值\n\n对µi求偏导并令其为零，整理即得式(13.6)。\n",
    );
    let question = "请根据以下提供的上下文信息，推导出式(13.6)并解释其含义。";
    let top = |weight: &'static str| {
        let (docs, data) = (
            vec![derivations.clone(), holder.clone()],
            tempfile::tempdir().unwrap(),
        );
        async move {
            let settings = settings(data.path(), &[("LORE_RETRIEVAL__REFERENCE_WEIGHT", weight)]);
            let app = App::open(settings.knowledge()).await.unwrap();
            app.ingestor
                .ingest(&docs, "t", &lore_core::progress::Quiet)
                .await
                .unwrap();
            top_source(&app, "t", question).await.unwrap()
        }
    };
    assert!(top("5").await.ends_with("semi_supervised.md"));
    // Weighed like any other word, the reference loses to a page of its question's words.
    assert!(top("1").await.ends_with("derivations.md"));
}
