//! `lore eval` end to end on a small set in the CMRC 2018 shape (tests/fixtures/qa_small.json:
//! ten passages, three questions each), sparse-only so no model file is needed.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const CMRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qa_small.json");

fn lore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(args)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_TENANT")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "lore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn results(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn retrieval_on_a_cmrc_shaped_slice_finds_known_passages() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let printed = ok(lore(&[
        "eval",
        "retrieval",
        "--qa",
        CMRC,
        "--limit",
        "12",
        "--mode",
        "sparse",
        "--k",
        "1,5",
        "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(printed.contains("recall@1"), "{printed}");
    let r = results(&dir);
    assert_eq!(r["cases"].as_array().unwrap().len(), 12);
    // The first questions are about the first passage, and BM25 puts it first.
    assert_eq!(r["cases"][0]["id"], "FIX_0_QUERY_0");
    assert_eq!(r["cases"][0]["gold"], "p0000");
    assert_eq!(r["cases"][0]["rank"], 1);
    assert_eq!(r["recall"]["1"].as_f64(), Some(1.0));
    assert!(r["mrr"].as_f64().unwrap() > 0.99);
    assert!(r["ndcg@10"].as_f64().is_some());
    // Every passage is indexed, not only the slice's four: the others are distractors.
    assert!(r["config"]["chunks"].as_u64().unwrap() >= 10);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Misses at k = 5 (0)"), "{report}");
    assert!(
        std::fs::read_to_string(dir.join("recall.svg"))
            .unwrap()
            .contains("<svg")
    );
}

#[test]
fn a_sweep_over_two_chunk_sizes_writes_two_separate_stores() {
    let out = tempfile::tempdir().unwrap();
    let printed = ok(lore(&[
        "eval",
        "sweep",
        "--qa",
        CMRC,
        "--limit",
        "30",
        "--chunk-sizes",
        "100,400",
        "--modes",
        "sparse,hybrid",
        "--embedders",
        "none",
        "--k",
        "1,5",
        "--keep-stores",
        "--out",
        out.path().to_str().unwrap(),
    ]));
    assert!(
        printed.contains("| none | 100 | 10 | sparse ref×5 |"),
        "{printed}"
    );
    assert!(
        printed.contains("| none | 400 | 40 | sparse ref×5 |"),
        "{printed}"
    );
    let sweep: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("sweep.json")).unwrap())
            .unwrap();
    let stores: Vec<&str> = sweep["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(stores.len(), 2);
    assert_ne!(stores[0], stores[1]);
    for store in &stores {
        assert!(Path::new(store).join("knowledge").is_dir(), "{store}");
    }
    // Each store holds only its own chunking: smaller chunks, more of them.
    let cells = sweep["cells"].as_array().unwrap();
    assert_eq!(
        cells.len(),
        2,
        "hybrid without an embedder is skipped, not repeated"
    );
    let chunks: Vec<u64> = cells
        .iter()
        .map(|c| c["config"]["chunks"].as_u64().unwrap())
        .collect();
    assert!(chunks[0] > chunks[1], "{chunks:?}");
    let skipped = sweep["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2);
    assert!(out.path().join("recall.svg").is_file());
    assert!(
        out.path()
            .join("cells/100-10-none-sparse-ref5/results.json")
            .is_file()
    );

    // The two cells compare, and the changed cases are listed.
    let compared = ok(lore(&[
        "eval",
        "compare",
        out.path()
            .join("cells/100-10-none-sparse-ref5")
            .to_str()
            .unwrap(),
        out.path()
            .join("cells/400-40-none-sparse-ref5")
            .to_str()
            .unwrap(),
    ]));
    assert!(compared.contains("| recall@5 |"), "{compared}");
    assert!(compared.contains("Cases whose rank changed"), "{compared}");
}

#[test]
fn an_existing_store_is_evaluated_in_place() {
    let data = tempfile::tempdir().unwrap();
    let doc = data.path().join("notes.md");
    std::fs::write(&doc, "# 部署\n\nlore 的数据目录由 store.data_dir 决定。\n").unwrap();
    let store = data.path().join("kb");
    let out = Command::new(env!("CARGO_BIN_EXE_lore"))
        .args([
            "--data-dir",
            store.to_str().unwrap(),
            "ingest",
            doc.to_str().unwrap(),
        ])
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .output()
        .unwrap();
    ok(out);
    let qa = data.path().join("qa.jsonl");
    std::fs::write(
        &qa,
        "{\"query\":\"数据目录由什么决定\",\"source\":\"notes.md\"}\n",
    )
    .unwrap();
    let run = data.path().join("run");
    ok(lore(&[
        "eval",
        "retrieval",
        "--qa",
        qa.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]));
    let r = results(&run);
    assert_eq!(r["cases"][0]["rank"], 1);
    assert_eq!(r["config"]["store"], store.to_str().unwrap());

    // A store without the tenant's chunks is refused, not scored as all misses.
    let out = lore(&[
        "--tenant",
        "someone-else",
        "eval",
        "retrieval",
        "--qa",
        qa.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no chunks for tenant \"someone-else\""),
        "{err}"
    );
}

#[test]
fn a_garbled_validation_set_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path().join("broken.jsonl");
    std::fs::write(&qa, "not json\n").unwrap();
    let out = lore(&["eval", "retrieval", "--qa", qa.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.jsonl") && err.contains("line 1"),
        "{err}"
    );
}

/// An OpenAI-compatible fake: the answering model cites [1], the support check says yes,
/// and the seven-dimension judge replies with garbage.
async fn fake_llm() -> String {
    let fake = lore_testkit::FakeOpenAi::start().await;
    fake.respond_with(|request| {
        let system = request.system();
        lore_testkit::Reply::text(if system.contains("You grade answers") {
            "Great answer!!! 9/10"
        } else if system.contains("supports the sentence") {
            r#"{"supported": true}"#
        } else {
            "答案见资料[1]。"
        })
    });
    fake.base_url()
}

#[tokio::test]
async fn answers_are_scored_and_a_garbage_judge_reply_fails_only_its_case() {
    let base = fake_llm().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("answers");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lore"));
    command
        .args([
            "eval", "answers", "--qa", CMRC, "--limit", "3", "--mode", "sparse",
        ])
        .args(["--out", dir.to_str().unwrap()])
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_LLM__PROVIDER", "openai")
        .env("LORE_LLM__BASE_URL", &base)
        .env("LORE_EVAL__JUDGE__PROVIDER", "openai")
        .env("LORE_EVAL__JUDGE__BASE_URL", &base)
        .env("LORE_EVAL__JUDGE__RETRY_BUDGET_SECS", "0")
        // The model's own citations are what the judge grades here: lore's attribution
        // (which finds "答案见资料" in no passage) is off at support threshold 0.
        .env("LORE_ANSWER__SUPPORT_THRESHOLD", "0")
        .env_remove("OPENAI_API_KEY");
    // The fake serves from this runtime while the binary runs on a blocking thread.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    ok(output);
    let r = results(&dir);
    let a = &r["answers"];
    assert_eq!(a["cases"].as_array().unwrap().len(), 3);
    assert_eq!(a["judge_failures"], 3, "{a}");
    assert_eq!(a["answer_failures"], 0, "{a}");
    assert!(
        a["cases"][0]["judge_error"]
            .as_str()
            .unwrap()
            .contains("not the requested JSON")
    );
    // The answer cites [1], which exists and (says the fake) supports it.
    assert_eq!(a["faithfulness"].as_f64(), Some(1.0), "{a}");
    assert_eq!(a["dangling_citations"], 0);
    // "答案见资料" shares no run with the reference spans: F1 is low but computed.
    assert!(a["f1"].as_f64().unwrap() < 0.5);
    assert!(a["bleu"].as_f64().is_some());
    assert!(dir.join("scores.svg").is_file());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Answers (3 by openai:"), "{report}");
    // CMRC is not multiple choice, even where an answer is an acronym.
    assert!(a["choice"].is_null());
}

/// `lore eval attribution` on a page-based set (the tutorial's format, 0-based pages):
/// answers written from a page are supported by it and not by another case's page.
#[test]
fn attribution_tells_an_answers_own_page_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path().join("pages.json");
    let set = serde_json::json!([
        {"query": "什么是过拟合？", "page_num": 4,
         "answer": "学习器把训练样本自身的特点当作所有样本的一般性质，这种现象称为过拟合。"},
        {"query": "什么是版本空间？", "page_num": 3,
         "answer": "与训练集一致的假设集合称为版本空间。"},
        {"query": "线性回归学什么？", "page_num": 6,
         "answer": "线性回归试图学得一个线性模型，以尽可能准确地预测实值输出标记。"},
    ]);
    std::fs::write(&qa, set.to_string()).unwrap();
    let book = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cjk_book.pdf");
    let out = ok(lore(&[
        "eval",
        "attribution",
        "--qa",
        qa.to_str().unwrap(),
        "--corpus",
        book,
        "--page-base",
        "0",
        "--json",
    ]));
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["cases"], 3, "{result}");
    assert_eq!(result["judged"], 3, "{result}");
    let row = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| (r["threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6)
        .unwrap();
    assert_eq!(row["supported_by_gold"], 1.0, "{result}");
    assert_eq!(row["supported_by_other"], 0.0, "{result}");
    // Without the book the pages are unknown: a clear error, not an empty table.
    let out = lore(&["eval", "attribution", "--qa", qa.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--corpus"));
}
