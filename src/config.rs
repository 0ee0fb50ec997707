//! Settings: `settings.toml` (compiled in as the base layer, so its defaults are the only
//! defaults), then `--config FILE`, then `LORE_<SECTION>__<KEY>` environment variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The documented defaults; `settings.toml` at the repository root.
const DEFAULTS: &str = include_str!("../settings.toml");

/// A configuration problem, reported with the key or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration key `{key}`: {reason}")]
    Key { key: String, reason: String },
}

/// Every section of `settings.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub store: StoreSettings,
    pub ingest: IngestSettings,
    pub embedding: EmbeddingSettings,
    pub retrieval: RetrievalSettings,
    pub llm: crate::llm::LlmSettings,
    pub answer: AnswerSettings,
    /// The vendor keys of `[embedding]` (base_url, model, batch_size, ...), read from the
    /// same table; only used when `embedding.provider` names a vendor.
    #[serde(skip)]
    pub embedding_vendor: crate::llm::EmbeddingVendorSettings,
    pub eval: crate::eval::settings::EvalSettings,
    pub bot: crate::bot::settings::BotSettings,
    pub discord: lore_discord::DiscordSettings,
    pub telegram: lore_telegram::TelegramSettings,
    pub http: crate::http::settings::HttpSettings,
}

/// `[store]`: where the knowledge base lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub backend: StoreBackend,
    /// gRPC endpoint of the Qdrant server (backend = "qdrant"); https means TLS.
    pub url: String,
    /// The server collection holding every tenant's chunks.
    pub collection: String,
    /// Timeout of each server request, in seconds.
    pub timeout_secs: u64,
    /// HNSW beam width of dense queries; 0 = lore's default (100).
    pub hnsw_ef: usize,
}

/// Which `KnowledgeStore` implementation to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Qdrant in-process under data_dir/knowledge.
    Embedded,
    /// A Qdrant server or cluster at store.url.
    Qdrant,
}

/// `[ingest]`: loading and splitting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    pub max_file_mib: u64,
    pub fetch_timeout_secs: u64,
    pub allow_private_hosts: bool,
    pub embed_batch: usize,
}

/// `[embedding]`: the dense embedder. Vendor keys of the same table are read into
/// `Settings::embedding_vendor`, so unknown keys are not rejected here.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingSettings {
    /// "local", "none", or a vendor: "openai", "zhipu", "qianfan", "spark".
    pub provider: String,
    pub model_path: PathBuf,
    pub threads: usize,
}

/// `[answer]`: prompts and budgets for LLM answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSettings {
    pub system_prompt_en: String,
    pub system_prompt_zh: String,
    pub condense_prompt_en: String,
    pub condense_prompt_zh: String,
    /// Replaces both system prompts when set: a file holding one template.
    pub system_prompt_file: Option<PathBuf>,
    /// Tokens reserved for the answer when `llm.max_tokens` is unset.
    pub answer_tokens: usize,
    /// History turns sent to the model at most (older ones are dropped first).
    pub history_turns: usize,
}

/// `[retrieval]`: search modes and the evidence gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSettings {
    pub mode: crate::retrieve::SearchMode,
    pub top_k: usize,
    pub rrf_k: u32,
    pub candidate_factor: usize,
    pub mmr_lambda: f32,
    pub min_dense_score: f32,
    pub min_term_coverage: f32,
}

