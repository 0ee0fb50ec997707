//! BM25's IDF, computed by lore for the scope a query may see, the same way on every
//! backend. The engine's IDF modifier counts every tenant in the store, so what one tenant
//! writes would move another's scores (and tell it which words the other uses). Instead each
//! chunk carries its terms as tenant-keyed hashes in an indexed payload field, a backend
//! counts the scope's chunks and, per query term, the scope's chunks holding it, and the
//! query vector arrives already weighted by those IDFs ([`weighted_scope_query`]).

// The hashes are part of the stored schema; re-exported here beside their use.
pub use super::schema::{BM25_TERMS, chunk_term_hashes, term_hash};

use super::schema::{ascending, tenant_terms};
use super::{SparseVector, TenantScope};

/// For each query term, its hashes in the scope's tenants: the scope's chunks whose
/// [`BM25_TERMS`] hold any of them are the term's document frequency. Each hash names one
/// tenant's chunks, so a backend may count them one by one and add.
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
