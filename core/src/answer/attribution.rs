//! Attribution: which source backs each sentence of an answer. The answer is cut into
//! sentences (Chinese 。！？, English .!? before a space, line ends) as it streams; each
//! sentence's BM25 terms (the tokenizer retrieval uses: jieba for Chinese, stopwords out)
//! are looked up in every passage the model was given, and a sentence is supported by a
//! passage holding at least `support_threshold` of them. A marker the model wrote is kept
//! when its passage supports the sentence, replaced by the best passage's when another one
//! does, and dropped when none does; a supported sentence without a marker gets one. A
//! sentence no passage supports is marked "not found in the sources", or dropped
//! (`unsupported = "drop"`). Markers are renumbered in order of first use, so the sources
//! list holds only what the answer uses, in the order it uses them. Sentences too short to
//! judge (fewer than two terms), headings, table rows, code and refusals are left as they
//! are and do not count towards the grounding score.

use std::collections::HashSet;

use serde::Serialize;

use crate::embed::bm25::Bm25Encoder;

crate::choice! {
    /// What happens to a sentence no source supports.
    pub enum Unsupported {
        /// It stays, followed by a warning.
        Mark = "mark",
        /// It is left out of the answer.
        Drop = "drop",
    }
}

/// Appended to a sentence no source supports.
pub const NOT_FOUND_MARK: &str = "⚠︎ not found in the sources";

/// Sentences with fewer BM25 terms than this are not judged ("Yes.", "另见。"), and a
/// passage must hold at least this many of a sentence's terms to support it.
const MIN_TERMS: usize = 2;

/// Phrases of a model saying the sources do not hold the answer.
const REFUSALS: &[&str] = &[
    "知识库中没有",
    "没有相关内容",
    "没有找到",
    "无法回答",
    "资料中没有",
    "资料中未",
    "未提及",
    "没有提到",
    "没有提及",
    "not in the knowledge base",
    "knowledge base does not",
    "knowledge base doesn't",
    "sources do not",
    "sources don't",
    "does not contain",
    "doesn't contain",
    "could not find",
    "couldn't find",
    "cannot find",
    "can't find",
    "no information",
    "not mentioned",
    "do not know",
    "don't know",
];

/// One sentence of an answer and what backs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentenceSupport {
    /// The sentence as shown, with its markers.
    pub text: String,
    /// The numbers of the citations it carries (as numbered in the answer).
    pub citations: Vec<usize>,
    /// Share of the sentence's terms found in its best passage (0 to 1).
    pub support: f32,
    /// Whether some passage supports it; absent when it was not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported: Option<bool>,
}

/// True when `text` reads as the model saying the sources hold no answer.
pub fn is_refusal(text: &str) -> bool {
    let lower = text.to_lowercase();
    REFUSALS.iter().any(|r| lower.contains(r))
}

/// Attributes a streamed answer sentence by sentence. Text goes in as it comes (already
/// through the [`CitationFilter`](super::CitationFilter), so every marker names a given
/// source) and comes out a sentence at a time, attributed.
pub struct Attributor<'a> {
    bm25: &'a Bm25Encoder,
    /// Each given source's terms (source `n` at `n - 1`).
    passages: Vec<HashSet<u32>>,
    /// Which scripts the passages are written in: (some mostly CJK, some not).
    scripts: (bool, bool),
    threshold: f32,
    unsupported: Unsupported,
    /// Given source numbers in the order the answer first uses them.
    order: Vec<usize>,
    pending: String,
    at_line_start: bool,
    fenced: bool,
    sentences: Vec<SentenceSupport>,
    refused: bool,
}

impl<'a> Attributor<'a> {
    pub fn new(
        bm25: &'a Bm25Encoder,
        passages: &[&str],
        threshold: f32,
        unsupported: Unsupported,
    ) -> Self {
        let scripts = passages.iter().fold((false, false), |(cjk, other), p| {
            let is = super::is_cjk(p);
            (cjk || is, other || !is)
        });
        let passages = passages
            .iter()
            .map(|p| bm25.document(p).indices.into_iter().collect())
            .collect();
        Self {
            bm25,
            passages,
            scripts,
            threshold,
            unsupported,
            order: Vec::new(),
            pending: String::new(),
            at_line_start: true,
            fenced: false,
            sentences: Vec::new(),
            refused: false,
        }
    }

