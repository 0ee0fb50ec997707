//! What both backends store and name: the vector names, the payload keys, the store format,
//! point ids, per-tenant BM25 dimensions and a chunk's payload. One definition here keeps
//! the embedded store and the server interchangeable (`lore migrate` copies between them,
//! and a search gives the same answer on either). Each backend keeps its own API types.

use super::{Chunk, SparseVector, StoreError, StoreErrorKind, StoreQuery, StoredChunk};
use sha2::{Digest, Sha256};

/// Named dense vector (cosine).
pub const DENSE: &str = "dense";
/// Named sparse vector: BM25 term-frequency weights, without the engine's IDF modifier (it
/// counts every tenant); queries arrive weighted by the scope's IDF ([`super::scope_idf`]).
pub const SPARSE: &str = "bm25_tf";
/// Payload keys of a [`Chunk`] that both backends index or read.
pub const TENANT: &str = "tenant";
pub const SOURCE: &str = "source";
pub const SOURCE_HASH: &str = "source_hash";
/// The store format: bumped when the payload layout or sparse encoding changes
/// incompatibly. 2: BM25 dimensions keyed per tenant ([`tenant_terms`]). 3: no engine IDF;
/// term hashes in the payload for lore's per-scope IDF ([`super::scope_idf`]). The
/// embedded store records it in its manifest, the server in collection metadata.
pub const FORMAT: u32 = 3;

/// Point id of a chunk: stable across runs, so re-ingesting overwrites rather than duplicates.
pub fn chunk_point_id(tenant: &str, source: &str, index: u32) -> uuid::Uuid {
    // A fixed namespace so ids agree across backends and machines.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c6f_7265_2d6b_622d_9c3e_41a7_5d20_b001);
    let key = format!("{tenant}\u{0}{source}\u{0}{index}");
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

/// Gives each tenant its own BM25 dimensions in the store: a term id XOR a key derived from
/// the tenant. Both backends store and query these. A tenant's posting lists then hold only
/// its own chunks, so a sparse search walks one tenant's postings instead of everyone's.
/// XOR is its own inverse ([`lore_terms`] reads back).
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

/// (term, weight) pairs as a vector in ascending term order, each term once (the larger
/// weight when one repeats).
pub(super) fn ascending(mut terms: Vec<(u32, f32)>) -> SparseVector {
    terms.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    terms.dedup_by_key(|t| t.0);
    let (indices, values) = terms.into_iter().unzip();
    SparseVector { indices, values }
}

/// A chunk's payload: its fields under their own names.
pub fn chunk_payload(
    chunk: &Chunk,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match serde_json::to_value(chunk).map_err(StoreError::internal)? {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(StoreError::internal(format!(
            "a chunk serialised to {other}, not an object"
        ))),
    }
}

/// A point's payload: the chunk's fields, and its BM25 terms as hashes for the per-scope IDF
/// ([`BM25_TERMS`]).
pub fn point_payload(
    chunk: &Chunk,
    sparse: &SparseVector,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    let mut payload = chunk_payload(chunk)?;
    let terms = chunk_term_hashes(&chunk.tenant, &sparse.indices);
    payload.insert(BM25_TERMS.to_owned(), serde_json::json!(terms));
    Ok(payload)
}

/// The chunk a point's payload holds; a payload lore did not write is refused.
pub fn payload_chunk(
    payload: serde_json::Map<String, serde_json::Value>,
) -> Result<Chunk, StoreError> {
    serde_json::from_value(serde_json::Value::Object(payload)).map_err(|e| {
        StoreError::backend(
            StoreErrorKind::Incompatible,
            format!("a point's payload is not a lore chunk: {e}"),
        )
    })
}

/// Refuses chunks whose dense vector does not fit a store of `dimension` (None: sparse-only).
pub fn check_dense_dimensions(
    chunks: &[StoredChunk],
    dimension: Option<usize>,
) -> Result<(), StoreError> {
    match chunks
        .iter()
        .find(|c| c.dense.as_ref().map(Vec::len) != dimension)
    {
        Some(bad) => Err(StoreError::backend(
            StoreErrorKind::Invalid,
            format!(
                "chunk {} of {} has a dense vector of {:?} dimensions; the store expects {:?}",
                bad.chunk.index,
                bad.chunk.source,
                bad.dense.as_ref().map(Vec::len),
                dimension
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a dense or hybrid query on a sparse-only store.
pub fn check_query(query: &StoreQuery, dimension: Option<usize>) -> Result<(), StoreError> {
    if matches!(query, StoreQuery::Dense(_) | StoreQuery::Hybrid { .. }) && dimension.is_none() {
        return Err(StoreError::backend(
            StoreErrorKind::Invalid,
            "this store has no dense vectors; search it in sparse mode",
        ));
    }
    Ok(())
}

/// Payload key: a chunk's BM25 terms as [`term_hash`]es, under an integer index.
pub const BM25_TERMS: &str = "bm25_terms";

/// A term of `tenant` as a 64-bit hash (the first 8 bytes of SHA-256 over the tenant and
/// lore's term id). Keyed by the tenant, so equal words of two tenants are different values.
pub fn term_hash(tenant: &str, term: u32) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"lore-bm25-term\0")
        .chain_update(tenant.as_bytes())
        .chain_update([0])
        .chain_update(term.to_le_bytes())
        .finalize();
    i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The [`BM25_TERMS`] payload of a chunk of `tenant` with these lore term ids.
pub fn chunk_term_hashes(tenant: &str, terms: &[u32]) -> Vec<i64> {
    terms.iter().map(|&term| term_hash(tenant, term)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn stored_terms_read_back_as_lores_ids_in_ascending_order() {
        let read = lore_terms("a", tenant_terms("a", vec![8, 3]), vec![0.5, 1.0]);
        assert_eq!(read.indices, [3, 8]);
        assert_eq!(read.values, [1.0, 0.5]);
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

    /// A chunk with every kind of field, for the conversion tests of both backends.
    pub(crate) fn chunk() -> Chunk {
        Chunk {
            tenant: "t".into(),
            source: "a.md".into(),
            index: 3,
            text: "你好 world".into(),
            page: None,
            heading: Some("H".into()),
            timestamp: None,
            title: None,
            start: 10,
            end: 20,
            source_hash: "abc".into(),
        }
    }

    #[test]
    fn a_chunk_survives_the_payload_round_trip_under_the_shared_keys() {
        let payload = chunk_payload(&chunk()).unwrap();
        for key in [TENANT, SOURCE, SOURCE_HASH] {
            assert!(payload.contains_key(key), "{key}");
        }
        assert_eq!(payload_chunk(payload).unwrap(), chunk());
        let mut foreign = serde_json::Map::new();
        foreign.insert("title".into(), "not ours".into());
        let err = payload_chunk(foreign).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    }

    #[test]
    fn wrong_vectors_and_dense_queries_on_a_sparse_store_are_invalid() {
        let stored = StoredChunk {
            chunk: chunk(),
            dense: Some(vec![0.5; 3]),
            sparse: SparseVector::default(),
        };
        assert!(check_dense_dimensions(std::slice::from_ref(&stored), Some(3)).is_ok());
        let err = check_dense_dimensions(&[stored], Some(4)).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
        let err = check_query(&StoreQuery::Dense(vec![1.0]), None).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
        assert!(check_query(&StoreQuery::Sparse(SparseVector::default()), None).is_ok());
    }
}
