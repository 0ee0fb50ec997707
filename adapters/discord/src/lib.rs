//! lore's Discord adapter: serenity events in, `lore-chat` events to the core, replies out.
//! It only translates; every decision lives in the core behind [`lore_chat::ChatHandler`].

use serde::Deserialize;

/// `[discord]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// HTTP base replacing `https://discord.com` (serenity's proxy); tests point it at 127.0.0.1.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Role names that count as admin besides Manage Server.
    #[serde(default)]
    pub admin_roles: Vec<String>,
}
