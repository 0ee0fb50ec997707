//! `ask`: answer from the tenant's knowledge with the conversation so far, and remember the turn.

use super::{BotError, Ctx};
use crate::answer::{Answer, HistoryTurn};
use crate::bot::memory::Turn;
use crate::bot::reply::Streamer;
use crate::store::TenantScope;

/// Name the bot's turns are remembered under.
const BOT_NAME: &str = "lore";

/// Answers, remembers the question and the answer, and flushes memory (the end of a turn).
pub async fn run(ctx: &Ctx<'_>, out: &mut Streamer, question: &str) -> Result<String, BotError> {
    let question = question.trim();
    if question.is_empty() {
        return Err(BotError::Usage(
            "ask me a question about your team's knowledge, or /help".to_owned(),
        ));
    }
    let core = ctx.core;
    let history = core.memory.load(ctx.key)?;
    let scope = core.scope(&ctx.event.tenant);
    let answer = answer_with_history(ctx, &scope, question, &history, out).await?;
    core.memory.append(
        ctx.key,
        &[
            Turn::now(&ctx.event.author.name, false, question),
            Turn::now(BOT_NAME, true, &answer.text),
        ],
    )?;
    core.memory.flush().await?;
    Ok(answer.render())
}

/// Calls the shared assistant, showing its text deltas through `out` as they stream.
async fn answer_with_history(
    ctx: &Ctx<'_>,
    scope: &TenantScope,
    question: &str,
    history: &[Turn],
    out: &mut Streamer,
) -> Result<Answer, BotError> {
    let history: Vec<HistoryTurn> = history
        .iter()
        .map(|t| HistoryTurn {
            speaker: t.speaker.clone(),
            is_bot: t.is_bot,
            text: t.text.clone(),
        })
        .collect();
    let (tx, mut deltas) = tokio::sync::mpsc::unbounded_channel();
    let answering = ctx
        .core
        .app
        .assistant
        .answer(scope, question, &history, Some(tx));
    tokio::pin!(answering);
    loop {
        tokio::select! {
            result = &mut answering => {
                return result.map_err(|e| BotError::Answer(e.to_string()));
            }
            Some(delta) = deltas.recv() => {
                // A failed preview edit is not worth failing the answer for.
                if let Err(e) = out.push(&delta).await {
                    tracing::debug!(error = %e, "streaming edit failed");
                }
            }
        }
    }
}
