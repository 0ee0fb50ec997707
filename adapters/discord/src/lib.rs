//! lore's Discord adapter: serenity events in, `lore-chat` events to the core, replies out.
//! It only translates; every decision lives in the core behind [`lore_chat::ChatHandler`].

mod commands;
mod events;
mod roles;
mod sink;
mod threads;
mod translate;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use lore_chat::{ChatHandler, InFlight};
use serde::Deserialize;
use serenity::all::{ClientBuilder, GatewayError, GatewayIntents, GuildId, HttpBuilder};

/// `[discord]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// HTTP base replacing `https://discord.com` (serenity's proxy); tests point it at 127.0.0.1.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Deprecated alias of `[bot] admin_roles`; the application folds it in at start-up, so
    /// the adapter itself leaves admin decisions to the bot core.
    pub admin_roles: Vec<String>,
    /// The shards this process runs, "START-END/TOTAL" (inclusive); empty = all of them.
    pub shards: String,
    /// Register slash commands in this guild only (instant), instead of globally.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// Answer a mention in a new thread started from the question.
    pub answer_in_thread: bool,
}

/// Why the Discord surface could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord.{key}: {reason}")]
    Setting { key: &'static str, reason: String },
    #[error(
        "Discord refused the gateway intents lore needs (Message Content is privileged): enable \
         \"Message Content Intent\" under Bot → Privileged Gateway Intents in the Developer Portal"
    )]
    MessageContentIntentDenied,
    #[error("Discord rejected the token (DISCORD_TOKEN): {0}")]
    BadToken(String),
    /// Boxed: serenity's error is large, and most results here never hold it.
    #[error("Discord: {0}")]
    Serenity(Box<serenity::Error>),
}

impl From<serenity::Error> for DiscordError {
    fn from(e: serenity::Error) -> Self {
        Self::Serenity(Box::new(e))
    }
}

/// A range of shards out of a total: `0-3/8` runs shards 0, 1, 2 and 3 of 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    pub first: u32,
    pub last: u32,
    pub total: u32,
}

impl FromStr for ShardRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{s:?} is not START-END/TOTAL (e.g. 0-3/8) or N/TOTAL");
        let (range, total) = s.trim().split_once('/').ok_or_else(usage)?;
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let num = |v: &str| v.trim().parse::<u32>().map_err(|_| usage());
        let (first, last, total) = (num(first)?, num(last)?, num(total)?);
        if total == 0 || first > last || last >= total {
            return Err(format!(
                "{s:?}: needs START <= END < TOTAL (shards are numbered from 0)"
            ));
        }
        Ok(Self { first, last, total })
    }
}

impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}/{}", self.first, self.last, self.total)
    }
}

impl DiscordSettings {
    /// The configured shard range; None when `shards` is empty (all shards in this process).
    pub fn shard_range(&self) -> Result<Option<ShardRange>, DiscordError> {
        if self.shards.trim().is_empty() {
            return Ok(None);
        }
        self.shards
            .parse()
            .map(Some)
            .map_err(|reason| DiscordError::Setting {
                key: "shards",
                reason,
            })
    }

    /// The checks `lore check-config` shares with start-up, each naming its key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let named = |e: DiscordError| match e {
            DiscordError::Setting { key, reason } => (format!("discord.{key}"), reason),
            other => ("discord".to_owned(), other.to_string()),
        };
        self.shard_range().map_err(named)?;
        self.command_guild().map_err(named)?;
        Ok(())
    }

    fn command_guild(&self) -> Result<Option<GuildId>, DiscordError> {
        match self.guild_id.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(id) => match id.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(GuildId::new(n))),
                _ => Err(DiscordError::Setting {
                    key: "guild_id",
                    reason: format!("{id:?} is not a Discord guild id"),
                }),
            },
        }
    }
}

/// How long shutdown waits for the answers under way (within `lore serve`'s own grace).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The gateway intents lore asks for: guild and direct messages, and their text.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
        | GatewayIntents::DIRECT_MESSAGES
}

/// Connects to Discord with `token` and feeds every event to `handler` until `shutdown`
/// resolves. `shards` picks a range of shards for this process (None = all, as Discord
/// recommends). The token is never logged.
pub async fn run(
    settings: DiscordSettings,
    token: String,
    handler: Arc<dyn ChatHandler>,
    shards: Option<ShardRange>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DiscordError> {
    let command_guild = settings.command_guild()?;
    let mut http = HttpBuilder::new(&token).default_allowed_mentions(sink::no_mentions());
    if let Some(base) = &settings.api_base {
        // serenity 0.12's ratelimiter builds its requests without the proxy (serenity#1739),
        // so a proxied client must leave rate limiting to the proxy, as serenity documents.
        http = http
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    let inflight = InFlight::new();
    let events = events::Handler::new(settings, handler, command_guild, inflight.clone());
    let mut client = ClientBuilder::new_with_http(http.build(), intents())
        .event_handler(events)
        .await?;
    let manager = client.shard_manager.clone();
    let stopper = tokio::spawn(async move {
        shutdown.await;
        tracing::info!("discord: closing the gateway connections");
        manager.shutdown_all().await;
    });
    let started = match shards {
        Some(range) => {
            tracing::info!(shards = %range, "discord: starting a shard range");
            // serenity's range end is inclusive (it boots end - start + 1 shards).
            client
                .start_shard_range(range.first..range.last, range.total)
                .await
        }
        None => client.start_autosharded().await,
    };
    stopper.abort();
    // The gateway is closed; the answers under way still reach their channels.
    if inflight.count() > 0 {
        tracing::info!(
            under_way = inflight.count(),
            "discord: waiting for the answers under way"
        );
    }
    if !inflight.drain(DRAIN_TIMEOUT).await {
        tracing::warn!(
            under_way = inflight.count(),
            seconds = DRAIN_TIMEOUT.as_secs(),
            "discord: answers still under way at shutdown are abandoned"
        );
    }
    match started {
        Ok(()) => Ok(()),
        Err(serenity::Error::Gateway(
            GatewayError::DisallowedGatewayIntents | GatewayError::InvalidGatewayIntents,
        )) => {
            let e = DiscordError::MessageContentIntentDenied;
            tracing::error!("{e}");
            Err(e)
        }
        Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => Err(
            DiscordError::BadToken("the gateway closed with 4004 Authentication failed".into()),
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            "0-3/8".parse::<ShardRange>().unwrap(),
            ShardRange {
                first: 0,
                last: 3,
                total: 8
            }
        );
        assert_eq!("5/8".parse::<ShardRange>().unwrap().to_string(), "5-5/8");
        for bad in ["", "0-3", "3-1/8", "0-8/8", "a-b/c", "0-0/0"] {
            assert!(bad.parse::<ShardRange>().is_err(), "{bad} parsed");
        }
        let s = DiscordSettings {
            shards: "4-7/8".into(),
            ..Default::default()
        };
        assert_eq!(s.shard_range().unwrap().unwrap().first, 4);
        let bad = DiscordSettings {
            shards: "9/8".into(),
            ..Default::default()
        };
        assert!(
            bad.shard_range()
                .unwrap_err()
                .to_string()
                .contains("discord.shards")
        );
    }
}
