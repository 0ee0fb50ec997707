//! The embedded store's own checks: RRF, per-tenant graphs and BM25 dimensions, the
//! format upgrade, and the kinds of its open errors.

use std::path::Path;

use qdrant_edge::external::serde_json::{self, Value};
use qdrant_edge::{
    AnyVariants, Condition, CountRequest, EdgeOptimizersConfig, EdgeShard, EdgeSparseVectorParams,
    FieldCondition, Filter, HnswIndexConfig, Match, Modifier, PointId, PointInsertOperations,
    PointOperations, PointStruct, UpdateOperation, Vectors,
};

use super::EmbeddedStore;
use super::layout::{
    create_keyword_indexes, create_payload_indexes, dense_quantization, edge_config, hnsw_layout,
};
use super::manifest::{MANIFEST, Manifest, write_manifest};
use super::points::to_point;
use super::query::{fuse_rrf, tenant_filter, weighted_query};
use super::upgrade::REKEYED;
use crate::embed::bm25::Bm25Encoder;
use crate::store::schema::{DENSE, FORMAT, chunk_payload, chunk_point_id, tenant_terms};
use crate::store::scope_idf::{BM25_TERMS, document_frequency_probes, weighted_scope_query};
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
            title: None,
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

/// Whether any segment holds int8 copies of the dense vectors (the engine's file name).
fn quantized_on_disk(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .any(|entry| {
            let path = entry.unwrap().path();
            path.join("vector_storage-dense/quantized.data").is_file()
        })
}

