//! Embedded Qdrant (qdrant-edge): the default store, persistent under the data dir.
//! The engine is synchronous, so every call runs on `spawn_blocking`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use qdrant_edge::external::serde_json::{self, Value};
use qdrant_edge::{
    AnyVariants, Condition, CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams,
    EdgeVectorParams, FacetRequest, FacetValue, FieldCondition, FieldIndexOperations, Filter,
    HnswIndexConfig, KeywordIndexParams, Match, Modifier, NamedQuery, Payload, PayloadFieldSchema,
    PayloadSchemaParams, PointId, PointInsertOperations, PointOperations, PointStruct, QueryEnum,
    QueryRequest, Record, ScoredPoint, ScoringQuery, ScrollRequest, SearchParams, UpdateOperation,
    ValueVariants, VectorInternal, VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};

use super::{
    Chunk, Hit, KnowledgeStore, ScrollPage, SearchRequest, SourceSummary, SparseVector, StoreError,
    StoreQuery, StoreStats, StoredChunk, TenantScope, chunk_point_id, lore_terms, scope_terms,
    tenant_terms,
};

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";
const MANIFEST: &str = "lore-store.json";
/// Bumped when the payload layout or sparse encoding changes incompatibly.
/// 2: BM25 dimensions keyed per tenant ([`tenant_terms`]); a format-1 store is re-keyed
/// when opened.
const FORMAT: u32 = 2;

/// What a store directory was built with, so a mismatched embedder is caught at open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Embedder id and dimension of the dense vectors, None for sparse-only.
    dense: Option<(String, usize)>,
}

/// The embedded Qdrant store.
pub struct EdgeStore {
    path: PathBuf,
    dense_dimension: Option<usize>,
    // The engine's flush asserts it holds its WAL lock uncontended, so writes and flushes
    // are serialised here while searches share the lock.
    shard: Arc<RwLock<EdgeShard>>,
    /// HNSW beam width for dense queries.
    search_ef: usize,
}

impl EdgeStore {
    /// Opens (or creates) the store at `path`. `dense` is the configured embedder's id and
    /// dimension; it must match what the store was built with.
    pub fn open(path: &Path, dense: Option<(String, usize)>) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let wanted = Manifest {
            format: FORMAT,
            dense: dense.clone(),
        };
        let manifest_path = path.join(MANIFEST);
        let shard = if manifest_path.is_file() {
            let text = std::fs::read_to_string(&manifest_path)
                .map_err(|e| open_err(format!("reading {MANIFEST}: {e}")))?;
            let found: Manifest = serde_json::from_str(&text)
                .map_err(|e| open_err(format!("{MANIFEST} is corrupt: {e}")))?;
            let rekey = found.format == 1 && found.dense == wanted.dense;
            if found != wanted && !rekey {
                return Err(open_err(format!(
                    "it was built with {} but {} is configured; use another data dir \
                     (--data-dir) for this embedder, or re-ingest into a fresh one",
                    describe(&found.dense),
                    describe(&wanted.dense)
                )));
            }
            let shard = EdgeShard::load(path, None).map_err(|e| open_err(e.to_string()))?;
            if shard.config().hnsw_config != hnsw_layout() {
                // A store from an older lore: the engine's config-mismatch optimiser rebuilds
                // its graphs at the next commit (the next ingest, or the re-keying below).
                // Searches are right meanwhile.
                shard
                    .set_hnsw_config(hnsw_layout())
                    .map_err(|e| open_err(e.to_string()))?;
                tracing::info!(
                    store = %path.display(),
                    "index layout updated; the next ingest rebuilds the dense index"
                );
            }
            if rekey {
                tracing::info!(store = %path.display(), "keying BM25 dimensions per tenant (store format 1 to 2)");
                let points = rekey_sparse(&shard).map_err(|e| open_err(e.to_string()))?;
                write_manifest(&manifest_path, &wanted).map_err(open_err)?;
                tracing::info!(store = %path.display(), points, "store format 2");
            }
            shard
        } else {
            std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
            let shard = EdgeShard::new(path, edge_config(dense.as_ref().map(|d| d.1)))
                .map_err(|e| open_err(e.to_string()))?;
            create_payload_indexes(&shard).map_err(|e| open_err(e.to_string()))?;
            write_manifest(&manifest_path, &wanted).map_err(open_err)?;
            shard
        };
        Ok(Self {
            path: path.to_owned(),
            dense_dimension: dense.map(|d| d.1),
            shard: Arc::new(RwLock::new(shard)),
            search_ef: DEFAULT_SEARCH_EF,
        })
    }

    /// Sets the HNSW beam width of dense queries (`[store] hnsw_ef`; 0 keeps lore's default,
    /// 100). It never goes below the number of candidates asked for.
    pub fn with_search_ef(mut self, ef: usize) -> Self {
        self.search_ef = if ef > 0 { ef } else { DEFAULT_SEARCH_EF };
        self
    }

    /// Runs `f` on a blocking thread with shared access to the shard.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || {
            let guard = shard.read().map_err(|_| poisoned())?;
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on a blocking thread with exclusive access to the shard.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || {
            let guard = shard.write().map_err(|_| poisoned())?;
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), String> {
    let text = serde_json::to_string_pretty(manifest).expect("manifest serialises");
    std::fs::write(path, text).map_err(|e| format!("writing {MANIFEST}: {e}"))
}

