//! Retrieval: embed the question, query the store in the chosen mode, re-rank (MMR), and
//! decide whether the evidence is strong enough to answer from.

mod mmr;
mod question;
mod sections;
mod settings;

pub use question::lexical_words;
pub use settings::{Fusion, RankUnit, RetrievalSettings};

use std::collections::HashSet;
use std::sync::Arc;

use crate::embed::bm25::Bm25Encoder;
use crate::embed::{EmbedError, Embedder};
use crate::store::{
    Hit, KnowledgeStore, SearchRequest, SparseVector, StoreError, StoreQuery, TenantScope,
};
use sections::SectionHit;

crate::choice! {
    /// How candidates are scored.
    pub enum SearchMode {
        /// Dense vectors and BM25, fused with reciprocal rank fusion.
        Hybrid = "hybrid",
        /// Dense vectors only.
        Dense = "dense",
        /// BM25 only.
        Sparse = "sparse",
        /// Hybrid candidates re-ranked for diversity (maximal marginal relevance).
        Mmr = "mmr",
    }
}

/// Why retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("embedding the question: {0}")]
    Embed(#[from] EmbedError),
}

/// The outcome of a search: hits, best first, and whether they clear the evidence gate.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// Best first: one per section (its best chunk), or chunks when ranking chunks.
    pub hits: Vec<Hit>,
    /// What an answer reads for each hit: the hit's section's matching chunks in reading
    /// order (or the chunk itself when ranking chunks).
    pub passages: Vec<String>,
    /// The mode actually used (a dense mode falls back to sparse without an embedder).
    pub mode: SearchMode,
    pub evidence: bool,
    /// What the evidence gate saw: the best hit's dense cosine to the question (None
    /// without dense vectors) and the best share of the question's BM25 terms a hit holds.
    pub best_dense: Option<f32>,
    pub best_coverage: f32,
}

impl Retrieval {
    /// One result from several searches of the same scope (a question asked in different
    /// words, the preferred wording first): their hits taken in turns, rank by rank, each
    /// section once, so every wording's best hits are in. Searches without evidence are
    /// left out unless none has any. A rank-sum fusion would let the hits two wordings
    /// share (often generic ones) push out the one page only the user's own words find.
    pub fn fuse(searches: Vec<Retrieval>, k: usize) -> Retrieval {
        let mode = searches.first().map_or(SearchMode::Sparse, |r| r.mode);
        let evidence = searches.iter().any(|r| r.evidence);
        let best_dense = searches
            .iter()
            .filter_map(|r| r.best_dense)
            .reduce(f32::max);
        let best_coverage = searches.iter().map(|r| r.best_coverage).fold(0.0, f32::max);
        let mut lists: Vec<_> = searches
            .into_iter()
            .filter(|r| r.evidence || !evidence)
            .map(|r| r.hits.into_iter().zip(r.passages))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let (mut hits, mut passages) = (Vec::new(), Vec::new());
        while hits.len() < k {
            let mut took_any = false;
            for list in &mut lists {
                let Some((hit, passage)) = list.next() else {
                    continue;
                };
                took_any = true;
                if hits.len() < k && seen.insert(sections::SectionKey::of(&hit.chunk)) {
                    hits.push(hit);
                    passages.push(passage);
                }
            }
            if !took_any {
                break;
            }
        }
        Retrieval {
            hits,
            passages,
            mode,
            evidence,
            best_dense,
            best_coverage,
        }
    }
}

/// A question encoded for the store: see [`Retriever::encode`].
pub struct EncodedQuestion {
    /// The mode actually used (a dense mode falls back to sparse without an embedder).
    mode: SearchMode,
    sparse: SparseVector,
    dense: Option<Vec<f32>>,
}

/// Searches one store with one embedder configuration.
pub struct Retriever {
    store: Arc<dyn KnowledgeStore>,
    embedder: Option<Arc<dyn Embedder>>,
    bm25: Arc<Bm25Encoder>,
    settings: RetrievalSettings,
}

impl Retriever {
    pub fn new(
        store: Arc<dyn KnowledgeStore>,
        embedder: Option<Arc<dyn Embedder>>,
        bm25: Arc<Bm25Encoder>,
        settings: RetrievalSettings,
    ) -> Self {
        Self {
            store,
            embedder,
            bm25,
            settings,
        }
    }

    pub fn settings(&self) -> &RetrievalSettings {
        &self.settings
    }

    /// The BM25 encoder (and so the tokenizer) searches use.
    pub fn bm25(&self) -> &Bm25Encoder {
        &self.bm25
    }

    /// The same store and embedders searched with other settings (`lore eval sweep`).
    pub fn with_settings(&self, settings: RetrievalSettings) -> Self {
        Self {
            store: self.store.clone(),
            embedder: self.embedder.clone(),
            bm25: self.bm25.clone(),
            settings,
        }
    }

    /// The mode a request will really run in.
    pub fn effective_mode(&self, requested: Option<SearchMode>) -> SearchMode {
        let mode = requested.unwrap_or(self.settings.mode);
        if self.embedder.is_none() && mode != SearchMode::Mmr {
            SearchMode::Sparse
        } else {
            mode
        }
    }

