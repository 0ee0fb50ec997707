//! Retrieval: embed the question, query the store in the chosen mode, re-rank (MMR), and
//! decide whether the evidence is strong enough to answer from.

mod mmr;
mod settings;

pub use settings::RetrievalSettings;

use std::collections::HashSet;
use std::sync::Arc;

use crate::embed::bm25::Bm25Encoder;
use crate::embed::{EmbedError, Embedder};
use crate::store::{Hit, KnowledgeStore, SearchRequest, StoreError, StoreQuery, TenantScope};

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
    pub hits: Vec<Hit>,
    /// The mode actually used (a dense mode falls back to sparse without an embedder).
    pub mode: SearchMode,
    pub evidence: bool,
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

    /// The mode a request will really run in.
    pub fn effective_mode(&self, requested: Option<SearchMode>) -> SearchMode {
        let mode = requested.unwrap_or(self.settings.mode);
        if self.embedder.is_none() && mode != SearchMode::Mmr {
            SearchMode::Sparse
        } else {
            mode
        }
    }

    /// Top-`k` passages for `question` within `scope`.
    pub async fn search(
        &self,
        scope: &TenantScope,
        question: &str,
        mode: Option<SearchMode>,
        k: usize,
    ) -> Result<Retrieval, RetrieveError> {
        let mode = self.effective_mode(mode);
        let sparse = self.bm25.query(question);
        let dense = match (&self.embedder, mode) {
            (Some(embedder), SearchMode::Dense | SearchMode::Hybrid | SearchMode::Mmr) => {
                Some(embedder.embed_query(question).await?)
            }
            _ => None,
        };
        let candidates = k * self.settings.candidate_factor;
        let query = match (mode, dense.clone()) {
            (SearchMode::Dense, Some(d)) => StoreQuery::Dense(d),
            (SearchMode::Hybrid | SearchMode::Mmr, Some(d)) => StoreQuery::Hybrid {
                dense: d,
                sparse: sparse.clone(),
                rrf_k: self.settings.rrf_k,
            },
            _ => StoreQuery::Sparse(sparse.clone()),
        };
        let is_mmr = mode == SearchMode::Mmr;
        let mut hits = self
            .store
            .search(SearchRequest {
                scope: scope.clone(),
                query,
                limit: if is_mmr { candidates } else { k },
                candidates,
                // The evidence gate and MMR compare vectors.
                with_vectors: true,
            })
            .await?;
        if is_mmr {
            hits = mmr::select(hits, k, self.settings.mmr_lambda);
        }
        let evidence = self.has_evidence(&sparse.indices, dense.as_deref(), &hits);
        Ok(Retrieval {
            hits,
            mode,
            evidence,
        })
    }

    /// True when some hit is close enough to the question: a dense cosine at or above
    /// `min_dense_score`, or at least `min_term_coverage` of the question's BM25 terms.
    fn has_evidence(&self, query_terms: &[u32], dense: Option<&[f32]>, hits: &[Hit]) -> bool {
        let terms: HashSet<u32> = query_terms.iter().copied().collect();
        hits.iter().any(|hit| {
            let dense_ok = match (dense, hit.dense.as_deref()) {
                (Some(q), Some(d)) => mmr::cosine(q, d) >= self.settings.min_dense_score,
                _ => false,
            };
            dense_ok || term_coverage(&terms, hit) >= self.settings.min_term_coverage
        })
    }
}

/// Share of the question's distinct terms that occur in the hit.
fn term_coverage(terms: &HashSet<u32>, hit: &Hit) -> f32 {
    if terms.is_empty() {
        return 0.0;
    }
    let Some(sparse) = &hit.sparse else {
        return 0.0;
    };
    let found = sparse.indices.iter().filter(|i| terms.contains(i)).count();
    found as f32 / terms.len() as f32
}
