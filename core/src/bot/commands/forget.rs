//! `forget SOURCE`: remove one of the tenant's sources (admins only).

use super::{BotError, Ctx};
use crate::bot::{knowledge, permissions};

/// Deletes the source's chunks in this tenant; the global knowledge base is never touched.
pub async fn run(ctx: &Ctx<'_>, source: &str) -> Result<String, BotError> {
    permissions::require_admin(&ctx.core.settings, ctx.event, "forget knowledge")?;
    let source = source.trim().trim_matches('"');
    if source.is_empty() {
        return Err(BotError::Usage(
            "usage: /forget SOURCE (see /sources)".to_owned(),
        ));
    }
    let removed = knowledge::remove_source(ctx.core, &ctx.event.tenant, source).await?;
    if removed == 0 {
        return Err(BotError::Usage(format!(
            "there is no source named {source:?} here (see /sources)"
        )));
    }
    ctx.core.kb.store.commit().await?;
    Ok(format!("Forgot {source}: {removed} chunks removed."))
}
