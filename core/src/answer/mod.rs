//! Answers with numbered citations. Without an LLM the answer is extractive: the best
//! passages, quoted and cited. Below the evidence gate the answer says so, honestly.

mod assistant;
pub mod attribution;
mod citations;
pub mod naming;
mod settings;

use serde::Serialize;

pub use assistant::{AnswerError, Assistant, HistoryTurn};
pub use attribution::{Attributor, NOT_FOUND_MARK, SentenceSupport, Unsupported};
pub use citations::{CitationFilter, filter_citations};
pub use naming::{SourceLinks, display_name, resolve_source};
pub use settings::AnswerSettings;

use std::collections::HashSet;

use crate::embed::bm25::Bm25Encoder;
use crate::retrieve::{Retrieval, lexical_words};
use crate::store::Chunk;

/// Passages quoted in an extractive answer.
const EXTRACTIVE_PASSAGES: usize = 3;
/// Characters quoted per passage.
const QUOTE_CHARS: usize = 400;

/// Where a numbered citation points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub n: usize,
    /// The source as people know it: its path relative to the folder it was ingested
    /// from, its URL, or the link to a chat post (see [`naming`]).
    pub source: String,
    /// The document's own title, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub timestamp: Option<String>,
    /// Where to open it: the source's URL, or its `[answer.source_links]` link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Citation {
    /// Citation `n` of a stored chunk, named for people (never a server path).
    pub fn of(n: usize, chunk: &Chunk, links: &SourceLinks) -> Self {
        let source = display_name(&chunk.source);
        Self {
            n,
            url: links.link(&source),
            source,
            title: chunk.title.clone(),
            page: chunk.page,
            heading: chunk.heading.clone(),
            timestamp: chunk.timestamp.clone(),
        }
    }

    /// "Title (source), p. 12 · heading", or "source, p. 12 · heading" without a title.
    pub fn label(&self) -> String {
        let mut label = match &self.title {
            Some(title) => format!("{title} ({})", self.source),
            None => self.source.clone(),
        };
        if let Some(page) = self.page {
            label.push_str(&format!(", p. {page}"));
        }
        if let Some(ts) = &self.timestamp {
            label.push_str(&format!(" @ {ts}"));
        }
        // A Markdown heading path starts with the title already shown.
        let heading = self.heading.as_deref().and_then(|h| match &self.title {
            Some(title) if h == title => None,
            Some(title) => Some(h.strip_prefix(&format!("{title} > ")).unwrap_or(h)),
            None => Some(h),
        });
        if let Some(heading) = heading {
            label.push_str(&format!(" · {heading}"));
        }
        label
    }
}

/// An answer and the sources its `[n]` markers refer to.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    pub citations: Vec<Citation>,
    /// False when the knowledge base had no evidence for the question.
    pub grounded: bool,
    /// Share of the answer's judged text (characters) some source supports, 0 to 1: 1 for
    /// quoted passages, 0 for "not in the knowledge base".
    pub grounding: f32,
    /// Each sentence of a generated answer with its citations and support.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentences: Vec<SentenceSupport>,
}

impl Answer {
    /// The answer followed by its numbered sources, as shown in a terminal or a chat.
    pub fn render(&self) -> String {
        let mut out = self.text.trim_end().to_owned();
        if !self.citations.is_empty() {
            out.push_str("\n\nSources:");
            for c in &self.citations {
                out.push_str(&format!("\n[{}] {}", c.n, c.label()));
                if let Some(url) = c.url.as_ref().filter(|u| **u != c.source) {
                    out.push_str(&format!(" <{url}>"));
                }
            }
        }
        out
    }
}

/// True when the text is mostly Chinese/Japanese/Korean, to answer in the asker's language.
pub fn is_cjk(text: &str) -> bool {
    let (cjk, letters) = text.chars().fold((0usize, 0usize), |(c, l), ch| {
        if is_cjk_char(ch) {
            (c + 1, l + 1)
        } else if ch.is_alphabetic() {
            (c, l + 1)
        } else {
            (c, l)
        }
    });
    letters > 0 && cjk * 2 >= letters
}

