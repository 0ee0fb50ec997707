//! BM25's IDF, computed by lore for the scope a query may see, the same way on every
//! backend. The engine's IDF modifier counts every tenant in the store, so what one tenant
//! writes would move another's scores (and tell it which words the other uses). Instead each
//! chunk carries its terms as tenant-keyed hashes in an indexed payload field, a backend
//! counts the scope's chunks and, per query term, the scope's chunks holding it, and the
//! query vector arrives already weighted by those IDFs ([`weighted_scope_query`]).

// The hashes are part of the stored schema; re-exported here beside their use.
pub use super::schema::{BM25_TERMS, chunk_term_hashes, term_hash};
use std::collections::HashMap;
use std::sync::Mutex;

use super::schema::{ascending, tenant_terms};
use super::{SparseVector, TenantScope};

/// For each query term, its hashes in the scope's tenants: the scope's chunks whose
/// [`BM25_TERMS`] hold any of them are the term's document frequency.
pub fn document_frequency_probes(scope: &TenantScope, query: &SparseVector) -> Vec<Vec<i64>> {
    query
        .indices
        .iter()
        .map(|&term| term_probe(scope, term))
        .collect()
}

/// One term's hashes in the scope's tenants.
fn term_probe(scope: &TenantScope, term: u32) -> Vec<i64> {
    scope
        .tenants()
        .iter()
        .map(|tenant| term_hash(tenant, term))
        .collect()
}

/// How many term counts [`DocumentFrequencies`] keeps before it starts over: a bound on
/// its memory (about 40 bytes each) whatever the queries.
const MAX_CACHED_TERMS: usize = 100_000;

/// The counts behind a scope's IDF, remembered until the next write. Counting is most of
/// a BM25 query's cost on a big store (one filtered count per query term), and the counts
/// change only when the store does. A backend whose writes all pass through one place
/// (the embedded store) calls [`Self::clear`] there, under the same lock that keeps
/// searches out, so a count is never older than the data it is used with.
#[derive(Default)]
pub struct DocumentFrequencies {
    cached: Mutex<CachedCounts>,
}

#[derive(Default)]
struct CachedCounts {
    scopes: HashMap<Vec<String>, ScopeCounts>,
    terms: usize,
}

#[derive(Default)]
struct ScopeCounts {
    chunks: Option<usize>,
    dfs: HashMap<u32, usize>,
}

impl DocumentFrequencies {
    /// Forgets every count: the store changed.
    pub fn clear(&self) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        *cached = CachedCounts::default();
    }

    /// The scope's chunk count and, per query term, its document frequency, in the order of
    /// the query's terms. `count(None)` counts the scope's chunks, `count(Some(hashes))` the
    /// scope's chunks holding any of a term's keyed hashes; it runs only for what is not
    /// remembered, outside the cache's lock so searches do not wait on each other.
    pub fn counted<E>(
        &self,
        scope: &TenantScope,
        query: &SparseVector,
        mut count: impl FnMut(Option<Vec<i64>>) -> Result<usize, E>,
    ) -> Result<(usize, Vec<usize>), E> {
        let key = scope.tenants().to_vec();
        let (chunks, mut dfs) = {
            let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
            let known = cached.scopes.get(&key);
            let chunks = known.and_then(|s| s.chunks);
            let dfs: Vec<Option<usize>> = query
                .indices
                .iter()
                .map(|term| known.and_then(|s| s.dfs.get(term).copied()))
                .collect();
            (chunks, dfs)
        };
        let known_chunks = chunks.is_some();
        let chunks = match chunks {
            Some(chunks) => chunks,
            None => count(None)?,
        };
        // Hashes are made only for the terms counted now: a remembered term costs nothing.
        let mut fresh = Vec::new();
        for (df, &term) in dfs.iter_mut().zip(&query.indices) {
            if df.is_none() {
                let counted = count(Some(term_probe(scope, term)))?;
                *df = Some(counted);
                fresh.push((term, counted));
            }
        }
        let dfs = dfs.into_iter().flatten().collect();
        if known_chunks && fresh.is_empty() {
            return Ok((chunks, dfs));
        }
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.terms + fresh.len() > MAX_CACHED_TERMS {
            *cached = CachedCounts::default();
        }
        cached.terms += fresh.len();
        let scope_counts = cached.scopes.entry(key).or_default();
        scope_counts.chunks = Some(chunks);
        scope_counts.dfs.extend(fresh);
        Ok((chunks, dfs))
    }
}

/// BM25's IDF of a term in `df` of `chunks` chunks, the formula of Qdrant's IDF modifier (so
/// a single-tenant store scores as before).
pub fn idf(chunks: usize, df: usize) -> f32 {
    let (n, df) = (chunks as f32, df as f32);
    ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
}

