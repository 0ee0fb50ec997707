//! `ask`: answer from the tenant's knowledge with the conversation so far, and remember the turn.

use super::{BotError, Ctx};
use crate::answer::{self, Answer};
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

/// Without an LLM, a follow-up that finds nothing on its own is retried together with the
/// previous question from the same conversation.
async fn answer_with_history(
    ctx: &Ctx<'_>,
    scope: &TenantScope,
    question: &str,
    history: &[Turn],
    _out: &mut Streamer,
) -> Result<Answer, BotError> {
    let app = &ctx.core.app;
    let k = app.settings.retrieval.top_k;
    let search = |q: String| async move {
        app.retriever
            .search(scope, &q, None, k)
            .await
            .map_err(|e| BotError::Answer(e.to_string()))
    };
    let mut retrieval = search(question.to_owned()).await?;
    if !retrieval.evidence
        && let Some(previous) = history.iter().rev().find(|t| !t.is_bot)
    {
        retrieval = search(format!("{} {question}", previous.text)).await?;
    }
    Ok(answer::extractive(question, &retrieval))
}