    /// The `k` best sections for `question` within `scope` (one hit per section: its best
    /// chunk), or the `k` best chunks when `[retrieval] rank_by = "chunk"`.
    pub async fn search(
        &self,
        scope: &TenantScope,
        question: &str,
        mode: Option<SearchMode>,
        k: usize,
    ) -> Result<Retrieval, RetrieveError> {
        self.search_by(scope, question, mode, k, self.settings.rank_by)
            .await
    }

    /// [`search`](Self::search) ranking the given unit.
    pub async fn search_by(
        &self,
        scope: &TenantScope,
        question: &str,
        mode: Option<SearchMode>,
        k: usize,
        unit: RankUnit,
    ) -> Result<Retrieval, RetrieveError> {
        let encoded = self.encode(question, mode).await?;
        self.search_encoded(scope, &encoded, k, unit).await
    }

    /// The question as the store reads it in `mode` (the configured one when None): its
    /// BM25 terms and, for the dense modes, its embedding. Encode once to rank it several
    /// ways ([`search_encoded`](Self::search_encoded)).
    pub async fn encode(
        &self,
        question: &str,
        mode: Option<SearchMode>,
    ) -> Result<EncodedQuestion, RetrieveError> {
        let mode = self.effective_mode(mode);
        let lexical = if self.settings.cut_instructions {
            question::lexical_words(question)
        } else {
            question.to_owned()
        };
        let sparse = self
            .bm25
            .query_weighted(&lexical, self.settings.reference_weight);
        let dense = match (&self.embedder, mode) {
            (Some(embedder), SearchMode::Dense | SearchMode::Hybrid | SearchMode::Mmr) => {
                Some(embedder.embed_query(question).await?)
            }
            _ => None,
        };
        Ok(EncodedQuestion {
            mode,
            sparse,
            dense,
        })
    }

    /// [`search_by`](Self::search_by) for a question already encoded.
    pub async fn search_encoded(
        &self,
        scope: &TenantScope,
        encoded: &EncodedQuestion,
        k: usize,
        unit: RankUnit,
    ) -> Result<Retrieval, RetrieveError> {
        let EncodedQuestion {
            mode,
            sparse,
            dense,
        } = encoded;
        let mode = *mode;
        let candidates = k * self.settings.candidate_factor;
        let (hits, passages) = match (unit, mode, dense.clone()) {
            (RankUnit::Section, SearchMode::Hybrid, Some(d)) => {
                let (dense_side, sparse_side) = futures::try_join!(
                    self.side(scope, StoreQuery::Dense(d), candidates),
                    self.side(scope, StoreQuery::Sparse(sparse.clone()), candidates),
                )?;
                let (dense_side, sparse_side) = (
                    sections::collapse(dense_side),
                    sections::collapse(sparse_side),
                );
                let w = self.settings.dense_weight;
                let fused = match self.settings.fusion {
                    Fusion::Standardised => sections::fuse_standardised(dense_side, sparse_side, w),
                    Fusion::Rrf => {
                        sections::fuse_rrf(dense_side, sparse_side, w, self.settings.rrf_k)
                    }
                };
                self.section_hits(fused, k)
            }
            (RankUnit::Section, _, dense) => {
                let query = self.store_query(mode, dense, sparse);
                let hits = self.side(scope, query, candidates).await?;
                let hits = if mode == SearchMode::Mmr {
                    mmr::select(hits, candidates, self.settings.mmr_lambda)
                } else {
                    hits
                };
                self.section_hits(sections::collapse(hits), k)
            }
            (RankUnit::Chunk, _, dense) => {
                let is_mmr = mode == SearchMode::Mmr;
                let mut hits = self
                    .store
                    .search(SearchRequest {
                        scope: scope.clone(),
                        query: self.store_query(mode, dense, sparse),
                        limit: if is_mmr { candidates } else { k },
                        candidates,
                        with_vectors: true,
                    })
                    .await?;
                if is_mmr {
                    hits = mmr::select(hits, k, self.settings.mmr_lambda);
                }
                let passages = hits.iter().map(|h| h.chunk.text.clone()).collect();
                (hits, passages)
            }
        };
        let gate = EvidenceFigures::of(&sparse.indices, dense.as_deref(), &hits);
        let evidence = gate.clears(&self.settings);
        let (best_dense, best_coverage) = (gate.best_dense, gate.best_coverage);
        Ok(Retrieval {
            hits,
            passages,
            mode,
            evidence,
            best_dense,
            best_coverage,
        })
    }

    /// The store query of a mode (hybrid fused in the store with RRF, for chunk ranking).
    fn store_query(
        &self,
        mode: SearchMode,
        dense: Option<Vec<f32>>,
        sparse: &SparseVector,
    ) -> StoreQuery {
        match (mode, dense) {
            (SearchMode::Dense, Some(d)) => StoreQuery::Dense(d),
            (SearchMode::Hybrid | SearchMode::Mmr, Some(d)) => StoreQuery::Hybrid {
                dense: d,
                sparse: sparse.clone(),
                rrf_k: self.settings.rrf_k,
            },
            _ => StoreQuery::Sparse(sparse.clone()),
        }
    }