/// One query vector for a whole scope: each term weighted by its IDF in the scope
/// (`chunks` in the scope, `dfs` in the order of [`document_frequency_probes`]), keyed for
/// each tenant, side by side. A chunk holds only its tenant's dimensions, so it scores as
/// under its tenant's own query. Two tenants' keyed ids can coincide (rarely); the larger
/// weight is kept, as the engine takes each dimension once.
pub fn weighted_scope_query(
    scope: &TenantScope,
    query: &SparseVector,
    chunks: usize,
    dfs: &[usize],
) -> SparseVector {
    let weights: Vec<f32> = query
        .values
        .iter()
        .zip(dfs)
        .map(|(value, &df)| value * idf(chunks, df))
        .collect();
    let terms = scope
        .tenants()
        .iter()
        .flat_map(|tenant| {
            tenant_terms(tenant, query.indices.clone())
                .into_iter()
                .zip(weights.iter().copied())
        })
        .collect();
    ascending(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tenant_key;

    #[test]
    fn term_hashes_are_stable_and_keyed_by_tenant() {
        assert_eq!(term_hash("a", 7), term_hash("a", 7));
        assert_ne!(term_hash("a", 7), term_hash("b", 7));
        assert_ne!(term_hash("a", 7), term_hash("a", 8));
        assert_eq!(
            chunk_term_hashes("t", &[1, 2]),
            [term_hash("t", 1), term_hash("t", 2)]
        );
    }

    #[test]
    fn counts_are_remembered_per_scope_until_cleared() {
        let counts = DocumentFrequencies::default();
        let query = SparseVector {
            indices: vec![3, 8],
            values: vec![1.0, 1.0],
        };
        let calls = std::cell::Cell::new(0);
        let count = |hashes: Option<Vec<i64>>| -> Result<usize, ()> {
            calls.set(calls.get() + 1);
            Ok(hashes.map_or(100, |h| h.len()))
        };
        let a = TenantScope::only("a");
        assert_eq!(counts.counted(&a, &query, count), Ok((100, vec![1, 1])));
        assert_eq!(calls.get(), 3);
        // Asked again: nothing is counted. A new term is counted alone.
        assert_eq!(counts.counted(&a, &query, count), Ok((100, vec![1, 1])));
        assert_eq!(calls.get(), 3);
        let more = SparseVector {
            indices: vec![8, 9],
            values: vec![1.0, 1.0],
        };
        counts.counted(&a, &more, count).unwrap();
        assert_eq!(calls.get(), 4);
        // Another scope has its own counts.
        let both = TenantScope::with_global("a", "g");
        assert_eq!(counts.counted(&both, &query, count), Ok((100, vec![2, 2])));
        assert_eq!(calls.get(), 7);
        // After a write everything is counted again; a failed count is not remembered.
        counts.clear();
        let failing = |_: Option<Vec<i64>>| -> Result<usize, ()> { Err(()) };
        assert_eq!(counts.counted(&a, &query, failing), Err(()));
        counts.counted(&a, &query, count).unwrap();
        assert_eq!(calls.get(), 10);
    }

    #[test]
    fn idf_is_qdrants_formula() {
        assert!((idf(10, 1) - (9.5f32 / 1.5 + 1.0).ln()).abs() < 1e-6);
        // A term in every chunk still weighs a little; a term in none weighs the most.
        assert!(idf(10, 10) > 0.0 && idf(10, 0) > idf(10, 1));
    }

    #[test]
    fn a_scope_query_carries_each_tenants_keyed_terms_weighted_by_the_scope_idf() {
        let query = SparseVector {
            indices: vec![3, 8],
            values: vec![1.0, 0.5],
        };
        let scope = TenantScope::with_global("a", "g");
        let probes = document_frequency_probes(&scope, &query);
        assert_eq!(probes[0], [term_hash("a", 3), term_hash("g", 3)]);
        let weighted = weighted_scope_query(&scope, &query, 20, &[2, 5]);
        let mut expected: Vec<(u32, f32)> = ["a", "g"]
            .iter()
            .flat_map(|t| {
                tenant_terms(t, vec![3, 8])
                    .into_iter()
                    .zip([idf(20, 2), 0.5 * idf(20, 5)])
            })
            .collect();
        expected.sort_by_key(|e| e.0);
        let (indices, values): (Vec<u32>, Vec<f32>) = expected.into_iter().unzip();
        assert_eq!(weighted.indices, indices);
        assert_eq!(weighted.values, values);
        // Two tenants whose keyed ids coincide: one dimension, the larger weight.
        let collide = SparseVector {
            indices: vec![tenant_key("a") ^ tenant_key("g") ^ 3, 3],
            values: vec![0.9, 0.2],
        };
        let weighted = weighted_scope_query(&scope, &collide, 10, &[1, 1]);
        assert_eq!(weighted.indices.len(), 2);
        assert_eq!(weighted.values, [0.9 * idf(10, 1), 0.9 * idf(10, 1)]);
    }
}
