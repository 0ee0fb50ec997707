//! The answering path every surface shares: condense the question with the history,
//! retrieve within the tenant scope, gate on evidence, then answer from a prompt (LLM) or
//! extractively (no LLM). Citations are checked as the answer streams.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::AnswerSettings;
use super::attribution::Attributor;
use super::citations::CitationFilter;
use super::{Answer, Citation, SourceLinks, extractive_with, is_cjk, not_found, offer_passages};
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, estimate_tokens};
use crate::retrieve::{Retrieval, RetrieveError, Retriever};
use crate::store::TenantScope;

/// One earlier turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryTurn {
    /// Display name of who spoke, so a shared channel keeps askers apart.
    pub speaker: String,
    pub is_bot: bool,
    pub text: String,
}

/// Why a question got no answer; the message is fit to show the asker.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("searching the knowledge base failed: {0}")]
    Retrieve(#[from] RetrieveError),
    #[error("the language model failed: {0}")]
    Llm(#[from] LlmError),
}

impl AnswerError {
    /// When the failure may pass (a vendor timeout, a 429, a 5xx that outlasted the retry
    /// budget): `Some` with the vendor's wait hint if it gave one. `None` when asking again
    /// will fail the same way.
    pub fn retry_later(&self) -> Option<Option<std::time::Duration>> {
        match self {
            AnswerError::Llm(e) => e.retry_later(),
            AnswerError::Retrieve(RetrieveError::Embed(crate::embed::EmbedError::Vendor(e))) => {
                e.retry_later()
            }
            AnswerError::Retrieve(_) => None,
        }
    }
}

/// Answers questions for every surface.
pub struct Assistant {
    retriever: Arc<Retriever>,
    llm: Option<Arc<dyn ChatModel>>,
    settings: AnswerSettings,
    links: SourceLinks,
    /// Tokens reserved for the reply.
    answer_tokens: usize,
}

impl Assistant {
    pub fn new(
        retriever: Arc<Retriever>,
        llm: Option<Arc<dyn ChatModel>>,
        settings: AnswerSettings,
        max_tokens: Option<u32>,
    ) -> Self {
        let answer_tokens = max_tokens.map_or(settings.answer_tokens, |t| t as usize);
        Self {
            retriever,
            llm,
            links: settings.links(),
            settings,
            answer_tokens,
        }
    }

    /// How citations link (`[answer.source_links]`).
    pub fn links(&self) -> &SourceLinks {
        &self.links
    }

    /// True when answers come from a language model rather than quoted passages.
    pub fn has_llm(&self) -> bool {
        self.llm.is_some()
    }

    /// Answers `question` from the knowledge visible in `scope`. Text streams to
    /// `on_delta` as it is produced; the returned answer holds only valid citations.
    pub async fn answer(
        &self,
        scope: &TenantScope,
        question: &str,
        history: &[HistoryTurn],
        on_delta: Option<UnboundedSender<String>>,
    ) -> Result<Answer, AnswerError> {
        let history = &history[history.len().saturating_sub(self.settings.history_turns)..];
        let started = std::time::Instant::now();
        let retrieval = self.retrieve(scope, question, history).await?;
        metrics::histogram!("lore_retrieval_seconds").record(started.elapsed().as_secs_f64());
        let answer = match &self.llm {
            _ if !retrieval.evidence || retrieval.hits.is_empty() => not_found(question),
            None => extractive_with(question, &retrieval, &self.links),
            Some(llm) => {
                return self
                    .generate(llm.as_ref(), question, history, &retrieval, on_delta)
                    .await;
            }
        };
        if let Some(tx) = on_delta {
            let _ = tx.send(answer.text.clone());
        }
        Ok(answer)
    }

    /// Retrieval for the question as it would stand alone.
    async fn retrieve(
        &self,
        scope: &TenantScope,
        question: &str,
        history: &[HistoryTurn],
    ) -> Result<Retrieval, AnswerError> {
        let k = self.retriever.settings().top_k;
        let Some(previous) = history.iter().rev().find(|t| !t.is_bot) else {
            return Ok(self.retriever.search(scope, question, None, k).await?);
        };
        if let Some(llm) = &self.llm {
            let standalone = self.condense(llm.as_ref(), question, history).await;
            // The user's own words always search too: a model that answers instead of
            // rewriting (small local ones may) must not lose the question. A rewrite that
            // reads like an answer is not used at all.
            if standalone != question && looks_like_a_rewrite(&standalone, question, history) {
                let (own, rewritten) = futures::try_join!(
                    self.retriever.search(scope, question, None, k),
                    self.retriever.search(scope, &standalone, None, k),
                )?;
                return Ok(Retrieval::fuse(vec![rewritten, own], k));
            }
        }
        // Without a usable rewrite, a follow-up that finds nothing on its own is searched
        // together with the previous question.
        let alone = self.retriever.search(scope, question, None, k).await?;
        if alone.evidence {
            return Ok(alone);
        }
        let combined = format!("{} {question}", previous.text);
        Ok(self.retriever.search(scope, &combined, None, k).await?)
    }

    /// The question rewritten to stand alone; the original when the model fails, since a
    /// worse search beats no answer.
    async fn condense(
        &self,
        llm: &dyn ChatModel,
        question: &str,
        history: &[HistoryTurn],
    ) -> String {
        let prompt = if is_cjk(question) {
            &self.settings.condense_prompt_zh
        } else {
            &self.settings.condense_prompt_en
        };
        let mut transcript = String::new();
        for turn in history {
            transcript.push_str(&format!("{}: {}\n", turn.speaker, turn.text));
        }
        transcript.push_str(&format!("user: {question}"));
        let request = ChatRequest {
            messages: vec![
                ChatMessage::system(prompt.clone()),
                ChatMessage::user(transcript),
            ],
            temperature: Some(0.0),
            max_tokens: Some(200),
        };
        match llm.chat(request).await {
            Ok(reply) if !reply.text.trim().is_empty() => reply.text.trim().to_owned(),
            Ok(_) => question.to_owned(),
            Err(e) => {
                tracing::warn!(error = %e, "condensing the question failed; searching it as asked");
                question.to_owned()
            }
        }
    }

    async fn generate(
        &self,
        llm: &dyn ChatModel,
        question: &str,
        history: &[HistoryTurn],
        retrieval: &Retrieval,
        on_delta: Option<UnboundedSender<String>>,
    ) -> Result<Answer, AnswerError> {
        let (messages, given) = self.prompt(llm.context_window(), question, history, retrieval);
        let request = ChatRequest {
            messages,
            temperature: None,
            max_tokens: Some(self.answer_tokens as u32),
        };
        let prompt_tokens = crate::llm::limits::request_tokens(&request);
        let started = std::time::Instant::now();
        let mut stream = llm.chat_stream(request).await?;
        let mut filter = CitationFilter::new(given.len());
        // Each sentence is attributed to the passages the model read as it completes.
        let passages: Vec<&str> = retrieval.passages[..given.len()]
            .iter()
            .map(String::as_str)
            .collect();
        let mut attributor = Attributor::new(
            self.retriever.bm25(),
            &passages,
            self.settings.support_threshold,
            self.settings.unsupported,
        );
        // An answer that may yet be refused for its grounding is shown only once complete.
        let hold = self.settings.min_grounding > 0.0;
        let mut text = String::new();
        let mut raw_tokens = 0u64;
        let emit = |piece: String, text: &mut String| {
            if piece.is_empty() {
                return;
            }
            if let Some(tx) = on_delta.as_ref().filter(|_| !hold) {
                let _ = tx.send(piece.clone());
            }
            text.push_str(&piece);
        };
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if raw_tokens == 0 {
                metrics::histogram!("lore_llm_first_token_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            raw_tokens += u64::from(estimate_tokens(&piece)).max(1);
            emit(attributor.push(&filter.push(&piece)), &mut text);
        }
        // Streams carry no usage figures, so tokens are lore's own estimate.
        let vendor = llm.id().to_owned();
        metrics::counter!("lore_llm_tokens_total", "vendor" => vendor.clone(), "kind" => "prompt")
            .increment(u64::from(prompt_tokens));
        metrics::counter!("lore_llm_tokens_total", "vendor" => vendor, "kind" => "completion")
            .increment(raw_tokens);
        emit(attributor.push(&filter.finish()), &mut text);
        emit(attributor.finish(), &mut text);
        // The sources the answer uses, numbered in order of first use, and nothing else.
        let citations: Vec<Citation> = attributor
            .order()
            .iter()
            .enumerate()
            .map(|(i, given_n)| Citation {
                n: i + 1,
                ..given[given_n - 1].clone()
            })
            .collect();
        let grounding = attributor.grounding();
        metrics::histogram!("lore_answer_grounding").record(f64::from(grounding));
        let mut answer = Answer {
            text,
            citations,
            grounded: true,
            grounding,
            sentences: attributor.sentences().to_vec(),
        };
        if attributor.refused() && answer.citations.is_empty() {
            // The model found nothing, yet the passages match the question closely: say so
            // and quote them rather than leave the asker with a refusal.
            let coverage = self.settings.offer_passages_coverage;
            let bm25 = self.retriever.bm25();
            if let Some((offer, cited)) =
                offer_passages(question, retrieval, &given, bm25, coverage)
            {
                emit(offer, &mut answer.text);
                answer.citations = cited;
            }
        } else if hold && grounding < self.settings.min_grounding {
            tracing::info!(
                grounding,
                "answer refused: too little of it is in the sources"
            );
            answer = not_found(question);
        }
        if let Some(tx) = on_delta.as_ref().filter(|_| hold) {
            let _ = tx.send(answer.text.clone());
        }
        Ok(answer)
    }

    /// The messages for the model, trimmed to its window: sources from the lowest rank and
    /// history from the oldest turn go first. Returns the citations of the sources kept.
    fn prompt(
        &self,
        context_window: usize,
        question: &str,
        history: &[HistoryTurn],
        retrieval: &Retrieval,
    ) -> (Vec<ChatMessage>, Vec<Citation>) {
        let template = if is_cjk(question) {
            &self.settings.system_prompt_zh
        } else {
            &self.settings.system_prompt_en
        };
        let budget = context_window.saturating_sub(self.answer_tokens);
        let tokens = |s: &str| estimate_tokens(s) as usize;
        let fixed = tokens(template) + tokens(question) + 16;
        let mut used = fixed;
        let mut blocks = Vec::new();
        let mut citations = Vec::new();
        // The model reads each hit's passage: its section's matching chunks in order.
        let passages = retrieval.hits.iter().zip(&retrieval.passages);
        for (i, (hit, passage)) in passages.enumerate() {
            let citation = Citation::of(i + 1, &hit.chunk, &self.links);
            let block = format!(
                "<<<SOURCE [{n}] {label}>>>\n{text}\n<<<END SOURCE [{n}]>>>",
                n = citation.n,
                label = citation.label(),
                text = passage.replace("<<<", "‹‹‹"),
            );
            // The best source always goes in, even if it alone overflows.
            if !blocks.is_empty() && used + tokens(&block) > budget {
                break;
            }
            used += tokens(&block);
            blocks.push(block);
            citations.push(citation);
        }
        let context = blocks.join("\n\n");
        let mut messages = vec![ChatMessage::system(template.replace("{context}", &context))];
        let mut kept: Vec<&HistoryTurn> = Vec::new();
        for turn in history.iter().rev() {
            let cost = tokens(&turn.text) + 8;
            if used + cost > budget {
                break;
            }
            used += cost;
            kept.push(turn);
        }
        for turn in kept.into_iter().rev() {
            messages.push(if turn.is_bot {
                ChatMessage::assistant(turn.text.clone())
            } else {
                ChatMessage::user(format!("{}: {}", turn.speaker, turn.text))
            });
        }
        messages.push(ChatMessage::user(question.to_owned()));
        (messages, citations)
    }
}

/// A rewrite is one line no longer than the question and the conversation it may draw on;
/// a multi-line or longer reply is the model answering, not rewriting.
fn looks_like_a_rewrite(rewrite: &str, question: &str, history: &[HistoryTurn]) -> bool {
    let chars = |s: &str| s.chars().count();
    let context: usize = history.iter().map(|t| chars(&t.text)).sum::<usize>() + chars(question);
    !rewrite.contains('\n') && chars(rewrite) <= context.max(2 * chars(question)) + 20
}
