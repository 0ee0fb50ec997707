//! Store format 1 to 2 at open: BM25 dimensions keyed per tenant ([`tenant_terms`]).

use qdrant_edge::external::serde_json::Value;
use qdrant_edge::{
    EdgeShard, PointInsertOperations, PointOperations, PointStruct, ScrollRequest, UpdateOperation,
    VectorInternal, VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};

use super::engine_error;
use crate::store::schema::{DENSE, SPARSE, TENANT, tenant_terms};
use crate::store::{StoreError, StoreErrorKind};

/// Payload mark of a point whose BM25 vector [`rekey_sparse`] has keyed. XOR is its own
/// inverse, so a second pass over a point would undo the first: after an interrupted run
/// (the manifest still says format 1) the mark tells which points are done. A point and
/// its mark are written in one upsert.
const REKEYED: &str = "bm25_keyed";

/// Rewrites every point's BM25 vector with [`tenant_terms`] (format 1 to 2), in pages, then
/// rebuilds the indexes. Runs at open, before the store serves anything. Returns the
/// points rewritten.
pub(super) fn rekey_sparse(shard: &EdgeShard) -> Result<usize, StoreError> {
    let not_lores = |what: &str| {
        StoreError::backend(
            StoreErrorKind::Incompatible,
            format!("point without {what}"),
        )
    };
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
            let mut payload = record.payload.ok_or_else(|| not_lores("payload"))?;
            if payload.0.contains_key(REKEYED) {
                continue;
            }
            let tenant = payload
                .0
                .get(TENANT)
                .and_then(Value::as_str)
                .ok_or_else(|| not_lores("a tenant"))?
                .to_owned();
            let Some(VectorStructInternal::Named(mut named)) = record.vector else {
                return Err(not_lores("named vectors"));
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
                .map_err(engine_error)?;
        }
        match next {
            Some(id) => offset = Some(id),
            None => break,
        }
    }
    shard.optimize().map_err(engine_error)?;
    shard.flush();
    Ok(rewritten)
}
