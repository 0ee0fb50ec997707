//! `stats`: the tenant's knowledge, quota use, memory and activity. Every figure is the
//! tenant's own, except the queue, which all tenants share.

use super::{BotError, Ctx};
use crate::store::TenantScope;

/// Figures for this tenant, and the shared queue.
pub async fn run(ctx: &Ctx<'_>) -> Result<String, BotError> {
    let core = ctx.core;
    let event = ctx.event;
    let tenant = &event.tenant;
    let sources = core.kb.store.sources(&TenantScope::only(tenant)).await?;
    let chunks: usize = sources.iter().map(|s| s.chunks).sum();
    let s = &core.settings;
    let tally = core.counters.of(tenant);
    Ok(format!(
        "Sources: {}\nChunks: {chunks} of {}\nIngested from chat: {} KiB of {} KiB\n\
         Conversations remembered: {}\nKnowledge channels: {}\nPosts kept: {}\n\
         Answered: {}, refused: {}\nQuestions waiting now (all teams): {}",
        sources.len(),
        s.quota_chunks_per_tenant,
        core.quota.used_bytes(tenant)?.div_ceil(1024),
        s.quota_bytes_per_tenant / 1024,
        core.memory.len_of(&event.platform, tenant),
        core.knowledge.count_of(&event.platform, tenant),
        tally.ingested_posts,
        tally.answered,
        tally.refused,
        core.backlog(),
    ))
}
