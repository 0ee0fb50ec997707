//! Answers through a language model, against a local OpenAI-compatible server on
//! 127.0.0.1 that streams like the real API: citations are checked, the evidence gate
//! keeps the model out of unanswerable questions, and follow-ups are condensed.

use lore_testkit::{FakeOpenAi, Reply};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// The fake model: it wants the test key, answers a condensing call with `condensed` and
/// streams `pieces` as the answer.
async fn fake_llm(condensed: &str, pieces: &[&str]) -> FakeOpenAi {
    let fake = FakeOpenAi::start().await;
    let condensed = condensed.to_owned();
    let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
    fake.respond_with(move |request| {
        if request.header("authorization") != Some("Bearer sk-test-key") {
            Reply::status(401, json!({"error": {"message": "bad key"}}))
        } else if request.is_stream() {
            Reply::stream(&pieces)
        } else {
            Reply::text(condensed.clone())
        }
    });
    fake
}

/// The chat requests the fake model received, as JSON bodies.
fn bodies(fake: &FakeOpenAi) -> Vec<Value> {
    fake.requests().into_iter().map(|r| r.body).collect()
}

fn corpus(dir: &Path) {
    std::fs::write(
        dir.join("tea.md"),
        "# 茶\n\n## 乌龙茶\n\n乌龙茶是一种半发酵茶，主要产自福建和台湾。\n\n## 绿茶\n\n绿茶不发酵，龙井和碧螺春都是有名的绿茶。\n",
    )
    .unwrap();
}

fn lore(data: &Path, base_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lore"))
        .args(args)
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_LLM__PROVIDER", "openai")
        .env("LORE_LLM__BASE_URL", base_url)
        .env("LORE_LLM__MODEL", "test-model")
        .env("OPENAI_API_KEY", "sk-test-key")
        .env_remove("LORE_TENANT")
        .output()
        .unwrap()
}