/// Payload mark of a point whose BM25 vector [`rekey_sparse`] has keyed. XOR is its own
/// inverse, so a second pass over a point would undo the first: after an interrupted run
/// (the manifest still says format 1) the mark tells which points are done. A point and
/// its mark are written in one upsert.
const REKEYED: &str = "bm25_keyed";

/// Rewrites every point's BM25 vector with [`tenant_terms`] (format 1 to 2), in pages, then
/// rebuilds the indexes. Runs at open, before the store serves anything. Returns the
/// points rewritten.
fn rekey_sparse(shard: &EdgeShard) -> Result<usize, StoreError> {
    let (mut offset, mut rewritten) = (None, 0);
    loop {
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset,
                limit: Some(1000),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            })
            .map_err(backend)?;
        let mut points = Vec::with_capacity(records.len());
        for record in records {
            let mut payload = record
                .payload
                .ok_or_else(|| StoreError::Backend("point without payload".into()))?;
            if payload.0.contains_key(REKEYED) {
                continue;
            }
            let tenant = payload
                .0
                .get("tenant")
                .and_then(Value::as_str)
                .ok_or_else(|| StoreError::Backend("point without a tenant".into()))?
                .to_owned();
            let Some(VectorStructInternal::Named(mut named)) = record.vector else {
                return Err(StoreError::Backend("point without named vectors".into()));
            };
            let mut vectors: Vec<(&str, qdrant_edge::Vector)> = Vec::new();
            if let Some(VectorInternal::Sparse(v)) = named.remove(SPARSE) {
                let keyed = qdrant_edge::SparseVector {
                    indices: tenant_terms(&tenant, v.indices),
                    values: v.values,
                };
                vectors.push((SPARSE, keyed.into()));
            }
            if let Some(VectorInternal::Dense(v)) = named.remove(DENSE) {
                vectors.push((DENSE, v.into()));
            }
            payload.0.insert(REKEYED.to_owned(), Value::Bool(true));
            let payload = Value::Object(payload.0);
            points.push(PointStruct::new(record.id, Vectors::new_named(vectors), payload).into());
        }
        rewritten += points.len();
        if !points.is_empty() {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(backend)?;
        }
        match next {
            Some(id) => offset = Some(id),
            None => break,
        }
    }
    shard.optimize().map_err(backend)?;
    shard.flush();
    Ok(rewritten)
}

