use std::path::{Path, PathBuf};

use lore_core::llm::Provider;
use lore_core::retrieve::SearchMode;
use lore_core::store::StoreBackend;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_file(text: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lore.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load(Some(&path), env(&[]))
}

#[test]
fn defaults_come_from_settings_toml() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.store.data_dir, PathBuf::from("data"));
    assert_eq!(s.retrieval.mode, SearchMode::Hybrid);
    assert_eq!(s.llm.provider, Provider::None);
}

#[test]
fn environment_overrides_nested_keys() {
    let s = Settings::load(
        None,
        env(&[
            ("LORE_STORE__DATA_DIR", "/tmp/x"),
            ("LORE_RETRIEVAL__TOP_K", "9"),
            ("LORE_EVAL__JUDGE__MODEL", "judge-1"),
            ("LORE_LOG_FORMAT", "json"),
            ("LORE_HTTP_TOKENS", "not:a:setting"),
        ]),
    )
    .unwrap();
    assert_eq!(s.store.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(s.retrieval.top_k, 9);
    assert_eq!(s.eval.judge.model, "judge-1");
}

#[test]
fn bad_value_error_names_the_key() {
    let err = Settings::load(None, env(&[("LORE_RETRIEVAL__TOP_K", "many")])).unwrap_err();
    assert!(err.to_string().contains("top_k"), "{err}");
    let err = Settings::load(None, env(&[("LORE_INGEST__CHUNK_OVERLAP", "5000")])).unwrap_err();
    assert!(err.to_string().contains("ingest.chunk_overlap"), "{err}");
}

#[test]
fn qdrant_backend_needs_an_http_url() {
    let s = Settings::load(None, env(&[("LORE_STORE__BACKEND", "qdrant")])).unwrap();
    assert_eq!(s.store.backend, StoreBackend::Qdrant);
    assert_eq!(s.store.url, "http://localhost:6334");
    let err = Settings::load(
        None,
        env(&[
            ("LORE_STORE__BACKEND", "qdrant"),
            ("LORE_STORE__URL", "localhost:6334"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("store.url"), "{err}");
}

#[test]
fn cluster_layout_and_several_urls_are_typed_settings() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.store.shard_number, None, "Qdrant's default on one node");
    assert_eq!(
        (s.store.replication_factor, s.store.write_consistency_factor),
        (1, 1)
    );
    let s = load_file(
        "[store]\nbackend = \"qdrant\"\nurl = \"http://q0:6334, http://q1:6334\"\n\
         shard_number = 6\nreplication_factor = 2\npeer_wait_secs = 30\n",
    )
    .unwrap();
    assert_eq!(s.store.urls(), ["http://q0:6334", "http://q1:6334"]);
    assert_eq!(s.store.shard_number, Some(6));
    assert_eq!(s.store.replication_factor, 2);
    assert_eq!(s.store.peer_wait_secs, 30);
    let s = Settings::load(
        None,
        env(&[
            ("LORE_STORE__SHARD_NUMBER", "4"),
            ("LORE_STORE__URL", "http://a:6334,http://b:6334"),
        ]),
    )
    .unwrap();
    assert_eq!(s.store.shard_number, Some(4));
    assert_eq!(s.store.urls().len(), 2);
    for (var, value, key) in [
        ("LORE_STORE__SHARD_NUMBER", "0", "store.shard_number"),
        (
            "LORE_STORE__REPLICATION_FACTOR",
            "0",
            "store.replication_factor",
        ),
        (
            "LORE_STORE__WRITE_CONSISTENCY_FACTOR",
            "2",
            "store.write_consistency_factor",
        ),
        (
            "LORE_STORE__REPLICATION_FACTOR",
            "two",
            "replication_factor",
        ),
    ] {
        let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
        assert!(err.to_string().contains(key), "{var}={value}: {err}");
    }
    // Every server of the list is checked.
    let err = Settings::load(
        None,
        env(&[
            ("LORE_STORE__BACKEND", "qdrant"),
            ("LORE_STORE__URL", "http://a:6334,b:6334"),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("b:6334"), "{err}");
}

/// Every section refuses a key it does not have, and the error names the key.
#[test]
fn an_unknown_key_in_any_section_is_refused() {
    for section in [
        "store",
        "ingest",
        "embedding",
        "retrieval",
        "llm",
        "answer",
        "eval",
        "eval.judge",
        "bot",
        "discord",
        "telegram",
        "http",
    ] {
        let err = load_file(&format!("[{section}]\ntempreture = 0.3\n")).unwrap_err();
        assert!(err.to_string().contains("tempreture"), "[{section}]: {err}");
    }
    let err = load_file("[llm]\ntempreture = 0.3\n").unwrap_err();
    assert!(
        err.to_string().contains("temperature"),
        "the error lists the keys allowed: {err}"
    );
    let err = load_file("[[llm.fallback]]\nprovider = \"zhipu\"\nmdoel = \"glm\"\n").unwrap_err();
    assert!(err.to_string().contains("mdoel"), "{err}");
    let err = load_file("[retreival]\ntop_k = 3\n").unwrap_err();
    assert!(err.to_string().contains("retreival"), "{err}");
}

#[test]
fn a_misspelt_provider_is_refused_with_the_choices() {
    let err = load_file("[llm]\nprovider = \"opneai\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("opneai"), "{text}");
    assert!(text.contains("openai") && text.contains("zhipu"), "{text}");
    for (var, value) in [
        ("LORE_EMBEDDING__PROVIDER", "e5"),
        ("LORE_STORE__BACKEND", "edge"),
        ("LORE_RETRIEVAL__MODE", "semantic"),
        ("LORE_EVAL__JUDGE__PROVIDER", "gpt"),
    ] {
        let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
        assert!(err.to_string().contains(value), "{var}: {err}");
    }
}

#[test]
fn values_out_of_range_are_refused_by_key() {
    for (var, value, key) in [
        ("LORE_LLM__TEMPERATURE", "7", "llm.temperature"),
        ("LORE_LLM__MAX_CONCURRENCY", "0", "llm.max_concurrency"),
        (
            "LORE_EMBEDDING__TIMEOUT_SECS",
            "0",
            "embedding.timeout_secs",
        ),
        (
            "LORE_RETRIEVAL__MIN_DENSE_SCORE",
            "3",
            "retrieval.min_dense_score",
        ),
        ("LORE_DISCORD__SHARDS", "5-2/4", "discord.shards"),
        ("LORE_DISCORD__GUILD_ID", "my-guild", "discord.guild_id"),
        (
            "LORE_TELEGRAM__POLL_TIMEOUT_SECS",
            "90",
            "telegram.poll_timeout_secs",
        ),
    ] {
        let err = Settings::load(None, env(&[(var, value)])).unwrap_err();
        assert!(err.to_string().contains(key), "{var}={value}: {err}");
    }
}

#[test]
fn fallback_and_judge_tables_take_their_other_keys_from_llm_defaults() {
    let s = load_file(
        "[[llm.fallback]]\nprovider = \"zhipu\"\nmodel = \"glm-4-flash\"\n\n[eval.judge]\nprovider = \"openai\"\n",
    )
    .unwrap();
    let defaults = Settings::load(None, env(&[])).unwrap().llm;
    let fallback = &s.llm.fallback[0];
    assert_eq!(fallback.provider, Provider::Zhipu);
    assert_eq!(fallback.timeout_secs, defaults.timeout_secs);
    assert_eq!(fallback.max_concurrency, defaults.max_concurrency);
    assert_eq!(s.eval.judge.provider, Provider::Openai);
    assert_eq!(
        s.eval.judge.temperature,
        Some(0.0),
        "settings.toml's judge value"
    );
    assert_eq!(s.eval.judge.retry_budget_secs, defaults.retry_budget_secs);
}

/// Every list key of settings.toml can be set from the environment, comma-separated.
#[test]
fn every_list_key_can_be_set_from_the_environment() {
    let keys = list_keys();
    assert_eq!(
        keys.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "bot.admin_roles",
            "bot.admin_user_ids",
            "discord.admin_roles",
            "telegram.admin_user_ids"
        ],
        "a new list key needs a case below"
    );
    let s = Settings::load(None, env(&[("LORE_BOT__ADMIN_ROLES", "kb-admin, ops")])).unwrap();
    assert_eq!(s.bot.admin_roles, ["kb-admin", "ops"]);
    let s = Settings::load(None, env(&[("LORE_BOT__ADMIN_ROLES", "kb-admin")])).unwrap();
    assert_eq!(s.bot.admin_roles, ["kb-admin"]);
    let s = Settings::load(None, env(&[("LORE_BOT__ADMIN_ROLES", "")])).unwrap();
    assert!(s.bot.admin_roles.is_empty());
    let s = Settings::load(
        None,
        env(&[("LORE_BOT__ADMIN_USER_IDS", "discord:1,telegram:2")]),
    )
    .unwrap();
    assert_eq!(s.bot.admin_user_ids, ["discord:1", "telegram:2"]);
    // The deprecated platform keys land in the one [bot] list.
    let s = Settings::load(None, env(&[("LORE_DISCORD__ADMIN_ROLES", "kb-admin")])).unwrap();
    assert_eq!(s.bot.admin_roles, ["kb-admin"]);
    let s = Settings::load(None, env(&[("LORE_TELEGRAM__ADMIN_USER_IDS", "42,43")])).unwrap();
    assert_eq!(s.bot.admin_user_ids, ["telegram:42", "telegram:43"]);
    let err = Settings::load(None, env(&[("LORE_TELEGRAM__ADMIN_USER_IDS", "alice")])).unwrap_err();
    assert!(err.to_string().contains("admin_user_ids"), "{err}");
}

#[test]
fn deprecated_admin_keys_in_a_file_join_the_bot_lists() {
    let s = load_file(
        "[bot]\nadmin_roles = [\"Librarian\"]\n[discord]\nadmin_roles = [\"kb-admin\", \"Librarian\"]\n[telegram]\nadmin_user_ids = [7]\n",
    )
    .unwrap();
    assert_eq!(s.bot.admin_roles, ["Librarian", "kb-admin"]);
    assert_eq!(s.bot.admin_user_ids, ["telegram:7"]);
}

#[test]
fn missing_config_file_is_named() {
    let err = Settings::load(Some(Path::new("/nonexistent/lore.toml")), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/lore.toml"), "{err}");
}
