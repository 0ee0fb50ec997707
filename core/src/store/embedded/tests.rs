//! The embedded store's own checks: RRF, per-tenant graphs and BM25 dimensions, the
//! format upgrade, and the kinds of its open errors.

use std::path::Path;

use qdrant_edge::external::serde_json::{self, Value};
use qdrant_edge::{HnswIndexConfig, PointId};

use super::EmbeddedStore;
use super::layout::hnsw_layout;
use super::manifest::{MANIFEST, Manifest, write_manifest};
use super::query::fuse_rrf;
use crate::store::schema::{DENSE, FORMAT, tenant_terms};
use crate::store::synthetic::{XorShift, unit_vector};
use crate::store::{
    Chunk, Hit, KnowledgeStore, SearchRequest, SparseVector, StoreErrorKind, StoreQuery,
    StoredChunk, TenantScope, tenant_key,
};

fn id(n: u64) -> PointId {
    PointId::NumId(n)
}

#[test]
fn rrf_ranks_an_id_found_by_both_sides_first_and_scores_like_qdrant() {
    let fused = fuse_rrf(&[vec![id(1), id(2), id(3)], vec![id(3), id(4)]], 60, 10);
    let order: Vec<PointId> = fused.iter().map(|(i, _)| *i).collect();
    // 2 and 4 tie at 1/61; 2 appeared first.
    assert_eq!(order, vec![id(3), id(1), id(2), id(4)]);
    // Qdrant: 1 / (k + position) per list, position from 0.
    assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 60.0)).abs() < 1e-7);
    assert!((fused[1].1 - 1.0 / 60.0).abs() < 1e-7);
}

#[test]
fn rrf_keeps_first_appearance_order_on_ties_and_honours_the_limit() {
    let fused = fuse_rrf(&[vec![id(7), id(8)], vec![id(9), id(10)]], 60, 3);
    let order: Vec<PointId> = fused.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, vec![id(7), id(9), id(8)]);
    assert!(fuse_rrf(&[vec![], vec![]], 60, 5).is_empty());
}

/// Enough chunks per tenant for the engine to index the segment and give the tenant a
/// graph of its own (above its full-scan threshold of ~6.7k 384-d vectors).
const PER_TENANT: usize = 7_000;
const DIM: usize = 384;

fn chunk(tenant: &str, index: u32, dense: Vec<f32>) -> StoredChunk {
    StoredChunk {
        chunk: Chunk {
            tenant: tenant.into(),
            source: "notes.md".into(),
            index,
            text: format!("{tenant} note {index}"),
            page: None,
            heading: None,
            timestamp: None,
            start: 0,
            end: 0,
            source_hash: String::new(),
        },
        dense: Some(dense),
        sparse: SparseVector::default(),
    }
}

/// Writes `n` random chunks for `tenant` and returns the vector of the middle one.
async fn fill(store: &EmbeddedStore, tenant: &str, n: usize, rng: &mut XorShift) -> Vec<f32> {
    let chunks: Vec<StoredChunk> = (0..n as u32)
        .map(|i| chunk(tenant, i, unit_vector(rng, DIM)))
        .collect();
    let probe = chunks[n / 2].dense.clone().unwrap();
    for batch in chunks.chunks(1000) {
        store.upsert(batch.to_vec()).await.unwrap();
    }
    probe
}

async fn top_hit(store: &EmbeddedStore, scope: TenantScope, query: Vec<f32>) -> Chunk {
    let hits = store
        .search(SearchRequest {
            scope,
            query: StoreQuery::Dense(query),
            limit: 3,
            candidates: 3,
            with_vectors: false,
        })
        .await
        .unwrap();
    hits.into_iter().next().expect("a hit").chunk
}