fn describe(dense: &Option<(String, usize)>) -> String {
    match dense {
        Some((id, dim)) => format!("dense embedder {id} ({dim} dimensions)"),
        None => "no dense embedder (sparse-only)".to_owned(),
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend("a previous store operation panicked".into())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// lore's index layout. Every search carries a tenant filter, so the dense index holds one
/// HNSW graph per tenant (links among the tenant's own points, `payload_m`) and no global
/// graph (`m` 0): Qdrant's layout for multitenancy. A walk then meets almost only points
/// that pass the filter instead of rejecting nine in ten; tenants too small for a graph are
/// scored exactly over their own points, found through the tenant index.
///
/// A tenant's graph is smaller and its walk shorter than the global graph's, so it is built
/// with a wider beam (`ef_construct` 200) to keep the recall of the global layout
/// (`lore bench`: 0.586 against 0.585 at search ef 100; 0.548 with the default 100).
fn hnsw_layout() -> HnswIndexConfig {
    HnswIndexConfig {
        m: 0,
        payload_m: Some(16),
        ef_construct: 200,
        ..Default::default()
    }
}

/// The search beam when `[store] hnsw_ef` is 0. The engine's own default is the build beam.
const DEFAULT_SEARCH_EF: usize = 100;

fn edge_config(dense_dimension: Option<usize>) -> EdgeConfig {
    let mut config = EdgeConfig {
        sparse_vectors: HashMap::from([(
            SPARSE.to_owned(),
            EdgeSparseVectorParams {
                modifier: Some(Modifier::Idf),
                ..Default::default()
            },
        )]),
        hnsw_config: hnsw_layout(),
        ..Default::default()
    };
    if let Some(size) = dense_dimension {
        config.vectors.insert(
            DENSE.to_owned(),
            EdgeVectorParams {
                size,
                distance: Distance::Cosine,
                on_disk: None,
                multivector_config: None,
                datatype: None,
                quantization_config: None,
                hnsw_config: None,
            },
        );
    }
    config
}

fn create_payload_indexes(shard: &EdgeShard) -> Result<(), qdrant_edge::OperationError> {
    // Only the tenant gets graph links of its own (see hnsw_layout); a source name is not
    // unique across tenants.
    for (field, is_tenant) in [("tenant", true), ("source", false)] {
        let schema =
            PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
                r#type: Default::default(),
                is_tenant: Some(is_tenant),
                on_disk: None,
                enable_hnsw: Some(is_tenant),
            }));
        shard.update(UpdateOperation::FieldIndexOperation(
            FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: field.try_into().expect("valid field name"),
                field_schema: Some(schema),
            }),
        ))?;
    }
    Ok(())
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition::Field(FieldCondition::new_match(
        field.try_into().expect("valid field name"),
        Match::new_value(ValueVariants::String(value.to_owned())),
    ))
}

/// The tenant filter: the one place tenants become a Qdrant condition. Dense searches pass
/// one tenant at a time, BM25 searches and listings the whole scope ([`side_query`]).
fn tenant_filter(tenants: &[String]) -> Filter {
    match tenants {
        [tenant] => Filter::new_must(keyword("tenant", tenant)),
        _ => Filter::new_must(Condition::Field(FieldCondition::new_match(
            "tenant".try_into().expect("valid field name"),
            Match::new_any(AnyVariants::Strings(tenants.iter().cloned().collect())),
        ))),
    }
}

fn source_filter(tenant: &str, source: &str) -> Filter {
    Filter {
        must: Some(vec![keyword("tenant", tenant), keyword("source", source)]),
        ..Default::default()
    }
}

fn to_point(stored: StoredChunk) -> Result<PointStruct, StoreError> {
    let StoredChunk {
        chunk,
        dense,
        sparse,
    } = stored;
    let id = chunk_point_id(&chunk.tenant, &chunk.source, chunk.index);
    let sparse = qdrant_edge::SparseVector {
        indices: tenant_terms(&chunk.tenant, sparse.indices),
        values: sparse.values,
    };
    let mut vectors: Vec<(&str, qdrant_edge::Vector)> = vec![(SPARSE, sparse.into())];
    if let Some(dense) = dense {
        vectors.push((DENSE, dense.into()));
    }
    let payload = serde_json::to_value(&chunk).map_err(backend)?;
    Ok(PointStruct::new(
        PointId::Uuid(id),
        Vectors::new_named(vectors),
        payload,
    ))
}

fn scored_hit(point: ScoredPoint) -> Result<Hit, StoreError> {
    to_hit(point.payload, point.vector, point.score)
}

