//! The answering use case every surface shares: one turn of a remembered conversation
//! (history in, answer out, both remembered), and one question answered in a tenant's
//! scope inside its span and metrics. Chat platforms reach it through `commands::ask`; the
//! HTTP API calls it directly.

use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tracing::Instrument;

use super::memory::{ConversationKey, Turn};
use super::{BotError, Core};
use crate::answer::{Answer, HistoryTurn};

/// Name the bot's turns are remembered under.
const BOT_NAME: &str = "lore";

/// The question trimmed, or the usage line when there is none.
fn asked(question: &str) -> Result<&str, BotError> {
    let question = question.trim();
    if question.is_empty() {
        return Err(BotError::Usage(
            "ask me a question about your team's knowledge, or /help".to_owned(),
        ));
    }
    Ok(question)
}

/// One turn of a remembered conversation: loads its history, answers in the key's tenant
/// scope, then appends the question and the answer and flushes memory.
pub async fn answer_turn(
    core: &Core,
    key: &ConversationKey,
    speaker: &str,
    question: &str,
    on_delta: Option<UnboundedSender<String>>,
) -> Result<Answer, BotError> {
    let question = asked(question)?;
    let history: Vec<HistoryTurn> = core
        .memory
        .load(key)?
        .into_iter()
        .map(|t| HistoryTurn {
            speaker: t.speaker,
            is_bot: t.is_bot,
            text: t.text,
        })
        .collect();
    let answer = answer_question(core, key, question, &history, on_delta).await?;
    core.memory.append(
        key,
        &[
            Turn::now(speaker, false, question),
            Turn::now(BOT_NAME, true, &answer.text),
        ],
    )?;
    core.memory.flush().await?;
    Ok(answer)
}

/// One question with no history, remembering nothing after it (a one-shot HTTP question).
pub async fn answer_once(
    core: &Core,
    key: &ConversationKey,
    question: &str,
    on_delta: Option<UnboundedSender<String>>,
) -> Result<Answer, BotError> {
    let question = asked(question)?;
    answer_question(core, key, question, &[], on_delta).await
}

/// Answers one question with the given history in the key's tenant scope, inside a span
/// that names platform, tenant and channel (the text only at debug level), and counts it.
pub async fn answer_question(
    core: &Core,
    key: &ConversationKey,
    question: &str,
    history: &[HistoryTurn],
    on_delta: Option<UnboundedSender<String>>,
) -> Result<Answer, BotError> {
    let span = tracing::info_span!(
        "question",
        platform = %key.platform,
        tenant = %key.tenant,
        channel = %key.channel,
        outcome = tracing::field::Empty,
    );
    let started = Instant::now();
    let scope = core.scope(&key.tenant);
    let result = async {
        tracing::debug!(question, "question");
        core.kb
            .assistant
            .answer(&scope, question, history, on_delta)
            .await
            .map_err(BotError::from)
    }
    .instrument(span.clone())
    .await;
    let outcome = match &result {
        Ok(answer) if answer.grounded => "answered",
        Ok(_) => "not_found",
        Err(_) => "error",
    };
    span.record("outcome", outcome);
    metrics::counter!("lore_questions_total", "platform" => key.platform.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("lore_answer_seconds", "platform" => key.platform.clone())
        .record(started.elapsed().as_secs_f64());
    span.in_scope(|| match &result {
        Ok(answer) => tracing::info!(
            outcome,
            citations = answer.citations.len(),
            ms = started.elapsed().as_millis() as u64,
            "question answered"
        ),
        Err(e) => tracing::warn!(error = %e, "question failed"),
    });
    result
}
