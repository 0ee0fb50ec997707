//! `sources`: what this tenant's questions can draw on.

use super::{BotError, Ctx};
use crate::store::TenantScope;

/// Sources listed at most, so the reply stays a few messages long.
const MAX_LISTED: usize = 50;

/// Lists the tenant's sources, and how many the global knowledge base adds.
pub async fn run(ctx: &Ctx<'_>) -> Result<String, BotError> {
    let store = &ctx.core.kb.store;
    let tenant = &ctx.event.tenant;
    let own = store.sources(&TenantScope::only(tenant)).await?;
    let mut out = if own.is_empty() {
        "This team has no sources of its own yet.".to_owned()
    } else {
        format!("{} sources:", own.len())
    };
    for s in own.iter().take(MAX_LISTED) {
        let name = crate::answer::display_name(&s.source);
        out.push_str(&format!("\n• {name} ({} chunks)", s.chunks));
    }
    if own.len() > MAX_LISTED {
        out.push_str(&format!("\n… and {} more", own.len() - MAX_LISTED));
    }
    let scope = ctx.core.scope(tenant);
    if scope.tenants().len() > 1 {
        let global = store
            .sources(&TenantScope::only(&ctx.core.settings.global_tenant))
            .await?;
        out.push_str(&format!(
            "\nPlus {} sources of the shared knowledge base.",
            global.len()
        ));
    }
    Ok(out)
}
