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
        let v = self.model.embed_document(&with_reference_terms(text));
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }

    /// Unit weights of a query's terms (the store applies IDF).
    pub fn query(&self, text: &str) -> SparseVector {
        let v = self.model.embed_query(&with_reference_terms(text));
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }
}

/// The text with one extra word per numbered reference ("式(13.6)", "5.5.1节", "图 3.2"),
/// spelled in letters so the tokenizer keeps it whole. The tokenizer splits "13.6" at the
/// dot into "13" and "6", words on every page of a book; whole, the number names the one
/// equation, section or figure a question asks about. Its parts stay too, so a store
/// written before this still matches them.
fn with_reference_terms(text: &str) -> Cow<'_, str> {
    let mut extra = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.'));
        if !starts_number {
            i += 1;
            continue;
        }
        let start = i;
        let (mut groups, mut digits) = (1, 0);
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => digits += 1,
                b'.' if digits > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    groups += 1;
                    digits = 0;
                }
                _ => break,
            }
            if digits > 3 {
                break;
            }
            i += 1;
        }
        let ends_clean = !bytes.get(i).is_some_and(|b| b.is_ascii_digit());
        if (2..=4).contains(&groups) && ends_clean {
            extra.push_str(" ref");
            extra.extend(text[start..i].bytes().map(|b| match b {
                b'.' => 'x',
                digit => char::from(b'a' + (digit - b'0')),
            }));
        }
        // Skip the rest of a run too long to be a reference (a decimal like 3.14159).
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
    }
    if extra.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text}{extra}"))
    }
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
        assert_eq!(
            with_reference_terms("推导出式(13.6)"),
            "推导出式(13.6) refbdxg"
        );
        assert_eq!(
            with_reference_terms("见5.5.1节和式 2.11"),
            "见5.5.1节和式 2.11 reffxfxb refcxbb"
        );
        // Plain numbers, decimals too long to be references, and version-like runs of
        // five groups add nothing.
        for plain in ["共 13 页", "π≈3.14159", "1.2.3.4.5", "第2章", ".5"] {
            assert_eq!(with_reference_terms(plain), plain);
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
