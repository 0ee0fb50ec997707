//! The knowledge store behind one trait. Backends: embedded Qdrant (`edge`) and a Qdrant
//! server or cluster (`server`). No backend type crosses this boundary.

pub mod edge;
pub mod migrate;
mod open;
pub mod server;
mod settings;
pub mod synthetic;

pub use open::open_store;
pub use settings::{StoreBackend, StoreSettings};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A BM25 term-weight vector (term ids and weights), computed by lore so every backend
/// scores the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// Gives each tenant its own BM25 dimensions in the store: a term id XOR a key derived from
/// the tenant. Both backends store and query these. A tenant's posting lists then hold only
/// its own chunks, so a sparse search walks one tenant's postings instead of everyone's,
/// and document frequencies (the IDF) count the tenant's own chunks: what another tenant
/// writes does not move its scores. XOR is its own inverse ([`lore_terms`] reads back).
pub fn tenant_terms(tenant: &str, mut indices: Vec<u32>) -> Vec<u32> {
    let key = tenant_key(tenant);
    for index in &mut indices {
        *index ^= key;
    }
    indices
}

/// A stable 32-bit key of the tenant name (FNV-1a, folded), the same on every machine.
pub fn tenant_key(tenant: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ (hash >> 32)) as u32
}

/// A stored vector of `tenant` read back as lore's term ids, in ascending order.
pub fn lore_terms(tenant: &str, indices: Vec<u32>, values: Vec<f32>) -> SparseVector {
    ascending(
        tenant_terms(tenant, indices)
            .into_iter()
            .zip(values)
            .collect(),
    )
}

/// One query vector for a whole scope: the query keyed for each tenant, side by side. A
/// chunk holds only its tenant's dimensions, so it scores exactly as under its tenant's own
/// query. Two tenants' keyed ids can coincide (rarely); the larger weight is kept, as the
/// engine takes each dimension once.
pub fn scope_terms(scope: &TenantScope, query: &SparseVector) -> SparseVector {
    let terms = scope
        .tenants()
        .iter()
        .flat_map(|tenant| {
            tenant_terms(tenant, query.indices.clone())
                .into_iter()
                .zip(query.values.iter().copied())
        })
        .collect();
    ascending(terms)
}

/// (term, weight) pairs as a vector in ascending term order, each term once (the larger
/// weight when one repeats).
fn ascending(mut terms: Vec<(u32, f32)>) -> SparseVector {
    terms.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    terms.dedup_by_key(|t| t.0);
    let (indices, values) = terms.into_iter().unzip();
    SparseVector { indices, values }
}

/// A chunk of a source with everything a citation needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub tenant: String,
    pub source: String,
    /// Position of the chunk within its source, from 0.
    pub index: u32,
    pub text: String,
    /// 1-based PDF page.
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub timestamp: Option<String>,
    /// Byte offsets of the chunk within its section's cleaned text.
    pub start: usize,
    pub end: usize,
    /// Hash of the source content and the chunking settings; unchanged means skip.
    pub source_hash: String,
}

/// A chunk with its vectors, ready to store.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub chunk: Chunk,
    pub dense: Option<Vec<f32>>,
    pub sparse: SparseVector,
}

/// The tenants a query may see. Built in one place by callers (`TenantScope::only`), and
/// every backend turns it into a filter on every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope(Vec<String>);

impl TenantScope {
    /// Exactly one tenant.
    pub fn only(tenant: &str) -> Self {
        Self(vec![tenant.to_owned()])
    }

    /// One tenant plus the operator's global knowledge base.
    pub fn with_global(tenant: &str, global: &str) -> Self {
        if tenant == global {
            Self::only(tenant)
        } else {
            Self(vec![tenant.to_owned(), global.to_owned()])
        }
    }

    pub fn tenants(&self) -> &[String] {
        &self.0
    }
}

/// What to score against.
#[derive(Debug, Clone)]
pub enum StoreQuery {
    Dense(Vec<f32>),
    Sparse(SparseVector),
    /// Both, fused with reciprocal rank fusion.
    Hybrid {
        dense: Vec<f32>,
        sparse: SparseVector,
        rrf_k: u32,
    },
}

/// One search call.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub scope: TenantScope,
    pub query: StoreQuery,
    pub limit: usize,
    /// Prefetch depth of each side of a hybrid query.
    pub candidates: usize,
    /// Return stored vectors too (MMR needs them).
    pub with_vectors: bool,
}

