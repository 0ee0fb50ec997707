//! BM25 sparse vectors, computed in-process so every store backend scores identically.

use std::borrow::Cow;

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use serde_json::json;

use crate::store::SparseVector;

/// Encodes text as BM25 term weights. The multilingual tokenizer segments Chinese
/// (charabia + jieba); the default word tokenizer would make a Chinese sentence one token.
/// English and Chinese stopwords are dropped: function words like 的, 是, 在 carry no
/// evidence, and their posting lists are the longest, so they dominated sparse search time.
pub struct Bm25Encoder {
    model: EdgeBm25,
}

/// Identity of the sparse encoding, part of every chunk's content hash.
pub const BM25_ID: &str = "bm25-multilingual-v3-stopwords-en-zh-numbered-refs";

impl Bm25Encoder {
    pub fn new() -> Self {
        // Built through serde because qdrant-edge does not re-export the stopwords type.
        // avg_len: chunks are a few hundred characters; jieba words average under two.
        let config: EdgeBm25Config = serde_json::from_value(json!({
            "tokenizer": "multilingual",
            "avg_len": 160.0,
            "stopwords": { "languages": ["english", "chinese"] },
        }))
        .expect("the built-in BM25 configuration deserialises");
        Self {
            model: EdgeBm25::new(config).expect("the built-in BM25 configuration is valid"),
        }
    }

    /// Term-frequency weights of a stored chunk.
    pub fn document(&self, text: &str) -> SparseVector {
        let spans = reference_spans(text);
        let v =
            self.model
                .embed_document(&with_reference_terms(text, &spans, References::AddWhole));
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }

    /// Unit weights of a query's terms (the store applies IDF).
    pub fn query(&self, text: &str) -> SparseVector {
        self.query_weighted(text, 1.0)
    }

    /// [`query`](Self::query) with the word of each numbered reference weighing
    /// `reference_weight`: a question that names 式(13.6) asks about one place in a book,
    /// and its other words ("推导", "含义") are on every page of derivations.
    pub fn query_weighted(&self, text: &str, reference_weight: f32) -> SparseVector {
        let spans = reference_spans(text);
        let v = self
            .model
            .embed_query(&with_reference_terms(text, &spans, References::OnlyWhole));
        let mut query = SparseVector {
            indices: v.indices,
            values: v.values,
        };
        if !spans.is_empty() && reference_weight != 1.0 {
            let references = reference_words(text, &spans);
            let words = self.model.embed_query(&references).indices;
            for (index, value) in query.indices.iter().zip(&mut query.values) {
                if words.contains(index) {
                    *value *= reference_weight;
                }
            }
        }
        query
    }
}

/// Numbered references ("式(13.6)", "5.5.1节", "图 3.2") as whole words. The tokenizer splits
/// "13.6" at the dot into "13" and "6", words on every page of a book; whole, the number
/// names the one equation, section or figure a question asks about. The word is spelled in
/// letters ("13.6" → "refbdxg") so the tokenizer keeps it whole.
#[derive(Clone, Copy)]
enum References {
    /// A stored text keeps the parts and gains the whole word, so a query with the parts
    /// (or one from before this encoding) still matches them.
    AddWhole,
    /// A question's reference becomes the whole word alone: its parts would only match
    /// every other page that mentions a 13 and a 6.
    OnlyWhole,
}

/// `text` with the references at `spans` ([`reference_spans`]) as whole words.
fn with_reference_terms<'t>(
    text: &'t str,
    spans: &[std::ops::Range<usize>],
    how: References,
) -> Cow<'t, str> {
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    match how {
        References::AddWhole => Cow::Owned(format!("{text}{}", reference_words(text, spans))),
        References::OnlyWhole => {
            let mut out = String::with_capacity(text.len() + 12 * spans.len());
            let mut at = 0;
            for span in spans {
                out.push_str(&text[at..span.start]);
                out.push_str(&reference_word(&text[span.clone()]));
                at = span.end;
            }
            out.push_str(&text[at..]);
            Cow::Owned(out)
        }
    }
}

