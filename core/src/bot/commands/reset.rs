//! `reset`: forget this channel's (or DM's, or thread's) conversation.

use super::{BotError, Ctx};

/// Clears the conversation and makes that durable.
pub async fn run(ctx: &Ctx<'_>) -> Result<String, BotError> {
    ctx.core.memory.reset(ctx.key)?;
    ctx.core.memory.flush().await?;
    Ok("Conversation cleared.".to_owned())
}