/// A store written by an older lore (one global graph, m = 16, no int8 copies) takes lore's
/// layout when opened, and its next commit rebuilds the segments; searches are right before
/// and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_an_older_layout_is_rebuilt_at_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let dense = Some(("test".to_owned(), DIM));
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut generate = |tenant: &str, n: usize| -> Vec<StoredChunk> {
        (0..n as u32)
            .map(|i| chunk(tenant, i, unit_vector(&mut rng, DIM)))
            .collect()
    };
    let (team, small) = (generate("team", PER_TENANT), generate("small", 500));
    let (team_probe, small_probe) = (
        team[PER_TENANT / 2].dense.clone().unwrap(),
        small[250].dense.clone().unwrap(),
    );
    {
        let mut old = edge_config(Some(DIM));
        old.hnsw_config = HnswIndexConfig::default();
        old.vectors.get_mut(DENSE).unwrap().quantization_config = None;
        let shard = EdgeShard::new(dir.path(), old).unwrap();
        create_payload_indexes(&shard).unwrap();
        let points: Vec<PointStruct> = team
            .into_iter()
            .chain(small)
            .map(|stored| to_point(stored).unwrap())
            .collect();
        for batch in points.chunks(1000) {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                        batch.iter().cloned().map(Into::into).collect(),
                    )),
                ))
                .unwrap();
        }
        shard.optimize().unwrap();
        shard.flush();
        let manifest = Manifest {
            format: FORMAT,
            dense: dense.clone(),
        };
        write_manifest(&dir.path().join(MANIFEST), &manifest).unwrap();
    }
    assert_eq!(graph_m_on_disk(dir.path()), [16]);
    assert!(!quantized_on_disk(dir.path()));
    let store = EmbeddedStore::open(dir.path(), dense).unwrap();
    let config = store.shard.read().unwrap().config().clone();
    assert_eq!(config.hnsw_config, hnsw_layout());
    assert_eq!(
        config.vectors[DENSE].quantization_config,
        Some(dense_quantization())
    );
    let middle = PER_TENANT as u32 / 2;
    for commit in [false, true] {
        if commit {
            store.commit().await.unwrap();
            assert_eq!(graph_m_on_disk(dir.path()), [0]);
            assert!(quantized_on_disk(dir.path()));
        }
        let hit = top_hit(&store, TenantScope::only("team"), team_probe.clone()).await;
        assert_eq!((hit.tenant.as_str(), hit.index), ("team", middle));
        // Too small for a graph of its own: scored exactly over its own points.
        let hit = top_hit(&store, TenantScope::only("small"), small_probe.clone()).await;
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

/// A point as a lore of store format 1 or 2 wrote it: BM25 under the old vector name, term
/// ids keyed per tenant (format 2) or not (format 1), and no term hashes. `marked`: keyed
/// by an interrupted format-1 upgrade.
fn legacy_point(stored: &StoredChunk, keyed: bool, marked: bool) -> PointStruct {
    let c = &stored.chunk;
    let indices = if keyed {
        tenant_terms(&c.tenant, stored.sparse.indices.clone())
    } else {
        stored.sparse.indices.clone()
    };
    let sparse = qdrant_edge::SparseVector {
        indices,
        values: stored.sparse.values.clone(),
    };
    let mut vectors: Vec<(&str, qdrant_edge::Vector)> = vec![(LEGACY_SPARSE, sparse.into())];
    if let Some(dense) = &stored.dense {
        vectors.push((DENSE, dense.clone().into()));
    }
    let mut payload = chunk_payload(c).unwrap();
    if marked {
        payload.insert(REKEYED.to_owned(), Value::Bool(true));
    }
    PointStruct::new(
        PointId::Uuid(chunk_point_id(&c.tenant, &c.source, c.index)),
        Vectors::new_named(vectors),
        Value::Object(payload),
    )
}

const LEGACY_SPARSE: &str = "bm25";

/// Writes a store as a lore of `format` 1 or 2 left it: the engine's IDF on the old BM25
/// vector, keyword indexes only, and its manifest. `with_current_vector` adds format 3's
/// vector too, as an interrupted 2-to-3 upgrade leaves it.
fn write_legacy_store(
    dir: &Path,
    format: u32,
    dense: Option<(String, usize)>,
    with_current_vector: bool,
    points: Vec<PointStruct>,
) {
    let mut config = edge_config(dense.as_ref().map(|d| d.1));
    if !with_current_vector {
        config.sparse_vectors.clear();
    }
    config.sparse_vectors.insert(
        LEGACY_SPARSE.to_owned(),
        EdgeSparseVectorParams {
            modifier: Some(Modifier::Idf),
            ..Default::default()
        },
    );
    let shard = EdgeShard::new(dir, config).unwrap();
    create_keyword_indexes(&shard).unwrap();
    shard
        .update(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                points.into_iter().map(Into::into).collect(),
            )),
        ))
        .unwrap();
    shard.optimize().unwrap();
    shard.flush();
    drop(shard);
    write_manifest(&dir.join(MANIFEST), &Manifest { format, dense }).unwrap();
}

fn manifest_format(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    serde_json::from_str::<Manifest>(&text).unwrap().format
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

/// Document frequencies and chunk counts are the tenant's own: what another tenant writes
/// does not move this tenant's scores.
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

/// A format-1 store (term ids shared by all tenants) is keyed and moved to format 3 when
/// opened; a keying run cut short is finished without undoing what it did.
#[tokio::test]
async fn a_format_1_store_is_upgraded_at_open_even_after_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    // A run that keyed (and marked) the first half, then stopped before the manifest moved on.
    let points = (0..20)
        .map(|i| legacy_point(&sparse_chunk("a", i), i < 10, i < 10))
        .collect();
    write_legacy_store(dir.path(), 1, None, false, points);
    let store = EmbeddedStore::open(dir.path(), None).unwrap();
    for term in [3, 15] {
        let hits = sparse_hits(&store, "a", term).await;
        assert_eq!(hits.first().map(|h| h.chunk.index), Some(term), "{term}");
        assert_eq!(hits[0].sparse.as_ref().unwrap().indices, [term, 100_000]);
    }
    assert_eq!(manifest_format(dir.path()), FORMAT);
}

