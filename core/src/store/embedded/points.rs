//! A chunk as an engine point and back.

use qdrant_edge::external::serde_json::Value;
use qdrant_edge::{
    Payload, PointId, PointStruct, ScoredPoint, VectorInternal, VectorStructInternal, Vectors,
};

use crate::store::schema::{
    DENSE, SPARSE, chunk_point_id, lore_terms, payload_chunk, point_payload, tenant_terms,
};
use crate::store::{Hit, StoreError, StoreErrorKind, StoredChunk};

pub(super) fn to_point(stored: StoredChunk) -> Result<PointStruct, StoreError> {
    let StoredChunk {
        chunk,
        dense,
        sparse,
    } = stored;
    let id = chunk_point_id(&chunk.tenant, &chunk.source, chunk.index);
    let payload = Value::Object(point_payload(&chunk, &sparse)?);
    let sparse = qdrant_edge::SparseVector {
        indices: tenant_terms(&chunk.tenant, sparse.indices),
        values: sparse.values,
    };
    let mut vectors: Vec<(&str, qdrant_edge::Vector)> = vec![(SPARSE, sparse.into())];
    if let Some(dense) = dense {
        vectors.push((DENSE, dense.into()));
    }
    Ok(PointStruct::new(
        PointId::Uuid(id),
        Vectors::new_named(vectors),
        payload,
    ))
}

pub(super) fn scored_hit(point: ScoredPoint) -> Result<Hit, StoreError> {
    to_hit(point.payload, point.vector, point.score)
}

/// A stored point as a hit: its chunk, and its vectors when they were asked for.
pub(super) fn to_hit(
    payload: Option<Payload>,
    vector: Option<VectorStructInternal>,
    score: f32,
) -> Result<Hit, StoreError> {
    let payload = payload.ok_or_else(|| {
        StoreError::backend(StoreErrorKind::Incompatible, "point without payload")
    })?;
    let chunk = payload_chunk(payload.0)?;
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