    /// Takes a piece of the answer; returns what is attributed so far.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        self.drain(false)
    }

    /// Ends the answer: the rest is attributed and returned.
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Given source numbers the answer cites, in the order of their citation numbers.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn sentences(&self) -> &[SentenceSupport] {
        &self.sentences
    }

    /// Whether the model said the sources hold no answer.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Share of the judged answer text (in characters) that some source supports; 0 when
    /// nothing could be judged.
    pub fn grounding(&self) -> f32 {
        let (mut supported, mut judged) = (0usize, 0usize);
        for s in &self.sentences {
            // The sentence as the model wrote it: lore's own mark does not count.
            let written = s.text.strip_suffix(NOT_FOUND_MARK).unwrap_or(&s.text);
            let chars = written.trim_end().chars().count();
            match s.supported {
                Some(true) => {
                    supported += chars;
                    judged += chars;
                }
                Some(false) => judged += chars,
                None => {}
            }
        }
        if judged == 0 {
            0.0
        } else {
            supported as f32 / judged as f32
        }
    }

    /// Emits every complete sentence, code line and run of whitespace held; with `all`,
    /// everything.
    fn drain(&mut self, all: bool) -> String {
        let mut out = String::new();
        while let Some(first) = self.pending.chars().next() {
            if first.is_whitespace() {
                self.pending.remove(0);
                if first == '\n' {
                    self.at_line_start = true;
                }
                out.push(first);
                continue;
            }
            // Code fences and the lines inside them pass as they are.
            let maybe_fence = self.at_line_start
                && (self.pending.starts_with("```") || self.pending.starts_with("~~~"));
            let undecided = self.at_line_start
                && !all
                && self.pending.len() < 3
                && self.pending.chars().all(|c| c == '`' || c == '~');
            if undecided {
                break;
            }
            if self.fenced || maybe_fence {
                let Some(end) = self
                    .pending
                    .find('\n')
                    .or(all.then_some(self.pending.len()))
                else {
                    break;
                };
                let line: String = self.pending.drain(..end).collect();
                if maybe_fence {
                    self.fenced = !self.fenced;
                }
                out.push_str(&line);
                self.at_line_start = false;
                continue;
            }
            let Some(end) = sentence_end(&self.pending, all) else {
                break;
            };
            let sentence: String = self.pending.drain(..end).collect();
            let line_start = self.at_line_start;
            self.at_line_start = false;
            out.push_str(&self.attribute(&sentence, line_start));
        }
        out
    }

    /// One sentence, attributed: its markers kept, corrected, dropped or added.
    fn attribute(&mut self, sentence: &str, line_start: bool) -> String {
        let parts = split_markers(sentence, self.passages.len());
        let plain: String = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Marker { .. } => None,
            })
            .collect();
        let written: Vec<usize> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Marker { n, .. } => Some(*n),
                Part::Text(_) => None,
            })
            .collect();
        let terms: HashSet<u32> = self.bm25.query(&plain).indices.into_iter().collect();
        let refusal = is_refusal(&plain);
        self.refused |= refusal;
        let trimmed = plain.trim_start();
        let structural = line_start && (trimmed.starts_with('#') || trimmed.starts_with('|'));
        // Words cannot back a sentence in another language than every passage (an English
        // answer from Chinese notes): such a sentence is not judged rather than marked.
        let other_language = if super::is_cjk(&plain) {
            !self.scripts.0
        } else {
            !self.scripts.1
        };
        if refusal || structural || other_language || terms.len() < MIN_TERMS {
            // Not judged: the model's own markers stay.
            let text = self.render(&parts, &written, &[]);
            let citations = written.iter().map(|n| self.number(*n)).collect();
            self.sentences.push(SentenceSupport {
                text: text.clone(),
                citations,
                support: 0.0,
                supported: None,
            });
            return text;
        }
        // A passage supports the sentence when it holds `threshold` of its terms and at
        // least two of them: one shared word ("产自") is a topic, not a claim.
        let scores: Vec<f32> = self
            .passages
            .iter()
            .map(|p| {
                let found = terms.iter().filter(|t| p.contains(t)).count();
                if found < MIN_TERMS {
                    0.0
                } else {
                    found as f32 / terms.len() as f32
                }
            })
            .collect();
        let best = (1..=scores.len()).max_by(|a, b| scores[a - 1].total_cmp(&scores[b - 1]));
        let best_score = best.map_or(0.0, |b| scores[b - 1]);
        let supports = |n: &usize| scores.get(n - 1).is_some_and(|s| *s >= self.threshold);
        let kept: Vec<usize> = written.iter().copied().filter(supports).collect();
        let added: Vec<usize> = match best {
            Some(b) if kept.is_empty() && best_score >= self.threshold => vec![b],
            _ => Vec::new(),
        };
        let supported = !kept.is_empty() || !added.is_empty();
        if !supported && self.unsupported == Unsupported::Drop {
            self.sentences.push(SentenceSupport {
                text: String::new(),
                citations: Vec::new(),
                support: best_score,
                supported: Some(false),
            });
            return String::new();
        }
        let mut text = self.render(&parts, &kept, &added);
        // Chinese runs sentences together without spaces; the mark then needs one after it,
        // or it reads as part of the next sentence.
        let mut after_mark = "";
        if !supported {
            text.push(' ');
            text.push_str(NOT_FOUND_MARK);
            if super::is_cjk(&plain) {
                after_mark = " ";
            }
        }
        let citations = kept.iter().chain(&added).map(|n| self.number(*n)).collect();
        // A supported sentence scores by the sources it cites, another by its best one.
        let support = if supported {
            kept.iter()
                .chain(&added)
                .map(|n| scores[n - 1])
                .fold(0.0, f32::max)
        } else {
            best_score
        };
        self.sentences.push(SentenceSupport {
            text: text.clone(),
            citations,
            support,
            supported: Some(supported),
        });
        text + after_mark
    }

    /// The sentence with the markers in `keep` renumbered in place, the others removed, and
    /// `add` inserted before its closing punctuation.
    fn render(&mut self, parts: &[Part], keep: &[usize], add: &[usize]) -> String {
        let mut text = String::new();
        for part in parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Marker { n, space } if keep.contains(n) => {
                    let shown = self.number(*n);
                    text.push_str(space);
                    text.push_str(&format!("[{shown}]"));
                }
                Part::Marker { .. } => {}
            }
        }
        if add.is_empty() {
            return text;
        }
        let mut markers = String::new();
        for n in add {
            let shown = self.number(*n);
            markers.push_str(&format!("[{shown}]"));
        }
        let stem_end = text
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_closing(*c) || c.is_whitespace())
            .last()
            .map_or(text.len(), |(i, _)| i);
        let (stem, tail) = text.split_at(stem_end);
        let gap = match stem.chars().last() {
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, ')' | '`' | '*') => " ",
            _ => "",
        };
        format!("{stem}{gap}{markers}{tail}")
    }

    /// The number shown for given source `n`: its place in the order of first use.
    fn number(&mut self, n: usize) -> usize {
        match self.order.iter().position(|&o| o == n) {
            Some(i) => i + 1,
            None => {
                self.order.push(n);
                self.order.len()
            }
        }
    }
}