/// A knowledge base in `data` answering through the model at `url`, with `docs` ingested
/// for tenant "t".
async fn knowledge_base(url: &str, data: &Path, docs: &Path) -> lore_core::kb::KnowledgeBase {
    let settings = lore::settings::Settings::load(
        None,
        [
            ("LORE_STORE__DATA_DIR", data.to_str().unwrap()),
            ("LORE_EMBEDDING__PROVIDER", "none"),
            ("LORE_LLM__PROVIDER", "openai"),
            ("LORE_LLM__BASE_URL", url),
            ("LORE_LLM__API_KEY_ENV", "LORE_TEST_LLM_KEY"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    // The key comes from the environment, as in production.
    unsafe { std::env::set_var("LORE_TEST_LLM_KEY", "sk-test-key") };
    let app = lore_core::kb::KnowledgeBase::open(settings.knowledge())
        .await
        .unwrap();
    app.ingestor
        .ingest(
            &[docs.display().to_string()],
            "t",
            &lore_core::progress::Quiet,
        )
        .await
        .unwrap();
    app
}

fn system_prompt(request: &Value) -> String {
    request["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn lore_ask_streams_an_answer_whose_citations_match_the_sources() {
    let llm = fake_llm(
        "",
        &["乌龙茶主要产自", "福建和台湾 [", "1]。另见 [", "7]。"],
    )
    .await;
    let url = llm.base_url();
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let out = lore(
        data.path(),
        &url,
        &["ingest", docs.path().to_str().unwrap()],
    );
    assert!(out.status.success());

    let out = lore(data.path(), &url, &["ask", "乌龙茶产自哪里？"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("乌龙茶主要产自福建和台湾 [1]。"),
        "{stdout}"
    );
    // [7] was never a source: it is removed, never shown.
    assert!(!stdout.contains("[7]"), "{stdout}");
    assert!(
        stdout.contains("Sources:\n[1] ") && stdout.contains("tea.md"),
        "{stdout}"
    );

    let requests = bodies(&llm);
    assert_eq!(
        requests.len(),
        1,
        "one streamed call, no condensing without history"
    );
    let system = system_prompt(&requests[0]);
    assert!(
        system.contains("<<<SOURCE [1]") && system.contains("福建"),
        "{system}"
    );
    assert!(
        system.contains("不可信"),
        "the zh template fences sources as untrusted: {system}"
    );
    assert_eq!(requests[0]["stream"], json!(true));
    let last = requests[0]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"], "乌龙茶产自哪里？");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_evidence_the_model_is_not_called() {
    let llm = fake_llm("", &["should not be used"]).await;
    let url = llm.base_url();
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    lore(
        data.path(),
        &url,
        &["ingest", docs.path().to_str().unwrap()],
    );
    let out = lore(
        data.path(),
        &url,
        &["ask", "How do I rotate TLS certificates in nginx?"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("could not find"), "{stdout}");
    assert!(llm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_is_condensed_with_the_history_before_retrieval() {
    let llm = fake_llm("绿茶有哪些有名的品种？", &["龙井和碧螺春 [1]。"]).await;
    let url = llm.base_url();
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let app = knowledge_base(&url, data.path(), docs.path()).await;
    let history = [
        lore_core::answer::HistoryTurn {
            speaker: "alice".into(),
            is_bot: false,
            text: "乌龙茶产自哪里？".into(),
        },
        lore_core::answer::HistoryTurn {
            speaker: "lore".into(),
            is_bot: true,
            text: "乌龙茶主要产自福建和台湾 [1]。".into(),
        },
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = app
        .assistant
        .answer(
            &lore_core::store::TenantScope::only("t"),
            "那另一种呢？",
            &history,
            Some(tx),
        )
        .await
        .unwrap();
    let mut streamed = String::new();
    while let Ok(piece) = rx.try_recv() {
        streamed.push_str(&piece);
    }
    assert_eq!(streamed, answer.text);
    assert_eq!(answer.text, "龙井和碧螺春 [1]。");
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(answer.citations[0].heading.as_deref(), Some("茶 > 绿茶"));

    let requests = bodies(&llm);
    assert_eq!(requests.len(), 2, "condense, then answer");
    let transcript = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(transcript.contains("alice: 乌龙茶产自哪里？") && transcript.contains("那另一种呢？"));
    // The answer was grounded in the section the condensed question found.
    assert!(system_prompt(&requests[1]).contains("碧螺春"));
    // History travels with the speaker's name.
    let messages = requests[1]["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["content"] == "alice: 乌龙茶产自哪里？")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_keeps_the_users_words_when_the_model_answers_instead_of_rewriting() {
    // A small model that answers every prompt, the rewrite request included, with one sentence.
    let said = "机器学习是人工智能的一个分支。";
    let llm = fake_llm(said, &[said]).await;
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        docs.path().join("ml.md"),
        "# 机器学习\n\n## 定义\n\n机器学习是人工智能的一个分支，研究计算机怎样从数据中学习。\n\n## 监督学习\n\n监督学习从带标签的数据中学习机器学习模型。\n",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("projects.md"),
        "# 项目\n\n## 蓝鲸计划\n\n蓝鲸计划的内部代号是“深潜者”，由平台组负责。\n",
    )
    .unwrap();
    let app = knowledge_base(&llm.base_url(), data.path(), docs.path()).await;
    let history = [
        lore_core::answer::HistoryTurn {
            speaker: "alice".into(),
            is_bot: false,
            text: "什么是机器学习？".into(),
        },
        lore_core::answer::HistoryTurn {
            speaker: "lore".into(),
            is_bot: true,
            text: "机器学习是人工智能的一个分支 [1]。".into(),
        },
    ];
    let answer = app
        .assistant
        .answer(
            &lore_core::store::TenantScope::only("t"),
            "蓝鲸计划的内部代号是什么？",
            &history,
            None,
        )
        .await
        .unwrap();

    let requests = bodies(&llm);
    let prompt = system_prompt(requests.last().unwrap());
    assert!(
        prompt.contains("深潜者"),
        "the user's own words found the project page: {prompt}"
    );
    assert!(
        answer
            .citations
            .iter()
            .any(|c| c.source.ends_with("projects.md")),
        "{:?}",
        answer.citations
    );
}
