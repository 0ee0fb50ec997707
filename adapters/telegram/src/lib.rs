//! lore's Telegram adapter: teloxide updates in, `lore-chat` events to the core, replies out.
//! It only translates; every decision lives in the core behind [`lore_chat::ChatHandler`].

use serde::Deserialize;

/// `[telegram]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Bot API base URL (teloxide's `set_api_url`); tests point it at 127.0.0.1.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Telegram user ids that count as admin besides chat administrators.
    #[serde(default)]
    pub admin_user_ids: Vec<i64>,
}
