//! BM25 sparse vectors, computed in-process so every store backend scores identically.

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
pub const BM25_ID: &str = "bm25-multilingual-v2-stopwords-en-zh";

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
        let v = self.model.embed_document(text);
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
    }

    /// Unit weights of a query's terms (the store applies IDF).
    pub fn query(&self, text: &str) -> SparseVector {
        let v = self.model.embed_query(text);
        SparseVector {
            indices: v.indices,
            values: v.values,
        }
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