/// Each tenant has its own graph and no graph joins them, so a scope of two tenants
/// must search each; a single walk under one filter stays in whichever graph it
/// enters and misses the other tenant's best match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_of_two_tenants_finds_the_best_match_in_either_graph() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Some(("test".into(), DIM))).unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let team = fill(&store, "team", PER_TENANT, &mut rng).await;
    let global = fill(&store, "global", PER_TENANT, &mut rng).await;
    store.commit().await.unwrap();
    let stats = store.stats().await.unwrap();
    assert!(
        stats.indexed_vectors >= 2 * PER_TENANT * 9 / 10,
        "the tenants' graphs were not built: {stats:?}"
    );
    let middle = PER_TENANT as u32 / 2;
    let scope = TenantScope::with_global("team", "global");
    let hit = top_hit(&store, scope.clone(), team).await;
    assert_eq!((hit.tenant.as_str(), hit.index), ("team", middle));
    let hit = top_hit(&store, scope, global.clone()).await;
    assert_eq!((hit.tenant.as_str(), hit.index), ("global", middle));
    // And one tenant alone never sees the other's chunks.
    let hit = top_hit(&store, TenantScope::only("team"), global).await;
    assert_eq!(hit.tenant, "team");
}

/// The `m` of every indexed segment's dense graph, read from the engine's segment files
/// (the engine is pinned, so its file layout is known).
fn graph_m_on_disk(dir: &Path) -> Vec<u64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("segments")).unwrap() {
        let path = entry.unwrap().path().join("segment.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let segment: Value = serde_json::from_str(&text).unwrap();
        let index = &segment["config"]["vector_data"][DENSE]["index"];
        if index["type"] == "hnsw" {
            found.push(index["options"]["m"].as_u64().unwrap());
        }
    }
    found
}

/// A store written by an older lore (one global graph, m = 16) takes lore's layout when
/// opened, and its next commit rebuilds the graph; searches are right before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_an_older_layout_is_rebuilt_at_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let open = || EmbeddedStore::open(dir.path(), Some(("test".into(), DIM))).unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (team, small) = {
        let store = open();
        let old_layout = HnswIndexConfig::default();
        store
            .shard
            .read()
            .unwrap()
            .set_hnsw_config(old_layout)
            .unwrap();
        let team = fill(&store, "team", PER_TENANT, &mut rng).await;
        let small = fill(&store, "small", 500, &mut rng).await;
        store.commit().await.unwrap();
        (team, small)
    };
    assert_eq!(graph_m_on_disk(dir.path()), [16]);
    let store = open();
    assert_eq!(
        store.shard.read().unwrap().config().hnsw_config,
        hnsw_layout()
    );
    let middle = PER_TENANT as u32 / 2;
    for commit in [false, true] {
        if commit {
            store.commit().await.unwrap();
            assert_eq!(graph_m_on_disk(dir.path()), [0]);
        }
        let hit = top_hit(&store, TenantScope::only("team"), team.clone()).await;
        assert_eq!((hit.tenant.as_str(), hit.index), ("team", middle));
        // Too small for a graph of its own: scored exactly over its own points.
        let hit = top_hit(&store, TenantScope::only("small"), small.clone()).await;
        assert_eq!((hit.tenant.as_str(), hit.index), ("small", 250));
    }
}

/// A chunk whose BM25 vector holds term `index` (weight 1) and a term every chunk of the
/// tenant shares (weight 0.5), without a dense vector.
fn sparse_chunk(tenant: &str, index: u32) -> StoredChunk {
    let mut stored = chunk(tenant, index, Vec::new());
    stored.dense = None;
    stored.sparse = SparseVector {
        indices: vec![index, 100_000],
        values: vec![1.0, 0.5],
    };
    stored
}

async fn sparse_hits(store: &EmbeddedStore, tenant: &str, term: u32) -> Vec<Hit> {
    store
        .search(SearchRequest {
            scope: TenantScope::only(tenant),
            query: StoreQuery::Sparse(SparseVector {
                indices: vec![term],
                values: vec![1.0],
            }),
            limit: 3,
            candidates: 3,
            with_vectors: true,
        })
        .await
        .unwrap()
}

/// Writes chunks the way a format-1 store held them: lore's term ids, not keyed.
async fn write_unkeyed(store: &EmbeddedStore, chunks: Vec<StoredChunk>) {
    let chunks = chunks
        .into_iter()
        .map(|mut c| {
            // to_point keys the ids; keying them first cancels it out (XOR).
            c.sparse.indices = tenant_terms(&c.chunk.tenant, c.sparse.indices);
            c
        })
        .collect();
    store.upsert(chunks).await.unwrap();
}

