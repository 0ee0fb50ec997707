//! Outgoing text: sanitising (no mass or user mentions from model output), splitting to a
//! platform's message limit without cutting a code fence, and throttled in-place edits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lore_chat::{ChatError, MessageHandle, ReplySink};

const ZWSP: char = '\u{200B}';
/// Characters reserved for closing a code fence at the end of a part.
const FENCE_CLOSE: &str = "\n```";

/// Neutralises mentions: `@everyone`, `@here` and `@name` get a zero-width space after the
/// `@`, and `<@id>`, `<@!id>`, `<@&id>`, `<#id>` one after the `<`. E-mail addresses stay.
pub fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        let next = chars.peek().copied();
        let word_next = next.is_some_and(|n| n.is_alphanumeric() || n == '_');
        let after_word = prev.is_some_and(|p| p.is_alphanumeric() || p == '.' || p == '_');
        let mention = c == '@' && word_next && !after_word;
        let tag = c == '<' && matches!(next, Some('@' | '#'));
        if mention || tag {
            out.push(ZWSP);
        }
        prev = Some(c);
    }
    out
}

/// Cuts `text` into parts of at most `limit` characters, preferring paragraph, then line,
/// then sentence, then word boundaries. A part that ends inside a code fence closes it and
/// the next part reopens it with the same language.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    // Room for a reopened fence line plus some text, whatever the caller passes.
    let limit = limit.max(64);
    let mut parts = Vec::new();
    let mut reopen = String::new();
    let mut rest = text.trim_end().to_owned();
    loop {
        let candidate = format!("{reopen}{rest}");
        if candidate.chars().count() <= limit {
            if !candidate.trim().is_empty() {
                parts.push(candidate);
            }
            return parts;
        }
        let budget = limit - FENCE_CLOSE.len();
        let window_end = byte_at_char(&candidate, budget);
        let cut = best_cut(&candidate[..window_end], reopen.len());
        let mut piece = candidate[..cut].trim_end().to_owned();
        reopen = match open_fence(&piece) {
            Some(lang) => {
                piece.push_str(FENCE_CLOSE);
                format!("```{lang}\n")
            }
            None => String::new(),
        };
        parts.push(piece);
        rest = candidate[cut..].trim_start_matches(['\n', '\r']).to_owned();
        if reopen.is_empty() {
            rest = rest.trim_start().to_owned();
        }
    }
}

/// Byte index of the `n`th character (or the end).
fn byte_at_char(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// The best place to cut `window`, after byte `min` so every part makes progress.
fn best_cut(window: &str, min: usize) -> usize {
    let after = |i: Option<usize>, skip: usize| i.map(|i| i + skip).filter(|&i| i > min);
    if let Some(i) = after(window.rfind("\n\n"), 1) {
        return i;
    }
    if let Some(i) = after(window.rfind('\n'), 1) {
        return i;
    }
    let sentence = window
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '。' | '！' | '？' | '；')
                || (matches!(c, '.' | '!' | '?' | ';')
                    && window[i + 1..].starts_with(char::is_whitespace))
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back();
    if let Some(i) = after(sentence, 0) {
        return i;
    }
    if let Some(i) = after(window.rfind(' '), 1) {
        return i;
    }
    window.len().max(min + 1).min(window.len())
}

/// The language of a code fence left open at the end of `text`, if one is.
fn open_fence(text: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(info) = line.strip_prefix("```") {
            open = match open {
                Some(_) => None,
                None => Some(info.trim().to_owned()),
            };
        }
    }
    open
}

/// One reply in the making: it edits a message in place as text streams in (at most once
/// per interval), then sends the final text split to the platform's limit.
pub struct Streamer {
    sink: Arc<dyn ReplySink>,
    handle: Option<Box<dyn MessageHandle>>,
    interval: Duration,
    last_edit: Option<Instant>,
    streamed: String,
}

impl Streamer {
    /// A reply through `sink`, editing `handle` (a queue-position notice) if given.
    pub fn new(
        sink: Arc<dyn ReplySink>,
        handle: Option<Box<dyn MessageHandle>>,
        interval: Duration,
    ) -> Self {
        Self {
            sink,
            handle,
            interval,
            last_edit: None,
            streamed: String::new(),
        }
    }

    /// Adds streamed text; shows it if the interval since the last edit has passed.
    pub async fn push(&mut self, delta: &str) -> Result<(), ChatError> {
        self.streamed.push_str(delta);
        if !self.sink.supports_edits()
            || self.last_edit.is_some_and(|t| t.elapsed() < self.interval)
        {
            return Ok(());
        }
        self.last_edit = Some(Instant::now());
        let limit = self.sink.max_message_chars().max(64);
        let mut preview: String = sanitise(&self.streamed);
        if preview.chars().count() > limit - 1 {
            preview = preview.chars().take(limit - 1).collect();
        }
        preview.push('…');
        self.show(&preview).await
    }

    /// Text streamed so far.
    pub fn streamed(&self) -> &str {
        &self.streamed
    }

    /// Sends the final text: the first part replaces the message shown so far, the rest follow.
    pub async fn finish(mut self, text: &str) -> Result<(), ChatError> {
        let parts = split(&sanitise(text), self.sink.max_message_chars());
        for part in parts {
            self.show(&part).await?;
            // Later parts are new messages.
            self.handle = None;
        }
        Ok(())
    }

    async fn show(&mut self, text: &str) -> Result<(), ChatError> {
        match &self.handle {
            Some(handle) => handle.edit(text).await,
            None => {
                self.handle = Some(self.sink.send(text).await?);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_and_user_mentions_are_neutralised() {
        let s = sanitise("hi @everyone and @here, ping <@123> <@!4> <@&5> <#6> @alice");
        assert!(!s.contains("@everyone"));
        assert!(!s.contains("@here"));
        assert!(!s.contains("@alice"));
        for m in ["<@123>", "<@!4>", "<@&5>", "<#6>"] {
            assert!(!s.contains(m), "{m} survived in {s}");
        }
        assert_eq!(sanitise("mail me at a@b.com"), "mail me at a@b.com");
    }

    #[test]
    fn parts_respect_the_limit_and_prefer_paragraphs() {
        let text = format!("{}\n\n{}", "a ".repeat(40).trim(), "b ".repeat(40).trim());
        let parts = split(&text, 100);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].starts_with('a') && parts[1].starts_with('b'));
    }

    #[test]
    fn a_code_fence_is_closed_and_reopened_across_parts() {
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n\n```rust\n{code}```\n\nDone.");
        let parts = split(&text, 500);
        assert!(parts.len() > 3);
        for p in &parts {
            assert!(p.chars().count() <= 500);
            assert_eq!(p.matches("```").count() % 2, 0, "unbalanced fence in {p}");
        }
        assert!(parts[1].starts_with("```rust\n"));
        let joined: String = parts.concat();
        assert!(joined.contains("let x199 = 199;"));
    }

    #[test]
    fn long_chinese_text_splits_on_sentences() {
        let text = "这是一个句子。".repeat(100);
        let parts = split(&text, 100);
        assert!(parts.iter().all(|p| p.ends_with('。')));
        assert_eq!(parts.concat(), text);
    }
}