/// Punctuation that closes a sentence, and what may follow it (quotes, brackets).
fn is_closing(c: char) -> bool {
    matches!(
        c,
        '。' | '！'
            | '？'
            | '!'
            | '?'
            | '.'
            | '…'
            | '；'
            | ';'
            | ':'
            | '：'
            | '”'
            | '’'
            | '"'
            | '\''
            | '）'
            | ')'
            | '」'
            | '』'
            | '*'
    )
}

/// A sentence's text and its `[n]` markers (with the spaces before them).
enum Part {
    Text(String),
    Marker { n: usize, space: String },
}

/// Cuts a sentence into text and markers naming sources `1..=sources`; brackets inside
/// inline code are text.
fn split_markers(sentence: &str, sources: usize) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut code = false;
    let mut rest = sentence;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            code = !code;
        }
        if c == '['
            && !code
            && let Some((n, len)) = marker_at(rest).filter(|(n, _)| (1..=sources).contains(n))
        {
            let keep = text.trim_end_matches([' ', '\t']).len();
            let space = text.split_off(keep);
            parts.push(Part::Text(std::mem::take(&mut text)));
            parts.push(Part::Marker { n, space });
            rest = &rest[len..];
            continue;
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    parts.push(Part::Text(text));
    parts
}

/// `[digits]` at the start of `s`: the number and the marker's length in bytes.
fn marker_at(s: &str) -> Option<(usize, usize)> {
    let inner = s.strip_prefix('[')?;
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 || inner.as_bytes().get(digits) != Some(&b']') {
        return None;
    }
    Some((inner[..digits].parse().ok()?, digits + 2))
}

/// Where the first sentence of `text` ends (bytes), including closing quotes and the
/// markers that follow it; None when more text is needed to know (unless `all`).
fn sentence_end(text: &str, all: bool) -> Option<usize> {
    let mut code = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '`' => code = !code,
            '\n' => return Some(i),
            _ if code => {}
            '。' | '！' | '？' | '!' | '?' => {
                return after_terminator(text, i + c.len_utf8(), all);
            }
            '.' => match chars.peek() {
                // "1. item" numbers a list; "3.14", "e.g" go on.
                Some((_, next)) if next.is_whitespace() => {
                    // No line break precedes: a sentence ends at one.
                    if !text[..i].trim().chars().all(|d| d.is_ascii_digit()) {
                        return after_terminator(text, i + 1, all);
                    }
                }
                Some(_) => {}
                None if all => return Some(text.len()),
                None => return None,
            },
            _ => {}
        }
    }
    all.then_some(text.len())
}

/// The end of a sentence whose terminator ends at `from`: past closing quotes and brackets
/// and the markers after it. None when the text stops before that is known.
fn after_terminator(text: &str, from: usize, all: bool) -> Option<usize> {
    let mut end = from;
    let rest = &text[from..];
    let closing = rest
        .char_indices()
        .find(|(_, c)| !matches!(c, '”' | '’' | '"' | '）' | ')' | '」' | '』' | '*'))
        .map_or(rest.len(), |(i, _)| i);
    end += closing;
    loop {
        let rest = &text[end..];
        let spaces = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let after = &rest[spaces..];
        if after.is_empty() {
            return if all { Some(end) } else { None };
        }
        match marker_at(after) {
            Some((_, len)) => end += spaces + len,
            // A marker may still be arriving: "[", "[1", "[12".
            None if !all
                && after.starts_with('[')
                && after.len() <= 4
                && after[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                return None;
            }
            None => return Some(end),
        }
    }
}

#[cfg(test)]
mod tests;