fn set_format(dir: &Path, format: u32) {
    let manifest = Manifest {
        format,
        dense: None,
    };
    write_manifest(&dir.join(MANIFEST), &manifest).unwrap();
}

#[tokio::test]
async fn each_tenant_has_its_own_bm25_dimensions_and_reads_back_lores_term_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), None).unwrap();
    let chunks: Vec<StoredChunk> = ["a", "b"]
        .iter()
        .flat_map(|t| (0..20).map(move |i| sparse_chunk(t, i)))
        .collect();
    store.upsert(chunks).await.unwrap();
    store.commit().await.unwrap();
    let hits = sparse_hits(&store, "a", 7).await;
    assert_eq!(
        (hits[0].chunk.tenant.as_str(), hits[0].chunk.index),
        ("a", 7)
    );
    // Read back as lore wrote it: term ids unkeyed and in ascending order.
    assert_eq!(hits[0].sparse.as_ref().unwrap().indices, [7, 100_000]);
    // The engine stores other dimensions: tenant a's terms are not b's.
    assert_ne!(tenant_key("a"), tenant_key("b"));
    assert_eq!(tenant_terms("a", tenant_terms("a", vec![7, 9])), [7, 9]);
}

/// Document frequencies count a tenant's own chunks: what another tenant writes (as
/// long as it writes as many chunks) does not move this tenant's scores.
#[tokio::test]
async fn another_tenants_words_do_not_change_a_tenants_bm25_scores() {
    let mut scores = Vec::new();
    for other_term in [7, 500] {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        let mut chunks: Vec<StoredChunk> = (0..20).map(|i| sparse_chunk("a", i)).collect();
        // Tenant b writes term 7 in every chunk, or a term tenant a never uses.
        chunks.extend((0..20).map(|i| {
            let mut c = sparse_chunk("b", i);
            c.sparse.indices[0] = other_term;
            c
        }));
        store.upsert(chunks).await.unwrap();
        store.commit().await.unwrap();
        scores.push(sparse_hits(&store, "a", 7).await[0].score);
    }
    assert_eq!(scores[0], scores[1]);
}

/// A format-1 store (term ids shared by all tenants) is keyed when opened, and a run
/// cut short is finished by the next open without undoing what it did.
#[tokio::test]
async fn a_format_1_store_is_keyed_at_open_even_after_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        write_unkeyed(&store, (0..10).map(|i| sparse_chunk("a", i)).collect()).await;
        store.commit().await.unwrap();
    }
    set_format(dir.path(), 1);
    {
        // A run that keyed the first half, then stopped before the manifest moved on.
        let store = EmbeddedStore::open(dir.path(), None).unwrap();
        write_unkeyed(&store, (10..20).map(|i| sparse_chunk("a", i)).collect()).await;
        store.commit().await.unwrap();
    }
    set_format(dir.path(), 1);
    let store = EmbeddedStore::open(dir.path(), None).unwrap();
    for term in [3, 15] {
        let hits = sparse_hits(&store, "a", term).await;
        assert_eq!(hits.first().map(|h| h.chunk.index), Some(term), "{term}");
    }
    let text = std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap();
    assert_eq!(
        serde_json::from_str::<Manifest>(&text).unwrap().format,
        FORMAT
    );
}

#[test]
fn a_store_built_with_another_embedder_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path(), None).unwrap());
    let err = EmbeddedStore::open(dir.path(), Some(("test".into(), DIM)))
        .err()
        .expect("another embedder must not open");
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    std::fs::write(dir.path().join(MANIFEST), "{ not json").unwrap();
    let err = EmbeddedStore::open(dir.path(), None)
        .err()
        .expect("a corrupt manifest must not open");
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
}

#[test]
fn a_store_open_elsewhere_is_busy_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path(), None).unwrap();
    let err = EmbeddedStore::open(dir.path(), None)
        .err()
        .expect("a second open must be refused");
    assert_eq!(err.kind(), StoreErrorKind::Busy, "{err}");
    assert!(err.to_string().contains("another lore process"), "{err}");
    drop(first);
    EmbeddedStore::open(dir.path(), None).expect("opens once the first is closed");
}