    /// One side's candidate chunks, with vectors (the evidence gate and MMR compare them).
    async fn side(
        &self,
        scope: &TenantScope,
        query: StoreQuery,
        candidates: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.store
            .search(SearchRequest {
                scope: scope.clone(),
                query,
                limit: candidates,
                candidates,
                with_vectors: true,
            })
            .await
    }

    /// The first `k` sections as hits (each its best chunk, scored as the section) and the
    /// passages an answer reads (the section's matching chunks in reading order).
    fn section_hits(&self, sections: Vec<SectionHit>, k: usize) -> (Vec<Hit>, Vec<String>) {
        sections
            .into_iter()
            .take(k)
            .map(|section| {
                let passage = sections::passage(&section, self.settings.passage_chars);
                (section.best, passage)
            })
            .unzip()
    }
}

/// What the evidence gate weighs: the best dense cosine of a hit to the question and the
/// best share of the question's BM25 terms a hit holds.
struct EvidenceFigures {
    best_dense: Option<f32>,
    best_coverage: f32,
}

impl EvidenceFigures {
    fn of(query_terms: &[u32], dense: Option<&[f32]>, hits: &[Hit]) -> Self {
        let terms: HashSet<u32> = query_terms.iter().copied().collect();
        let best_dense = hits
            .iter()
            .filter_map(|hit| match (dense, hit.dense.as_deref()) {
                (Some(q), Some(d)) => Some(mmr::cosine(q, d)),
                _ => None,
            })
            .reduce(f32::max);
        let best_coverage = hits
            .iter()
            .map(|hit| term_coverage(&terms, hit))
            .fold(0.0, f32::max);
        Self {
            best_dense,
            best_coverage,
        }
    }

    /// There is evidence when the best cosine reaches `min_dense_score` or the best
    /// coverage `min_term_coverage`, or when both come near (`near_dense_score` and
    /// `near_term_coverage`): passages close in meaning that also share a few of the
    /// question's words. An English question about Chinese notes gets no more than that;
    /// the out-of-scope questions as close in meaning share no words.
    fn clears(&self, settings: &RetrievalSettings) -> bool {
        let dense_reaches = |score: f32| self.best_dense.is_some_and(|d| d >= score);
        dense_reaches(settings.min_dense_score)
            || self.best_coverage >= settings.min_term_coverage
            || (dense_reaches(settings.near_dense_score)
                && self.best_coverage >= settings.near_term_coverage)
    }
}

/// Share of the question's distinct terms that occur in the hit; 0 when the hit holds only
/// one of several: a single shared word ("今天", "计算") is a topic, not evidence.
fn term_coverage(terms: &HashSet<u32>, hit: &Hit) -> f32 {
    if terms.is_empty() {
        return 0.0;
    }
    let Some(sparse) = &hit.sparse else {
        return 0.0;
    };
    let found = sparse.indices.iter().filter(|i| terms.contains(i)).count();
    if found < terms.len().min(2) {
        return 0.0;
    }
    found as f32 / terms.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit whose dense vector has cosine `cosine` with the query [1, 0] and whose BM25
    /// terms are `terms`.
    fn hit(cosine: f32, terms: &[u32]) -> Hit {
        Hit {
            score: cosine,
            chunk: crate::store::schema::tests::chunk(),
            dense: Some(vec![cosine, (1.0 - cosine * cosine).sqrt()]),
            sparse: Some(SparseVector {
                indices: terms.to_vec(),
                values: vec![1.0; terms.len()],
            }),
        }
    }

    #[test]
    fn passages_near_on_both_counts_are_evidence_and_either_alone_is_not() {
        let settings: RetrievalSettings = crate::test_defaults::section("retrieval");
        let query = [1.0, 0.0];
        // Six question terms, two in the passage: a third, below min_term_coverage.
        let terms = [1, 2, 3, 4, 5, 6];
        let gate = |hits: &[Hit]| EvidenceFigures::of(&terms, Some(&query), hits);
        let near = settings.near_dense_score + 0.005;
        let far = settings.near_dense_score - 0.005;
        assert!(near < settings.min_dense_score);
        assert!(gate(&[hit(near, &[1, 2])]).clears(&settings));
        assert!(
            !gate(&[hit(near, &[1])]).clears(&settings),
            "one shared word"
        );
        assert!(
            !gate(&[hit(far, &[1, 2])]).clears(&settings),
            "not near in meaning"
        );
        // The nearest passage in meaning and the one sharing words may differ.
        assert!(gate(&[hit(near, &[]), hit(far, &[1, 2])]).clears(&settings));
        // Either strong signal alone still clears.
        assert!(gate(&[hit(settings.min_dense_score + 0.001, &[])]).clears(&settings));
        assert!(gate(&[hit(0.0, &[1, 2, 3])]).clears(&settings));
    }
}