fn to_hit(
    payload: Option<Payload>,
    vector: Option<VectorStructInternal>,
    score: f32,
) -> Result<Hit, StoreError> {
    let payload = payload.ok_or_else(|| StoreError::Backend("point without payload".into()))?;
    let chunk: Chunk = serde_json::from_value(Value::Object(payload.0)).map_err(backend)?;
    let (mut dense, mut sparse) = (None, None);
    if let Some(VectorStructInternal::Named(mut named)) = vector {
        if let Some(VectorInternal::Dense(v)) = named.remove(DENSE) {
            dense = Some(v);
        }
        if let Some(VectorInternal::Sparse(v)) = named.remove(SPARSE) {
            sparse = Some(lore_terms(&chunk.tenant, v.indices, v.values));
        }
    }
    Ok(Hit {
        score,
        chunk,
        dense,
        sparse,
    })
}

fn nearest(vector: VectorInternal, using: &str) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query: vector,
        using: Some(using.to_owned()),
    }))
}

/// A single-vector query under the tenant filter. Hybrid queries are two of these, run in
/// parallel and fused here (see [`fuse_rrf`]): the engine would run its prefetches one after
/// the other, so a hybrid query cost the sum of both sides.
fn vector_query(
    filter: Filter,
    query: ScoringQuery,
    limit: usize,
    search_ef: usize,
    with_payload: bool,
    with_vectors: bool,
) -> QueryRequest {
    QueryRequest {
        prefetches: vec![],
        query: Some(query),
        filter: Some(filter),
        score_threshold: None,
        limit,
        offset: 0,
        params: Some(SearchParams {
            hnsw_ef: Some(search_ef.max(limit)),
            ..Default::default()
        }),
        with_vector: WithVector::Bool(with_vectors),
        with_payload: WithPayloadInterface::Bool(with_payload),
    }
}

/// Reciprocal rank fusion of ranked id lists, scored as Qdrant does (so both backends
/// agree): each list adds 1 / (k + position) (position from 0; k is at least 1) to an id's
/// score. Ties keep the order of first appearance, so the result is stable.
fn fuse_rrf(lists: &[Vec<PointId>], k: u32, limit: usize) -> Vec<(PointId, f32)> {
    let mut fused: Vec<(PointId, f32)> = Vec::new();
    let mut position: HashMap<PointId, usize> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let score = 1.0 / (k.max(1) as f32 + rank as f32);
            match position.get(id) {
                Some(&at) => fused[at].1 += score,
                None => {
                    position.insert(*id, fused.len());
                    fused.push((*id, score));
                }
            }
        }
    }
    // A stable sort keeps first-appearance order among equal scores.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused.truncate(limit);
    fused
}

