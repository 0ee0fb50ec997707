//! `[bot]`: the chat bot core's memory, pacing, permissions and quotas.

use serde::Deserialize;

/// `[bot]` in settings.toml; every key is documented there with its default.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    pub memory_turns: usize,
    pub memory_token_budget: u32,
    pub memory_ttl_hours: u64,
    /// Most conversations remembered per platform and tenant; the least recently used go.
    pub memory_max_conversations: usize,
    pub edit_interval_ms: u64,
    pub max_concurrent_channels: usize,
    pub include_global_knowledge: bool,
    pub global_tenant: String,
    pub quota_bytes_per_tenant: u64,
    pub quota_chunks_per_tenant: usize,
    /// `platform:user_id` entries, e.g. "discord:1234", "telegram:5678".
    pub admin_user_ids: Vec<String>,
    /// Role names (Discord) that count as admin.
    pub admin_roles: Vec<String>,
    pub questions_per_user_per_minute: u32,
    pub questions_per_channel_per_minute: u32,
    pub backfill_pages_per_minute: u32,
    pub backfill_max_messages: usize,
}

impl BotSettings {
    /// Range checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("bot.{key}"), reason.to_owned()));
        if self.memory_turns == 0 {
            return bad("memory_turns", "must be at least 1");
        }
        if self.memory_max_conversations == 0 {
            return bad("memory_max_conversations", "must be at least 1");
        }
        if self.max_concurrent_channels == 0 {
            return bad("max_concurrent_channels", "must be at least 1");
        }
        if self.questions_per_user_per_minute == 0 {
            return bad("questions_per_user_per_minute", "must be at least 1");
        }
        if self.questions_per_channel_per_minute == 0 {
            return bad("questions_per_channel_per_minute", "must be at least 1");
        }
        if self.backfill_pages_per_minute == 0 {
            return bad("backfill_pages_per_minute", "must be at least 1");
        }
        if self.global_tenant.is_empty() {
            return bad("global_tenant", "must not be empty");
        }
        Ok(())
    }
}