fn is_cjk_char(ch: char) -> bool {
    matches!(ch as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// The honest answer when nothing in the knowledge base supports the question.
pub fn not_found(question: &str) -> Answer {
    let text = if is_cjk(question) {
        "知识库中没有找到能回答这个问题的内容。可以换个说法再问，或者先把相关文档加入知识库。"
    } else {
        "I could not find this in the knowledge base. Try rephrasing, or add the relevant documents first."
    };
    Answer {
        text: text.to_owned(),
        citations: Vec::new(),
        grounded: false,
        grounding: 0.0,
        sentences: Vec::new(),
    }
}

/// An answer made of the best passages themselves, for when no LLM is configured.
pub fn extractive(question: &str, retrieval: &Retrieval) -> Answer {
    extractive_with(question, retrieval, &SourceLinks::default())
}

/// [`extractive`] with citations linked through `links`.
pub fn extractive_with(question: &str, retrieval: &Retrieval, links: &SourceLinks) -> Answer {
    if !retrieval.evidence || retrieval.hits.is_empty() {
        return not_found(question);
    }
    let mut text = if is_cjk(question) {
        "未配置大语言模型，以下是知识库中最相关的段落：\n".to_owned()
    } else {
        "No LLM is configured, so here are the most relevant passages from the knowledge base:\n"
            .to_owned()
    };
    let mut citations = Vec::new();
    let passages = retrieval.hits.iter().zip(&retrieval.passages);
    for (i, (hit, passage)) in passages.take(EXTRACTIVE_PASSAGES).enumerate() {
        let n = i + 1;
        text.push_str(&format!("\n[{n}] {}\n", quote(passage)));
        citations.push(Citation::of(n, &hit.chunk, links));
    }
    Answer {
        text,
        citations,
        grounded: true,
        grounding: 1.0,
        sentences: Vec::new(),
    }
}

/// Passages offered after a refusal at most.
const OFFERED_PASSAGES: usize = 2;

/// When the model said the sources hold no answer: the given passages holding at least
/// `coverage` of the question's BM25 terms (best first), quoted and cited as text to append,
/// with their citations numbered from 1. None when no passage matches that well.
pub(crate) fn offer_passages(
    question: &str,
    retrieval: &Retrieval,
    given: &[Citation],
    bm25: &Bm25Encoder,
    coverage: f32,
) -> Option<(String, Vec<Citation>)> {
    let terms: HashSet<u32> = bm25
        .query(&lexical_words(question))
        .indices
        .into_iter()
        .collect();
    if terms.is_empty() {
        return None;
    }
    let mut matches: Vec<(f32, usize)> = retrieval.passages[..given.len()]
        .iter()
        .enumerate()
        .map(|(i, passage)| {
            let words: HashSet<u32> = bm25.document(passage).indices.into_iter().collect();
            let found = terms.iter().filter(|t| words.contains(t)).count();
            (found as f32 / terms.len() as f32, i)
        })
        .filter(|(share, _)| *share >= coverage)
        .collect();
    if matches.is_empty() {
        return None;
    }
    matches.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut text = if is_cjk(question) {
        "\n\n不过，知识库中有和这个问题高度相关的段落，请自行查看：\n".to_owned()
    } else {
        "\n\nThe model found no answer in the sources, but these passages match the question closely:\n".to_owned()
    };
    let mut citations = Vec::new();
    for (n, (_, i)) in matches.into_iter().take(OFFERED_PASSAGES).enumerate() {
        let n = n + 1;
        text.push_str(&format!("\n[{n}] {}\n", quote(&retrieval.passages[i])));
        citations.push(Citation {
            n,
            ..given[i].clone()
        });
    }
    Some((text, citations))
}

/// The passage on one line, cut at a character boundary.
fn quote(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(QUOTE_CHARS).collect();
    if flat.chars().count() > QUOTE_CHARS {
        out.push('…');
    }
    format!("“{out}”")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_detection_follows_the_question() {
        assert!(is_cjk("什么是机器学习?"));
        assert!(is_cjk("什么是 SVM 的核函数"));
        assert!(!is_cjk("What is a kernel?"));
        assert!(!is_cjk("12345"));
    }

    #[test]
    fn quotes_are_cut_on_character_boundaries() {
        let long = "中".repeat(QUOTE_CHARS + 10);
        let q = quote(&long);
        assert_eq!(q.chars().count(), QUOTE_CHARS + 3);
        assert!(q.ends_with("…”"));
    }

    #[test]
    fn citation_label_names_file_page_and_heading() {
        let mut c = Citation {
            n: 1,
            source: "book.pdf".into(),
            title: None,
            page: Some(12),
            heading: Some("SVM".into()),
            timestamp: None,
            url: None,
        };
        assert_eq!(c.label(), "book.pdf, p. 12 · SVM");
        c.title = Some("Machine Learning".into());
        assert_eq!(c.label(), "Machine Learning (book.pdf), p. 12 · SVM");
        c.heading = Some("Machine Learning > SVM".into());
        assert_eq!(c.label(), "Machine Learning (book.pdf), p. 12 · SVM");
    }
}
