//! `ask`: answer from the tenant's knowledge with the conversation so far (one
//! [`answer_turn`]), streaming the answer into the reply as it comes.

use super::{BotError, Ctx};
use crate::bot::reply::Streamer;
use crate::bot::turn::answer_turn;

/// Answers, remembers the question and the answer, and flushes memory (the end of a turn).
pub async fn run(ctx: &Ctx<'_>, out: &mut Streamer, question: &str) -> Result<String, BotError> {
    let (tx, mut deltas) = tokio::sync::mpsc::unbounded_channel();
    let answering = answer_turn(
        ctx.core,
        ctx.key,
        &ctx.event.author.name,
        question,
        Some(tx),
    );
    tokio::pin!(answering);
    loop {
        tokio::select! {
            result = &mut answering => return result.map(|answer| answer.render()),
            Some(delta) = deltas.recv() => {
                // A failed preview edit is not worth failing the answer for.
                if let Err(e) = out.push(&delta).await {
                    tracing::debug!(error = %e, "streaming edit failed");
                }
            }
        }
    }
}
