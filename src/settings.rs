//! The aggregate settings: `settings.toml` (compiled in as the base layer, so its values are
//! the only defaults), then `--config FILE`, then `LORE_<SECTION>__<KEY>` environment
//! variables. Each section's type lives with the code it configures; this module only
//! layers, parses strictly and checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lore_core::answer::AnswerSettings;
use lore_core::bot::settings::BotSettings;
use lore_core::embed::EmbeddingSettings;
use lore_core::eval::settings::EvalSettings;
use lore_core::ingest::IngestSettings;
use lore_core::kb::{KnowledgeBaseSettings, SettingError};
use lore_core::llm::LlmSettings;
use lore_core::retrieve::RetrievalSettings;
use lore_core::store::StoreSettings;
use lore_discord::DiscordSettings;
use lore_telegram::TelegramSettings;
use serde::Deserialize;

use crate::http::settings::HttpSettings;

/// The documented defaults; `settings.toml` at the repository root.
const DEFAULTS: &str = include_str!("../settings.toml");

/// A configuration problem, reported with the key or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Key(#[from] SettingError),
}

/// Every section of `settings.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub store: StoreSettings,
    pub ingest: IngestSettings,
    pub embedding: EmbeddingSettings,
    pub retrieval: RetrievalSettings,
    pub llm: LlmSettings,
    pub answer: AnswerSettings,
    pub eval: EvalSettings,
    pub bot: BotSettings,
    pub discord: DiscordSettings,
    pub telegram: TelegramSettings,
    pub http: HttpSettings,
}

/// Keys kept working under their old names: (old key, the key that replaced it).
const DEPRECATED: [(&str, &str); 2] = [
    ("discord.admin_roles", "bot.admin_roles"),
    ("telegram.admin_user_ids", "bot.admin_user_ids"),
];

impl Settings {
    /// Loads the layers; `file` is `--config`, `env` the process environment (passed in so
    /// tests need not mutate globals).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let invalid = |e: config::ConfigError| ConfigError::Invalid(e.to_string());
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
        for (key, value) in env_overrides(env) {
            builder = builder.set_override(key, value).map_err(invalid)?;
        }
        let layered = builder.build().map_err(invalid)?;
        // `[eval.judge]` and each `[[llm.fallback]]` are `[llm]`-shaped tables that name only
        // what differs: their other keys come from settings.toml's `[llm]`.
        let llm_defaults = llm_defaults()?;
        let mut builder = config::Config::builder().add_source(layered.clone());
        let judge = layered.get_table("eval.judge").unwrap_or_default();
        builder = builder
            .set_override("eval.judge", over(&llm_defaults, judge))
            .map_err(invalid)?;
        if let Ok(fallbacks) = layered.get_array("llm.fallback") {
            let mut filled = Vec::with_capacity(fallbacks.len());
            for (i, entry) in fallbacks.into_iter().enumerate() {
                let table = entry.into_table().map_err(|_| {
                    ConfigError::Invalid(format!("llm.fallback[{i}] must be a table"))
                })?;
                filled.push(config::Value::from(over(&llm_defaults, table)));
            }
            builder = builder
                .set_override("llm.fallback", filled)
                .map_err(invalid)?;
        }
        let mut settings: Settings = builder
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.fold_deprecated_keys();
        settings.answer.load_prompt_file()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The old per-platform admin keys feed the one `[bot]` list, with a line saying so.
    fn fold_deprecated_keys(&mut self) {
        let roles = std::mem::take(&mut self.discord.admin_roles);
        let users = std::mem::take(&mut self.telegram.admin_user_ids);
        for ((old, new), used) in DEPRECATED
            .iter()
            .zip([!roles.is_empty(), !users.is_empty()])
        {
            if used {
                tracing::warn!("settings: `{old}` is deprecated; use `{new}` (both are honoured)");
            }
        }
        for role in roles {
            if !self.bot.admin_roles.contains(&role) {
                self.bot.admin_roles.push(role);
            }
        }
        for id in users {
            let id = format!("telegram:{id}");
            if !self.bot.admin_user_ids.contains(&id) {
                self.bot.admin_user_ids.push(id);
            }
        }
    }

    /// Every check `lore serve` makes before starting, each error naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.knowledge().validate()?;
        self.eval.judge.validate("eval.judge")?;
        self.bot
            .validate()
            .map_err(|(k, r)| SettingError::new(k, r))?;
        self.http
            .validate()
            .map_err(|(k, r)| SettingError::new(k, r))?;
        self.telegram
            .validate()
            .map_err(|(k, r)| SettingError::new(k, r))?;
        self.discord
            .validate()
            .map_err(|(k, r)| SettingError::new(k, r))?;
        Ok(())
    }

    /// The core's sections, to open the knowledge base with.
    pub fn knowledge(&self) -> KnowledgeBaseSettings {
        KnowledgeBaseSettings {
            store: self.store.clone(),
            ingest: self.ingest.clone(),
            embedding: self.embedding.clone(),
            retrieval: self.retrieval.clone(),
            llm: self.llm.clone(),
            answer: self.answer.clone(),
        }
    }

    /// Directory of the embedded knowledge store.
    pub fn knowledge_dir(&self) -> PathBuf {
        self.store.knowledge_dir()
    }
}

/// settings.toml's `[llm]` table without its fallback list.
fn llm_defaults() -> Result<config::Map<String, config::Value>, ConfigError> {
    let mut table = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.get_table("llm"))
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    table.remove("fallback");
    Ok(table)
}

/// `table` over `defaults`: the keys of `table` win.
fn over(
    defaults: &config::Map<String, config::Value>,
    table: config::Map<String, config::Value>,
) -> config::Map<String, config::Value> {
    let mut merged = defaults.clone();
    merged.extend(table);
    merged
}

/// Keys whose value is a list in settings.toml: from the environment they are written
/// comma-separated (`LORE_BOT__ADMIN_ROLES=kb-admin,ops`).
pub fn list_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Array(_) => {
                    out.insert(path);
                }
                toml::Value::Table(inner) => walk(&path, inner, out),
                _ => {}
            }
        }
    }
    let table: toml::Table = DEFAULTS.parse().expect("settings.toml is valid TOML");
    let mut keys = BTreeSet::new();
    walk("", &table, &mut keys);
    keys
}

/// `LORE_<SECTION>__<KEY>` variables as (dotted key, value). Other `LORE_` variables (such
/// as LORE_LOG_FORMAT or LORE_HTTP_TOKENS) belong to the process, not to the settings.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, config::Value)> {
    let lists = list_keys();
    let mut out: Vec<(String, config::Value)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix("LORE_")?;
            if !rest.contains("__") {
                return None;
            }
            let key = rest.to_lowercase().replace("__", ".");
            let value = if lists.contains(&key) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
                config::Value::from(items)
            } else {
                config::Value::from(value)
            };
            Some((key, value))
        })
        .collect();
    // The environment is unordered; sort so a key set twice behaves the same every run.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
