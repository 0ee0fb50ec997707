//! `knowledge-channel on|off`: every post in this channel becomes (or stops becoming)
//! knowledge of the team (admins only).

use super::{BotError, Ctx};
use crate::bot::{knowledge, permissions};

/// Marks or unmarks the channel, and starts the history backfill where the platform allows.
pub async fn run(ctx: &Ctx<'_>, on: bool) -> Result<String, BotError> {
    permissions::require_admin(&ctx.core.settings, ctx.event, "change knowledge channels")?;
    let kc = &ctx.core.knowledge;
    let changed = kc.set(ctx.event, on)?;
    if !on {
        return Ok(if changed {
            "This channel is no longer a knowledge channel. What it taught me stays; /forget removes it."
        } else {
            "This channel was not a knowledge channel."
        }
        .to_owned());
    }
    let mut reply = if changed {
        "This channel is now a knowledge channel: I will learn from every post here.".to_owned()
    } else {
        "This channel is already a knowledge channel.".to_owned()
    };
    if kc.backfill_pending(ctx.event)
        && let Some(history) = ctx.sink.history()
    {
        tokio::spawn(knowledge::backfill(
            ctx.core.clone(),
            ctx.event.clone(),
            history,
        ));
        reply.push_str(" Reading its history in the background.");
    }
    Ok(reply)
}