/// Chunks in three tenants with real BM25 vectors, for comparing an upgraded store with a
/// fresh one.
fn text_corpus() -> Vec<StoredChunk> {
    let bm25 = Bm25Encoder::new();
    let texts = [
        (
            "a",
            "Deploy the billing service with docker compose on the staging host.",
        ),
        (
            "a",
            "Rollback: redeploy the previous docker image if the billing deploy fails.",
        ),
        (
            "a",
            "Holiday policy: every employee gets twenty days of paid leave.",
        ),
        (
            "a",
            "The on-call rotation changes every Monday; the pager goes to the primary.",
        ),
        (
            "b",
            "Deploy billing to the kubernetes cluster only; docker is not used here.",
        ),
        (
            "b",
            "Billing invoices are sent on the first day of every month.",
        ),
        (
            "g",
            "Handbook: the holiday calendar and holiday leave rules apply to every team.",
        ),
        (
            "g",
            "Every deploy needs a second reviewer and a rollback plan.",
        ),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, (tenant, text))| {
            let mut stored = chunk(tenant, i as u32, Vec::new());
            stored.chunk.text = (*text).to_owned();
            stored.dense = None;
            stored.sparse = bm25.document(text);
            stored
        })
        .collect()
}

/// (tenant, index, score) of every hit of each query in each scope.
async fn answers(store: &EmbeddedStore) -> Vec<Vec<(String, u32, f32)>> {
    let bm25 = Bm25Encoder::new();
    let mut all = Vec::new();
    for scope in [
        TenantScope::only("a"),
        TenantScope::only("b"),
        TenantScope::with_global("a", "g"),
    ] {
        for question in ["docker billing deploy", "holiday leave", "pager rotation"] {
            let hits = store
                .search(SearchRequest {
                    scope: scope.clone(),
                    query: StoreQuery::Sparse(bm25.query(question)),
                    limit: 10,
                    candidates: 10,
                    with_vectors: false,
                })
                .await
                .unwrap();
            all.push(
                hits.into_iter()
                    .map(|h| (h.chunk.tenant, h.chunk.index, h.score))
                    .collect(),
            );
        }
    }
    all
}

fn assert_same_answers(x: &[Vec<(String, u32, f32)>], y: &[Vec<(String, u32, f32)>]) {
    assert_eq!(x.len(), y.len());
    for (a, b) in x.iter().zip(y) {
        let ids =
            |v: &[(String, u32, f32)]| v.iter().map(|h| (h.0.clone(), h.1)).collect::<Vec<_>>();
        assert_eq!(ids(a), ids(b));
        for (p, q) in a.iter().zip(b) {
            assert!((p.2 - q.2).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }
}

/// A format-2 store (the engine's IDF over every tenant, no term hashes) is moved to
/// format 3 at open and then answers exactly as a store filled fresh.
#[tokio::test]
async fn an_upgraded_format_2_store_answers_as_a_fresh_one() {
    let legacy = tempfile::tempdir().unwrap();
    let points = text_corpus()
        .iter()
        .map(|c| legacy_point(c, true, false))
        .collect();
    write_legacy_store(legacy.path(), 2, None, false, points);
    let upgraded = EmbeddedStore::open(legacy.path(), None).unwrap();
    assert_eq!(manifest_format(legacy.path()), FORMAT);
    assert!(
        !upgraded
            .shard
            .read()
            .unwrap()
            .config()
            .sparse_vectors
            .contains_key(LEGACY_SPARSE),
        "the old vector is dropped"
    );
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = EmbeddedStore::open(fresh_dir.path(), None).unwrap();
    fresh.upsert(text_corpus()).await.unwrap();
    fresh.commit().await.unwrap();
    let expected = answers(&fresh).await;
    assert_same_answers(&answers(&upgraded).await, &expected);
    // Stored vectors read back as written, and the upgraded store takes new chunks.
    let page = upgraded.scroll(None, 100).await.unwrap();
    for original in text_corpus() {
        let copy = page
            .chunks
            .iter()
            .find(|c| c.chunk == original.chunk)
            .unwrap();
        assert_eq!(copy.sparse, original.sparse);
    }
    drop(upgraded);
    let reopened = EmbeddedStore::open(legacy.path(), None).unwrap();
    assert_same_answers(&answers(&reopened).await, &expected);
}

/// A 2-to-3 upgrade cut short (the new vector made, half the points rewritten) is finished
/// by the next open.
#[tokio::test]
async fn an_interrupted_format_2_upgrade_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = text_corpus();
    let points = corpus
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                to_point(c.clone()).unwrap()
            } else {
                legacy_point(c, true, false)
            }
        })
        .collect();
    write_legacy_store(dir.path(), 2, None, true, points);
    let upgraded = EmbeddedStore::open(dir.path(), None).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = EmbeddedStore::open(fresh_dir.path(), None).unwrap();
    fresh.upsert(corpus).await.unwrap();
    fresh.commit().await.unwrap();
    assert_same_answers(&answers(&upgraded).await, &answers(&fresh).await);
    assert_eq!(manifest_format(dir.path()), FORMAT);
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

