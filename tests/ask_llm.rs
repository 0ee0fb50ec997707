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
    // The marker names the green tea passage, wherever retrieval ranked it.
    assert_eq!(
        answer.text.replace(' ', ""),
        "龙井和碧螺春[1]。",
        "{answer:?}"
    );
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
    // The model's sentence is about machine learning: attribution cites what backs it.
    assert!(
        answer.citations.iter().all(|c| c.source.ends_with("ml.md")),
        "{:?}",
        answer.citations
    );
}

/// `lore ask --json` with a model streaming `pieces`, over the tea corpus; the answer JSON.
async fn ask_json(pieces: &[&str], question: &str, env: &[(&str, &str)]) -> Value {
    let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
    ask_json_with(move |_| pieces.clone(), question, env).await
}

/// [`ask_json`] with a model whose answer is made from the system prompt it receives.
async fn ask_json_with(
    answer: impl Fn(&str) -> Vec<String> + Send + Sync + 'static,
    question: &str,
    env: &[(&str, &str)],
) -> Value {
    let llm = FakeOpenAi::start().await;
    llm.respond_with(move |request| {
        if request.is_stream() {
            Reply::stream(&answer(request.system()))
        } else {
            Reply::text("")
        }
    });
    let url = llm.base_url();
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    corpus(docs.path());
    assert!(
        lore(
            data.path(),
            &url,
            &["ingest", docs.path().to_str().unwrap()]
        )
        .status
        .success()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lore"));
    cmd.args(["ask", "--json", question])
        .env("LORE_STORE__DATA_DIR", data.path())
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env("LORE_LLM__PROVIDER", "openai")
        .env("LORE_LLM__BASE_URL", &url)
        .env("LORE_LLM__MODEL", "test-model")
        .env("OPENAI_API_KEY", "sk-test-key")
        .env_remove("LORE_TENANT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The heading of the citation a sentence carries.
fn cited_heading(answer: &Value, sentence: usize) -> String {
    let n = answer["sentences"][sentence]["citations"][0]
        .as_u64()
        .unwrap();
    let citation = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["n"] == n)
        .unwrap();
    citation["heading"].as_str().unwrap().to_owned()
}

const BOTH: &str = "乌龙茶和绿茶有什么区别？";

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_never_cites_gets_only_the_sources_that_back_its_sentences() {
    let answer = ask_json(&["乌龙茶主要产自", "福建和台湾。"], BOTH, &[]).await;
    // Both sections were retrieved and given, but only the oolong one backs the answer.
    assert_eq!(answer["citations"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["text"], "乌龙茶主要产自福建和台湾[1]。", "{answer}");
    assert!(cited_heading(&answer, 0).contains("乌龙茶"), "{answer}");
    assert_eq!(answer["grounding"], 1.0, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citation_of_the_wrong_passage_is_corrected_and_an_unsupported_sentence_marked() {
    // The model cites each passage for the other one's claim, whatever order retrieval gave
    // them in, and adds a claim no passage makes.
    let swapped = |system: &str| {
        let number = |heading: &str| {
            system
                .lines()
                .find(|l| l.starts_with("<<<SOURCE [") && l.ends_with(heading))
                .and_then(|l| l[11..].split(']').next())
                .unwrap()
                .to_owned()
        };
        let (oolong, green) = (number("· 乌龙茶>>>"), number("· 绿茶>>>"));
        vec![
            format!("乌龙茶主要产自福建和台湾 [{green}]。"),
            format!("龙井是有名的绿茶 [{oolong}]。普洱茶产自云南 [{oolong}]。"),
        ]
    };
    let answer = ask_json_with(swapped, BOTH, &[]).await;
    let first = cited_heading(&answer, 0);
    let second = cited_heading(&answer, 1);
    assert!(
        first.contains("乌龙茶") && second.contains("绿茶"),
        "{answer}"
    );
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("普洱茶产自云南。 ⚠︎ not found in the sources"),
        "{answer}"
    );
    assert_eq!(answer["sentences"][2]["supported"], false, "{answer}");
    let grounding = answer["grounding"].as_f64().unwrap();
    assert!(grounding > 0.5 && grounding < 1.0, "{answer}");
    // Dropped instead when so configured.
    let answer = ask_json(
        &["乌龙茶主要产自福建和台湾。普洱茶产自云南。"],
        BOTH,
        &[("LORE_ANSWER__UNSUPPORTED", "drop")],
    )
    .await;
    assert_eq!(answer["text"], "乌龙茶主要产自福建和台湾[1]。", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn min_grounding_refuses_an_answer_the_sources_do_not_back() {
    let answer = ask_json(
        &["普洱茶产自云南，需要长时间存放。"],
        "乌龙茶产自哪里？",
        &[("LORE_ANSWER__MIN_GROUNDING", "0.5")],
    )
    .await;
    assert_eq!(answer["grounded"], false, "{answer}");
    assert!(
        answer["citations"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    assert!(
        answer["text"].as_str().unwrap().contains("知识库中没有"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_despite_matching_passages_offers_them_quoted() {
    let answer = ask_json(&["知识库中没有相关内容。"], "乌龙茶主要产自哪里？", &[]).await;
    let text = answer["text"].as_str().unwrap();
    assert!(text.starts_with("知识库中没有相关内容。"), "{answer}");
    assert!(text.contains("[1] “") && text.contains("福建"), "{answer}");
    assert!(cited_heading_of(&answer, 1).contains("乌龙茶"), "{answer}");
}

fn cited_heading_of(answer: &Value, n: u64) -> String {
    answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["n"] == n)
        .map(|c| c["heading"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}