/// The words of the references at `spans` of `text`, one after another.
fn reference_words(text: &str, spans: &[std::ops::Range<usize>]) -> String {
    spans
        .iter()
        .map(|span| reference_word(&text[span.clone()]))
        .collect()
}

fn reference_word(number: &str) -> String {
    let letters: String = number
        .bytes()
        .map(|b| match b {
            b'.' => 'x',
            digit => char::from(b'a' + (digit - b'0')),
        })
        .collect();
    format!(" ref{letters} ")
}

/// Byte ranges of the numbered references: two to four dot-separated groups of one to three
/// digits, not part of a longer run of digits and dots (a decimal like 3.14159, a version
/// like 1.2.3.4.5).
fn reference_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let in_run = |b: u8| b.is_ascii_digit() || b == b'.';
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && in_run(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && in_run(bytes[i]) {
            i += 1;
        }
        // A trailing dot ends a sentence, not the number.
        let end = if bytes[i - 1] == b'.' { i - 1 } else { i };
        let groups: Vec<&str> = text[start..end].split('.').collect();
        let well_formed =
            (2..=4).contains(&groups.len()) && groups.iter().all(|g| (1..=3).contains(&g.len()));
        if well_formed {
            spans.push(start..end);
        }
    }
    spans
}

impl Default for Bm25Encoder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_segmented_into_words() {
        let bm25 = Bm25Encoder::new();
        let q = bm25.query("机器学习的基本概念是什么");
        // One token per sentence would mean the tokenizer ignored Chinese.
        assert!(q.indices.len() >= 3, "{q:?}");
        let d = bm25.document("机器学习是人工智能的一个分支。");
        let shared = q.indices.iter().filter(|i| d.indices.contains(i)).count();
        assert!(shared >= 1, "query {q:?} doc {d:?}");
    }

    #[test]
    fn numbered_references_are_whole_words() {
        use References::{AddWhole, OnlyWhole};
        let with_reference_terms =
            |text, how| with_reference_terms(text, &reference_spans(text), how).into_owned();
        assert_eq!(
            with_reference_terms("推导出式(13.6)", AddWhole),
            "推导出式(13.6) refbdxg "
        );
        assert_eq!(
            with_reference_terms("见5.5.1节和式 2.11.", AddWhole),
            "见5.5.1节和式 2.11. reffxfxb  refcxbb "
        );
        assert_eq!(
            with_reference_terms("推导出式(13.6)的含义", OnlyWhole),
            "推导出式( refbdxg )的含义"
        );
        // Plain numbers, decimals too long to be references, and version-like runs of
        // five groups add nothing.
        for plain in ["共 13 页", "π≈3.14159", "1.2.3.4.5", "第2章", ".5", "2024."] {
            assert_eq!(with_reference_terms(plain, AddWhole), plain);
        }
        let bm25 = Bm25Encoder::new();
        let page = bm25.document("由式(13.6)可得 w 的更新规则");
        let other = bm25.document("第13章的第6节讨论半监督学习");
        let asked = bm25.query("请推导式(13.6)");
        let shared = |d: &SparseVector| {
            asked
                .indices
                .iter()
                .filter(|i| d.indices.contains(i))
                .count()
        };
        assert!(
            shared(&page) > shared(&other),
            "the page holding (13.6) shares the reference word; the page with 13 and 6 apart does not"
        );
        assert_eq!(shared(&other), 0, "the question's 13 and 6 are one word");
        let weighted = bm25.query_weighted("请推导式(13.6)", 5.0);
        let reference = bm25.query(" refbdxg ").indices[0];
        for (index, value) in weighted.indices.iter().zip(&weighted.values) {
            let unweighted = asked.values[asked.indices.iter().position(|i| i == index).unwrap()];
            let expected = if *index == reference {
                5.0 * unweighted
            } else {
                unweighted
            };
            assert_eq!(*value, expected, "term {index}");
        }
    }

    #[test]
    fn stopwords_carry_no_weight() {
        let bm25 = Bm25Encoder::new();
        assert!(bm25.query("的").indices.is_empty());
        assert!(bm25.query("the").indices.is_empty());
        assert_eq!(
            bm25.query("机器学习的概念").indices.len(),
            bm25.query("机器学习 概念").indices.len()
        );
    }
}
