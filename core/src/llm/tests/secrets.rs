//! Keys never reach logs, errors or Debug output; `.env` and the environment; settings.

use serde_json::json;

use super::fakes::{Fake, Reply};
use super::{llm, secrets, user};
use crate::embed::{EmbeddingSettings, build_vendor_embedder};
use crate::llm::openai::OpenAiChat;
use crate::llm::qianfan::QianfanChat;
use crate::llm::spark::{SparkChat, SparkCreds};
use crate::llm::{LlmError, LlmSettings, ModelOptions, Secret, Secrets, build_chat_model};

const KEYS: [(&str, &str); 7] = [
    ("OPENAI_API_KEY", "sk-LEAKCHECK-openai-1111"),
    ("ZHIPUAI_API_KEY", "LEAKCHECKid.LEAKCHECK-zhipu-secret"),
    ("QIANFAN_AK", "LEAKCHECK-qianfan-ak"),
    ("QIANFAN_SK", "LEAKCHECK-qianfan-sk"),
    ("IFLYTEK_SPARK_APP_ID", "LEAKCHECK-app"),
    ("IFLYTEK_SPARK_API_KEY", "LEAKCHECK-spark-key"),
    ("IFLYTEK_SPARK_API_SECRET", "LEAKCHECK-spark-secret"),
];

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains("LEAKCHECK"), "{what} shows a key: {text}");
}

fn opts() -> ModelOptions {
    ModelOptions {
        model: "m".into(),
        context_window: 1000,
        temperature: None,
        max_tokens: None,
        timeout: std::time::Duration::from_secs(1),
    }
}

/// A port nothing listens on: the connection is refused at once.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[tokio::test]
async fn keys_never_appear_in_errors_or_debug_output() {
    let all = secrets(&KEYS);
    // A fake that echoes whatever it was sent, as careless vendors do in error messages.
    let echo = Fake::start(Box::new(|seen| {
        let echoed = format!(
            "{} {} {}",
            seen.query,
            seen.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap())
                .unwrap_or(""),
            seen.body
        );
        Some(Reply::status(
            400,
            json!({ "error": { "message": format!("bad request: {echoed}") } }),
        ))
    }))
    .await;
    let dead = dead_url().await;
    for base in [echo.url.clone(), dead.clone()] {
        for (provider, url) in [
            ("openai", base.clone()),
            ("zhipu", base.clone()),
            ("qianfan", base.clone()),
            ("spark", format!("{}/v3.5/chat", base.replace("http", "ws"))),
        ] {
            let model = build_chat_model(
                &llm(
                    provider,
                    &url,
                    if provider == "spark" {
                        "generalv3.5"
                    } else {
                        ""
                    },
                ),
                &all,
            )
            .unwrap()
            .unwrap();
            let err = model.chat(user("hi")).await.unwrap_err();
            assert_clean(provider, &err.to_string());
            assert_clean(provider, &format!("{err:?}"));
            let err = model.chat_stream(user("hi")).await.err().unwrap();
            assert_clean(provider, &format!("{err} {err:?}"));
        }
        for provider in ["openai", "zhipu", "qianfan", "spark"] {
            let s = EmbeddingSettings {
                provider: provider.parse().unwrap(),
                base_url: Some(base.clone()),
                dimension: Some(4),
                retry_budget_secs: 0,
                ..Default::default()
            };
            let embedder = build_vendor_embedder(&s, &all).unwrap().unwrap();
            let err = embedder.embed_query("q").await.unwrap_err();
            assert_clean(provider, &format!("{err} {err:?}"));
        }
    }
    let key = |name| all.get(name).unwrap();
    let clients = [
        format!(
            "{:?}",
            OpenAiChat::new(&dead, Some(key("OPENAI_API_KEY")), opts()).unwrap()
        ),
        format!(
            "{:?}",
            crate::llm::zhipu::chat(&dead, key("ZHIPUAI_API_KEY"), opts()).unwrap()
        ),
        format!(
            "{:?}",
            QianfanChat::new(&dead, key("QIANFAN_AK"), key("QIANFAN_SK"), opts()).unwrap()
        ),
        format!(
            "{:?}",
            SparkChat::new(
                "ws://127.0.0.1:1/v3.5/chat",
                SparkCreds {
                    app_id: key("IFLYTEK_SPARK_APP_ID"),
                    api_key: key("IFLYTEK_SPARK_API_KEY"),
                    api_secret: key("IFLYTEK_SPARK_API_SECRET")
                },
                ModelOptions {
                    model: "generalv3.5".into(),
                    ..opts()
                },
            )
            .unwrap()
        ),
        format!("{all:?} {all}"),
        format!("{:?}", Secret::new("LEAKCHECK-direct")),
    ];
    for text in clients {
        assert_clean("Debug", &text);
    }
}

#[test]
fn dotenv_is_read_and_the_real_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "# keys\nLORE_LLM_TEST_FROM_FILE=file-value\nLORE_LLM_TEST_BOTH=\"file-loses\"\n",
    )
    .unwrap();
    // SAFETY: a variable name no other test reads or writes.
    unsafe { std::env::set_var("LORE_LLM_TEST_BOTH", "env-wins") };
    let secrets = Secrets::from_env_and_file(&path).unwrap();
    assert_eq!(
        secrets.get("LORE_LLM_TEST_FROM_FILE").unwrap().expose(),
        "file-value"
    );
    assert_eq!(
        secrets.get("LORE_LLM_TEST_BOTH").unwrap().expose(),
        "env-wins"
    );
    assert!(secrets.get("LORE_LLM_TEST_ABSENT").is_none());
    assert!(!format!("{secrets:?}").contains("file-value"));
    // A missing file is fine.
    assert!(Secrets::from_env_and_file(&dir.path().join("absent")).is_ok());
}

#[test]
fn a_malformed_dotenv_line_is_reported_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "GOOD=1\nBAD LINE sk-LEAKCHECK-in-a-bad-line\n").unwrap();
    let err = Secrets::from_env_and_file(&path).unwrap_err();
    assert!(err.to_string().contains(".env"), "{err}");
    assert_clean("dotenv error", &err.to_string());
}

#[test]
fn provider_none_builds_nothing_and_mistakes_are_config_errors() {
    let none = secrets(&[]);
    assert!(
        build_chat_model(&LlmSettings::default(), &none)
            .unwrap()
            .is_none()
    );
    assert!(
        build_vendor_embedder(&EmbeddingSettings::default(), &none)
            .unwrap()
            .is_none()
    );
    let err = build_chat_model(
        &LlmSettings {
            provider: "zhipu".parse().unwrap(),
            ..Default::default()
        },
        &none,
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, LlmError::Config(_)) && err.to_string().contains("ZHIPUAI_API_KEY"),
        "{err}"
    );
    let nested = LlmSettings {
        fallback: vec![LlmSettings::default()],
        ..llm("openai", "http://127.0.0.1:1", "m")
    };
    let outer = LlmSettings {
        fallback: vec![nested],
        ..llm("openai", "http://127.0.0.1:1", "m")
    };
    assert!(build_chat_model(&outer, &none).is_err());
    let s = EmbeddingSettings {
        provider: "openai".parse().unwrap(),
        model: "custom".into(),
        base_url: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    };
    let err = build_vendor_embedder(&s, &none).err().unwrap();
    assert!(err.to_string().contains("embedding.dimension"), "{err}");
    // An OpenAI-compatible local server may run without a key.
    assert!(
        build_chat_model(&llm("openai", "http://127.0.0.1:1/v1", "llama3"), &none)
            .unwrap()
            .is_some()
    );
}