/// IDF's counts are read from the lengths of posting lists, not counted point by point (see
/// `query::indexed_count`). They must equal exact counts after overwrites, deletes and an
/// optimisation (points moved into an indexed, immutable segment), for a scope of one
/// tenant and one with the global tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idf_counts_read_from_the_index_equal_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), None).unwrap();
    // A tiny indexing threshold, so the commit below builds indexed segments.
    let small = EdgeOptimizersConfig {
        indexing_threshold: Some(1),
        ..Default::default()
    };
    store
        .shard
        .read()
        .unwrap()
        .set_optimizers_config(small)
        .unwrap();
    let mut corpus = text_corpus();
    for round in 0..3u32 {
        for chunk in &mut corpus {
            chunk.chunk.source = format!("notes-{round}.md");
        }
        store.upsert(corpus.clone()).await.unwrap();
    }
    store.commit().await.unwrap();
    assert!(store.shard.read().unwrap().info().indexed_vectors_count > 0);
    // Overwrite one source (same ids), delete another, after the optimisation.
    let mut changed = text_corpus();
    for chunk in &mut changed {
        chunk.chunk.source = "notes-0.md".into();
        chunk.chunk.text.push_str(" Docker again.");
        chunk.sparse = Bm25Encoder::new().document(&chunk.chunk.text);
    }
    store.upsert(changed).await.unwrap();
    assert_eq!(store.delete_source("b", "notes-1.md").await.unwrap(), 2);

    let bm25 = Bm25Encoder::new();
    let shard = store.shard.read().unwrap();
    let exact = |filter: Filter| {
        shard
            .count(CountRequest {
                filter: Some(filter),
                exact: true,
            })
            .unwrap()
    };
    let mut found = 0;
    for scope in [TenantScope::only("b"), TenantScope::with_global("a", "g")] {
        for question in ["docker billing deploy", "holiday leave", "pager rotation"] {
            let query = bm25.query(question);
            let chunks = exact(tenant_filter(scope.tenants()));
            let dfs: Vec<usize> = document_frequency_probes(&scope, &query)
                .into_iter()
                .map(|hashes| {
                    exact(Filter::new_must(Condition::Field(
                        FieldCondition::new_match(
                            BM25_TERMS.try_into().unwrap(),
                            Match::new_any(AnyVariants::Integers(hashes.into_iter().collect())),
                        ),
                    )))
                })
                .collect();
            found += dfs.iter().sum::<usize>();
            let expected = weighted_scope_query(&scope, &query, chunks, &dfs);
            let read = weighted_query(&shard, &scope, &query).unwrap();
            assert_eq!(read.indices, expected.indices, "{scope:?} {question}");
            assert_eq!(read.values, expected.values, "{scope:?} {question}");
        }
    }
    assert!(found > 10, "the questions' words are in the store: {found}");
}