/// One side of a search: what to score against.
#[derive(Clone, Copy)]
enum Side<'a> {
    Dense(&'a [f32]),
    Sparse(&'a SparseVector),
}

/// Runs one side under the scope's tenant filter. Dense runs tenant by tenant, the lists
/// merged by score: the index holds one graph per tenant (see [`hnsw_layout`]) and a walk
/// cannot cross from one tenant's graph into another's. BM25 is one query carrying every
/// tenant's keyed terms ([`scope_terms`]), as on the server.
fn side_query(
    shard: &EdgeShard,
    scope: &TenantScope,
    side: Side<'_>,
    limit: usize,
    search_ef: usize,
    with_payload: bool,
    with_vectors: bool,
) -> Result<Vec<ScoredPoint>, StoreError> {
    let run = |tenants: &[String], query: ScoringQuery| {
        let request = vector_query(
            tenant_filter(tenants),
            query,
            limit,
            search_ef,
            with_payload,
            with_vectors,
        );
        shard.query(request).map_err(backend)
    };
    match side {
        Side::Sparse(v) => {
            let terms = scope_terms(scope, v);
            let vector = VectorInternal::Sparse(qdrant_edge::SparseVector {
                indices: terms.indices,
                values: terms.values,
            });
            run(scope.tenants(), nearest(vector, SPARSE))
        }
        Side::Dense(v) => {
            let mut points = Vec::new();
            for tenant in scope.tenants() {
                let query = nearest(VectorInternal::Dense(v.to_vec()), DENSE);
                points.extend(run(std::slice::from_ref(tenant), query)?);
            }
            if scope.tenants().len() > 1 {
                points.sort_by(|a, b| b.score.total_cmp(&a.score));
                points.truncate(limit);
            }
            Ok(points)
        }
    }
}

/// Runs a search request against the shard.
fn run_search(
    shard: &EdgeShard,
    request: SearchRequest,
    search_ef: usize,
) -> Result<Vec<Hit>, StoreError> {
    let scope = &request.scope;
    let (limit, with_vectors) = (request.limit, request.with_vectors);
    let single = |side| {
        side_query(shard, scope, side, limit, search_ef, true, with_vectors)?
            .into_iter()
            .map(scored_hit)
            .collect()
    };
    match &request.query {
        StoreQuery::Dense(v) => single(Side::Dense(v)),
        StoreQuery::Sparse(v) => single(Side::Sparse(v)),
        StoreQuery::Hybrid {
            dense,
            sparse,
            rrf_k,
        } => {
            let depth = request.candidates.max(limit);
            let ids = |side| -> Result<Vec<PointId>, StoreError> {
                let points = side_query(shard, scope, side, depth, search_ef, false, false)?;
                Ok(points.into_iter().map(|p| p.id).collect())
            };
            let (dense_ids, sparse_ids) =
                rayon::join(|| ids(Side::Dense(dense)), || ids(Side::Sparse(sparse)));
            let fused = fuse_rrf(&[dense_ids?, sparse_ids?], *rrf_k, limit);
            let wanted: Vec<PointId> = fused.iter().map(|(id, _)| *id).collect();
            let records = shard
                .retrieve(
                    &wanted,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(with_vectors)),
                )
                .map_err(backend)?;
            let mut records: HashMap<PointId, Record> =
                records.into_iter().map(|r| (r.id, r)).collect();
            fused
                .into_iter()
                // Both calls run under one read lock, so every id resolves; none is assumed.
                .filter_map(|(id, score)| records.remove(&id).map(|r| (r, score)))
                .map(|(record, score)| to_hit(record.payload, record.vector, score))
                .collect()
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[async_trait]
impl KnowledgeStore for EdgeStore {
    fn dense_dimension(&self) -> Option<usize> {
        self.dense_dimension
    }

    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        if let Some(bad) = chunks
            .iter()
            .find(|c| c.dense.as_ref().map(Vec::len) != self.dense_dimension)
        {
            return Err(StoreError::Backend(format!(
                "chunk {} of {} has a dense vector of {:?} dimensions; the store expects {:?}",
                bad.chunk.index,
                bad.chunk.source,
                bad.dense.as_ref().map(Vec::len),
                self.dense_dimension
            )));
        }
        let points = chunks
            .into_iter()
            .map(|c| to_point(c).map(Into::into))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(move |shard| {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(backend)
        })
        .await
    }

    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError> {
        let filter = source_filter(tenant, source);
        self.write(move |shard| {
            let count = shard
                .count(qdrant_edge::CountRequest {
                    filter: Some(filter.clone()),
                    exact: true,
                })
                .map_err(backend)?;
            if count > 0 {
                shard
                    .update(UpdateOperation::PointOperation(
                        PointOperations::DeletePointsByFilter(filter),
                    ))
                    .map_err(backend)?;
            }
            Ok(count)
        })
        .await
    }

    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError> {
        let id = PointId::Uuid(chunk_point_id(tenant, source, 0));
        self.read(move |shard| {
            let records = shard
                .retrieve(&[id], Some(WithPayloadInterface::Bool(true)), None)
                .map_err(backend)?;
            Ok(records.into_iter().next().and_then(|r| {
                r.payload.and_then(|p| {
                    p.0.get("source_hash")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
            }))
        })
        .await
    }

    async fn search(&self, request: SearchRequest) -> Result<Vec<Hit>, StoreError> {
        if matches!(
            request.query,
            StoreQuery::Dense(_) | StoreQuery::Hybrid { .. }
        ) && self.dense_dimension.is_none()
        {
            return Err(StoreError::Backend(
                "this store has no dense vectors; search it in sparse mode".into(),
            ));
        }
        let search_ef = self.search_ef;
        self.read(move |shard| run_search(shard, request, search_ef))
            .await
    }

    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError> {
        let filter = tenant_filter(scope.tenants());
        self.read(move |shard| {
            let response = shard
                .facet(FacetRequest {
                    key: "source".try_into().expect("valid field name"),
                    limit: usize::MAX >> 1,
                    filter: Some(filter),
                    exact: true,
                })
                .map_err(backend)?;
            let mut sources: Vec<SourceSummary> = response
                .hits
                .into_iter()
                .filter_map(|hit| match hit.value {
                    FacetValue::Keyword(source) => Some(SourceSummary {
                        source,
                        chunks: hit.count,
                    }),
                    _ => None,
                })
                .collect();
            sources.sort_by(|a, b| a.source.cmp(&b.source));
            Ok(sources)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let path = self.path.clone();
        self.read(move |shard| {
            let info = shard.info();
            Ok(StoreStats {
                chunks: info.points_count,
                indexed_vectors: info.indexed_vectors_count,
                segments: info.segments_count,
                bytes_on_disk: dir_size(&path),
            })
        })
        .await
    }

    async fn commit(&self) -> Result<(), StoreError> {
        self.write(|shard| {
            shard.optimize().map_err(backend)?;
            shard.flush();
            Ok(())
        })
        .await
    }

    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError> {
        self.read(move |shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset: from.map(PointId::Uuid),
                    limit: Some(limit.max(1)),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: WithVector::Bool(true),
                    order_by: None,
                })
                .map_err(backend)?;
            let chunks = records
                .into_iter()
                .map(|r| {
                    let hit = to_hit(r.payload, r.vector, 0.0)?;
                    Ok(StoredChunk {
                        chunk: hit.chunk,
                        dense: hit.dense,
                        sparse: hit.sparse.unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let next = match next {
                None => None,
                Some(PointId::Uuid(id)) => Some(id),
                Some(other) => {
                    return Err(StoreError::Backend(format!(
                        "point id {other:?} was not written by lore (expected a UUID)"
                    )));
                }
            };
            Ok(ScrollPage { chunks, next })
        })
        .await
    }

    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        self.read(|shard| {
            let response = shard
                .facet(FacetRequest {
                    key: "tenant".try_into().expect("valid field name"),
                    limit: usize::MAX >> 1,
                    filter: None,
                    exact: true,
                })
                .map_err(backend)?;
            Ok(response
                .hits
                .into_iter()
                .filter_map(|hit| match hit.value {
                    FacetValue::Keyword(tenant) => Some((tenant, hit.count)),
                    _ => None,
                })
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::synthetic::{XorShift, unit_vector};
    use crate::store::tenant_key;

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
    async fn fill(store: &EdgeStore, tenant: &str, n: usize, rng: &mut XorShift) -> Vec<f32> {
        let chunks: Vec<StoredChunk> = (0..n as u32)
            .map(|i| chunk(tenant, i, unit_vector(rng, DIM)))
            .collect();
        let probe = chunks[n / 2].dense.clone().unwrap();
        for batch in chunks.chunks(1000) {
            store.upsert(batch.to_vec()).await.unwrap();
        }
        probe
    }

    async fn top_hit(store: &EdgeStore, scope: TenantScope, query: Vec<f32>) -> Chunk {
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
        let store = EdgeStore::open(dir.path(), Some(("test".into(), DIM))).unwrap();
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
        let open = || EdgeStore::open(dir.path(), Some(("test".into(), DIM))).unwrap();
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

    async fn sparse_hits(store: &EdgeStore, tenant: &str, term: u32) -> Vec<Hit> {
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
    async fn write_unkeyed(store: &EdgeStore, chunks: Vec<StoredChunk>) {
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
        let store = EdgeStore::open(dir.path(), None).unwrap();
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
            let store = EdgeStore::open(dir.path(), None).unwrap();
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
            let store = EdgeStore::open(dir.path(), None).unwrap();
            write_unkeyed(&store, (0..10).map(|i| sparse_chunk("a", i)).collect()).await;
            store.commit().await.unwrap();
        }
        set_format(dir.path(), 1);
        {
            // A run that keyed the first half, then stopped before the manifest moved on.
            let store = EdgeStore::open(dir.path(), None).unwrap();
            write_unkeyed(&store, (10..20).map(|i| sparse_chunk("a", i)).collect()).await;
            store.commit().await.unwrap();
        }
        set_format(dir.path(), 1);
        let store = EdgeStore::open(dir.path(), None).unwrap();
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
}
