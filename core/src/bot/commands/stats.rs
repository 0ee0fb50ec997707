//! `stats`: the tenant's knowledge, quota use, and the bot's memory and load.

use std::sync::atomic::Ordering;

use super::{BotError, Ctx};
use crate::store::TenantScope;

/// Figures for this tenant and the bot.
pub async fn run(ctx: &Ctx<'_>) -> Result<String, BotError> {
    let core = ctx.core;
    let tenant = &ctx.event.tenant;
    let sources = core.kb.store.sources(&TenantScope::only(tenant)).await?;
    let chunks: usize = sources.iter().map(|s| s.chunks).sum();
    let s = &core.settings;
    Ok(format!(
        "Sources: {}\nChunks: {chunks} of {}\nIngested from chat: {} KiB of {} KiB\n\
         Conversations remembered: {}\nKnowledge channels: {}\nAnswered: {}, refused: {}, waiting now: {}",
        sources.len(),
        s.quota_chunks_per_tenant,
        core.quota.used_bytes(tenant)?.div_ceil(1024),
        s.quota_bytes_per_tenant / 1024,
        core.memory.len(),
        core.knowledge.count(),
        core.counters.answered.load(Ordering::Relaxed),
        core.counters.refused.load(Ordering::Relaxed),
        core.backlog(),
    ))
}
