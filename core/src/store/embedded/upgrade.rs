//! Older store formats brought up to date at open: 1 to 2, BM25 dimensions keyed per tenant
//! ([`tenant_terms`]); 2 to 3, BM25 without the engine's IDF and with term hashes in the
//! payload for lore's per-scope IDF ([`crate::store::scope_idf`]).

use qdrant_edge::external::serde_json::Value;
use qdrant_edge::{
    CreateVectorName, DeleteVectorName, EdgeShard, PointInsertOperations, PointOperations,
    PointStruct, ScrollRequest, SparseVectorConfig, UpdateOperation, VectorInternal,
    VectorNameConfig, VectorNameOperations, VectorStructInternal, Vectors, WithPayloadInterface,
    WithVector,
};

use super::engine_error;
use super::layout::create_term_index;
use crate::store::schema::{DENSE, SPARSE, TENANT, lore_terms, tenant_terms};
use crate::store::scope_idf::{BM25_TERMS, chunk_term_hashes};
use crate::store::{StoreError, StoreErrorKind};

/// The sparse vector of formats 1 and 2, scored with the engine's IDF modifier. A vector's
/// modifier cannot change, so format 3 stores the same weights under [`SPARSE`].
const SPARSE_WITH_ENGINE_IDF: &str = "bm25";

/// A point that is not lore's.
fn not_lores(what: &str) -> StoreError {
    StoreError::backend(
        StoreErrorKind::Incompatible,
        format!("point without {what}"),
    )
}

/// Calls `rewrite` on every point, a page at a time, and upserts the points it returns
/// (None: leave the point as it is).
fn rewrite_points(
    shard: &EdgeShard,
    mut rewrite: impl FnMut(qdrant_edge::Record) -> Result<Option<PointStruct>, StoreError>,
) -> Result<usize, StoreError> {
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
            .map_err(engine_error)?;
        let mut points = Vec::with_capacity(records.len());
        for record in records {
            if let Some(point) = rewrite(record)? {
                points.push(point.into());
            }
        }
        rewritten += points.len();
        if !points.is_empty() {
            shard
                .update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
                ))
                .map_err(engine_error)?;
        }
        match next {
            Some(id) => offset = Some(id),
            None => return Ok(rewritten),
        }
    }
}

fn tenant_of(payload: &qdrant_edge::Payload) -> Result<String, StoreError> {
    payload
        .0
        .get(TENANT)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| not_lores("a tenant"))
}

/// Payload mark of a point whose BM25 vector [`rekey_sparse`] has keyed. XOR is its own
/// inverse, so a second pass over a point would undo the first: after an interrupted run
/// (the manifest still says format 1) the mark tells which points are done. A point and
/// its mark are written in one upsert.
pub(super) const REKEYED: &str = "bm25_keyed";

/// Rewrites every point's BM25 vector with [`tenant_terms`] (format 1 to 2), in pages, then
/// rebuilds the indexes. Runs at open, before the store serves anything. Returns the
/// points rewritten.
pub(super) fn rekey_sparse(shard: &EdgeShard) -> Result<usize, StoreError> {
    let rewritten = rewrite_points(shard, |record| {
        let mut payload = record.payload.ok_or_else(|| not_lores("payload"))?;
        if payload.0.contains_key(REKEYED) {
            return Ok(None);
        }
        let tenant = tenant_of(&payload)?;
        let Some(VectorStructInternal::Named(mut named)) = record.vector else {
            return Err(not_lores("named vectors"));
        };
        let mut vectors: Vec<(&str, qdrant_edge::Vector)> = Vec::new();
        if let Some(VectorInternal::Sparse(v)) = named.remove(SPARSE_WITH_ENGINE_IDF) {
            let keyed = qdrant_edge::SparseVector {
                indices: tenant_terms(&tenant, v.indices),
                values: v.values,
            };
            vectors.push((SPARSE_WITH_ENGINE_IDF, keyed.into()));
        }
        if let Some(VectorInternal::Dense(v)) = named.remove(DENSE) {
            vectors.push((DENSE, v.into()));
        }
        payload.0.insert(REKEYED.to_owned(), Value::Bool(true));
        let payload = Value::Object(payload.0);
        Ok(Some(PointStruct::new(
            record.id,
            Vectors::new_named(vectors),
            payload,
        )))
    })?;
    shard.optimize().map_err(engine_error)?;
    shard.flush();
    Ok(rewritten)
}

/// Format 2 to 3: the BM25 weights move to a vector without the engine's IDF modifier
/// ([`SPARSE`]), and each point gets its term hashes ([`BM25_TERMS`], derived from the
/// stored vector, so they match what is scored). A point is rewritten in one upsert, and
/// one that has its hashes is done, so an interrupted run resumes where it stopped; the old
/// vector is dropped last. Returns the points rewritten.
pub(super) fn drop_engine_idf(shard: &EdgeShard) -> Result<usize, StoreError> {
    let has_vector = |name: &str| shard.config().sparse_vectors.contains_key(name);
    if !has_vector(SPARSE) {
        let create = CreateVectorName {
            vector_name: SPARSE.to_owned(),
            config: VectorNameConfig::sparse(SparseVectorConfig {
                modifier: None,
                datatype: None,
            }),
        };
        shard
            .update(UpdateOperation::VectorNameOperation(
                VectorNameOperations::CreateVectorName(create),
            ))
            .map_err(engine_error)?;
    }
    create_term_index(shard).map_err(engine_error)?;
    let rewritten = rewrite_points(shard, |record| {
        let mut payload = record.payload.ok_or_else(|| not_lores("payload"))?;
        if payload.0.contains_key(BM25_TERMS) {
            return Ok(None);
        }
        let tenant = tenant_of(&payload)?;
        let Some(VectorStructInternal::Named(mut named)) = record.vector else {
            return Err(not_lores("named vectors"));
        };
        let sparse = match named.remove(SPARSE_WITH_ENGINE_IDF) {
            Some(VectorInternal::Sparse(v)) => v,
            _ => qdrant_edge::SparseVector::default(),
        };
        let terms = lore_terms(&tenant, sparse.indices.clone(), sparse.values.clone());
        let hashes = chunk_term_hashes(&tenant, &terms.indices);
        let mut vectors: Vec<(&str, qdrant_edge::Vector)> = vec![(SPARSE, sparse.into())];
        if let Some(VectorInternal::Dense(v)) = named.remove(DENSE) {
            vectors.push((DENSE, v.into()));
        }
        payload.0.remove(REKEYED);
        payload.0.insert(BM25_TERMS.to_owned(), hashes.into());
        Ok(Some(PointStruct::new(
            record.id,
            Vectors::new_named(vectors),
            Value::Object(payload.0),
        )))
    })?;
    if has_vector(SPARSE_WITH_ENGINE_IDF) {
        let delete = DeleteVectorName {
            vector_name: SPARSE_WITH_ENGINE_IDF.to_owned(),
        };
        shard
            .update(UpdateOperation::VectorNameOperation(
                VectorNameOperations::DeleteVectorName(delete),
            ))
            .map_err(engine_error)?;
    }
    shard.optimize().map_err(engine_error)?;
    shard.flush();
    Ok(rewritten)
}