/// A scored chunk.
#[derive(Debug, Clone)]
pub struct Hit {
    pub score: f32,
    pub chunk: Chunk,
    pub dense: Option<Vec<f32>>,
    pub sparse: Option<SparseVector>,
}

/// A source and its chunk count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub chunks: usize,
}

/// Size figures for `lore stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub chunks: usize,
    pub indexed_vectors: usize,
    pub segments: usize,
    pub bytes_on_disk: u64,
}

/// One page of a full scan in point-id order, for copying a store (`lore migrate`).
#[derive(Debug, Clone)]
pub struct ScrollPage {
    pub chunks: Vec<StoredChunk>,
    /// Where the next page starts (pass it as `from`), or None after the last page.
    pub next: Option<uuid::Uuid>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("knowledge store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("knowledge store: {0}")]
    Backend(String),
    #[error("knowledge store task failed: {0}")]
    Task(String),
}

/// Where knowledge lives. Every query is limited to a `TenantScope`.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Dimension of the dense vectors, or None for a sparse-only store.
    fn dense_dimension(&self) -> Option<usize>;
    /// Inserts or replaces chunks (ids derive from tenant, source and position).
    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError>;
    /// Deletes every chunk of one source in one tenant; returns how many there were.
    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError>;
    /// The content hash a source was stored with, if it is stored.
    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError>;
    /// Scored chunks, best first.
    async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, StoreError>;
    /// Sources visible in a scope, with chunk counts.
    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError>;
    /// Size figures across all tenants (an operator's view).
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Builds indexes after a bulk write and makes everything durable.
    async fn commit(&self) -> Result<(), StoreError>;
    /// Up to `limit` stored chunks with their vectors, across all tenants, in point-id order
    /// starting at `from` (inclusive; None for the first page).
    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError>;
    /// Chunk count of every tenant (an operator's view, used to verify a migration).
    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError>;
}

/// Point id of a chunk: stable across runs, so re-ingesting overwrites rather than duplicates.
pub fn chunk_point_id(tenant: &str, source: &str, index: u32) -> uuid::Uuid {
    // A fixed namespace so ids agree across backends and machines.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c6f_7265_2d6b_622d_9c3e_41a7_5d20_b001);
    let key = format!("{tenant}\u{0}{source}\u{0}{index}");
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_query_carries_each_tenants_keyed_terms_once() {
        let query = SparseVector {
            indices: vec![3, 8],
            values: vec![1.0, 0.5],
        };
        let scoped = scope_terms(&TenantScope::with_global("a", "g"), &query);
        let mut expected: Vec<u32> = tenant_terms("a", vec![3, 8]);
        expected.extend(tenant_terms("g", vec![3, 8]));
        expected.sort_unstable();
        assert_eq!(scoped.indices, expected);
        assert_eq!(
            lore_terms("a", tenant_terms("a", vec![8, 3]), vec![0.5, 1.0]),
            query
        );
        // Two tenants whose keyed ids coincide: one dimension, the larger weight.
        let collide = SparseVector {
            indices: vec![tenant_key("a") ^ tenant_key("g") ^ 3, 3],
            values: vec![0.9, 0.2],
        };
        let scoped = scope_terms(&TenantScope::with_global("a", "g"), &collide);
        let mut unique = scoped.indices.clone();
        unique.dedup();
        assert_eq!(unique, scoped.indices);
        // a's two terms land on g's two keyed ids: two dimensions, each with weight 0.9.
        assert_eq!(scoped.indices.len(), 2);
        assert_eq!(scoped.values, [0.9, 0.9]);
    }

    #[test]
    fn point_ids_are_stable_and_distinct() {
        let a = chunk_point_id("t", "doc.md", 0);
        assert_eq!(a, chunk_point_id("t", "doc.md", 0));
        assert_ne!(a, chunk_point_id("t", "doc.md", 1));
        assert_ne!(a, chunk_point_id("u", "doc.md", 0));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(chunk_point_id("ab", "c", 0), chunk_point_id("a", "bc", 0));
    }

    #[test]
    fn global_scope_adds_the_global_tenant_once() {
        assert_eq!(TenantScope::with_global("g", "g").tenants(), ["g"]);
        assert_eq!(TenantScope::with_global("a", "g").tenants(), ["a", "g"]);
    }
}