impl Settings {
    /// Loads the layers; `file` is `--config`, `env` the process environment (passed in so
    /// tests need not mutate globals).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Only `LORE_<SECTION>__<KEY>` variables are settings; others such as LORE_LOG_FORMAT
        // belong to the process and must not trip the unknown-key check.
        let vars: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("LORE_") && k.contains("__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("LORE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let embedding_vendor = raw
            .get::<crate::llm::EmbeddingVendorSettings>("embedding")
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.embedding_vendor = embedding_vendor;
        if let Some(path) = settings.answer.system_prompt_file.clone() {
            let template = std::fs::read_to_string(&path).map_err(|e| ConfigError::Key {
                key: "answer.system_prompt_file".into(),
                reason: format!("{}: {e}", path.display()),
            })?;
            settings.answer.system_prompt_en = template.clone();
            settings.answer.system_prompt_zh = template;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks serde cannot express; each error names its key.
    fn validate(&self) -> Result<(), ConfigError> {
        let key = |key: &str, reason: String| ConfigError::Key {
            key: key.into(),
            reason,
        };
        let ingest = &self.ingest;
        if !(50..=8000).contains(&ingest.chunk_size) {
            return Err(key(
                "ingest.chunk_size",
                format!("{} is outside 50..=8000 characters", ingest.chunk_size),
            ));
        }
        if ingest.chunk_overlap >= ingest.chunk_size {
            return Err(key(
                "ingest.chunk_overlap",
                format!(
                    "{} must be smaller than ingest.chunk_size ({})",
                    ingest.chunk_overlap, ingest.chunk_size
                ),
            ));
        }
        if ingest.embed_batch == 0 {
            return Err(key("ingest.embed_batch", "must be at least 1".into()));
        }
        const EMBEDDERS: [&str; 6] = ["local", "none", "openai", "zhipu", "qianfan", "spark"];
        if !EMBEDDERS.contains(&self.embedding.provider.as_str()) {
            return Err(key(
                "embedding.provider",
                format!("{:?} is not one of {EMBEDDERS:?}", self.embedding.provider),
            ));
        }
        for (name, template) in [
            ("answer.system_prompt_en", &self.answer.system_prompt_en),
            ("answer.system_prompt_zh", &self.answer.system_prompt_zh),
        ] {
            if !template.contains("{context}") {
                return Err(key(name, "must contain the {context} placeholder".into()));
            }
        }
        if let Err((k, reason)) = self.bot.validate() {
            return Err(key(&k, reason));
        }
        let store = &self.store;
        if store.backend == StoreBackend::Qdrant {
            if !(store.url.starts_with("http://") || store.url.starts_with("https://")) {
                return Err(key(
                    "store.url",
                    format!("{:?} must start with http:// or https://", store.url),
                ));
            }
            if store.collection.trim().is_empty() {
                return Err(key("store.collection", "must not be empty".into()));
            }
        }
        if store.timeout_secs == 0 {
            return Err(key("store.timeout_secs", "must be at least 1".into()));
        }
        if let Err((k, reason)) = self.http.validate() {
            return Err(key(&k, reason));
        }
        if let Err((k, reason)) = self.telegram.validate() {
            return Err(key(&k, reason));
        }
        let r = &self.retrieval;
        if r.top_k == 0 || r.top_k > 100 {
            return Err(key(
                "retrieval.top_k",
                format!("{} is outside 1..=100", r.top_k),
            ));
        }
        if r.candidate_factor == 0 {
            return Err(key(
                "retrieval.candidate_factor",
                "must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&r.mmr_lambda) {
            return Err(key(
                "retrieval.mmr_lambda",
                format!("{} is outside 0..=1", r.mmr_lambda),
            ));
        }
        if !(0.0..=1.0).contains(&r.min_term_coverage) {
            return Err(key(
                "retrieval.min_term_coverage",
                format!("{} is outside 0..=1", r.min_term_coverage),
            ));
        }
        Ok(())
    }

    /// Directory of the embedded knowledge store.
    pub fn knowledge_dir(&self) -> PathBuf {
        self.store.data_dir.join("knowledge")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_come_from_settings_toml() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.store.data_dir, PathBuf::from("data"));
        assert_eq!(s.retrieval.mode, crate::retrieve::SearchMode::Hybrid);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = Settings::load(
            None,
            env(&[
                ("LORE_STORE__DATA_DIR", "/tmp/x"),
                ("LORE_RETRIEVAL__TOP_K", "9"),
                ("LORE_LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(s.store.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.retrieval.top_k, 9);
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
    fn unknown_key_in_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lore.toml");
        std::fs::write(&path, "[retrieval]\ntop_kk = 3\n").unwrap();
        let err = Settings::load(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("top_kk"), "{err}");
    }

    #[test]
    fn missing_config_file_is_named() {
        let err = Settings::load(Some(Path::new("/nonexistent/lore.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/lore.toml"), "{err}");
    }
}
