//! The collection: created with lore's layout if missing, otherwise checked against it
//! (server version, vectors, payload indexes, store format and embedder).

use std::collections::HashMap;

use qdrant_client::qdrant::{
    CollectionInfo, CreateCollection, CreateFieldIndexCollection, Distance, FieldType,
    IntegerIndexParams, KeywordIndexParams, Modifier, PayloadIndexParams, PayloadSchemaType,
    SparseVectorConfig, SparseVectorParams, Value, VectorParams, VectorParamsMap, VectorsConfig,
    payload_index_params, value, vectors_config,
};

use super::QdrantStore;
use super::errors::{describe_error, error_kind};
use crate::store::StoreErrorKind;
use crate::store::schema::{DENSE, FORMAT, SOURCE, SPARSE, TENANT};
use crate::store::scope_idf::BM25_TERMS;

/// Collection metadata keys pinning what a collection was built with (Qdrant >= 1.16).
const META_FORMAT: &str = "lore_format";
const META_DENSE: &str = "lore_dense";
/// Payload key of a knowledge channel's chunks; only the server indexes it.
const CHANNEL: &str = "channel";
/// Oldest server with everything used here: Query API prefetch + parametrised RRF,
/// tenant indexes, facets and collection metadata.
pub const MIN_SERVER_VERSION: (u64, u64) = (1, 16);

/// Why a collection cannot be used: the kind, and what to do.
type Refusal = (StoreErrorKind, String);

impl QdrantStore {
    pub(super) async fn ensure_collection(
        &self,
        dense: &Option<(String, usize)>,
    ) -> Result<(), Refusal> {
        if !self.exists().await? {
            self.create_replicated(dense).await?;
        }
        let info = self.info().await.map_err(|e| (e.kind(), e.to_string()))?;
        check_schema(&info, dense).map_err(|reason| (StoreErrorKind::Incompatible, reason))?;
        self.ensure_payload_indexes(&info).await?;
        self.check_replication().await
    }

    pub(super) fn create_request(&self, dense: &Option<(String, usize)>) -> CreateCollection {
        let mut vectors = HashMap::new();
        if let Some((_, size)) = dense {
            vectors.insert(
                DENSE.to_owned(),
                VectorParams {
                    size: *size as u64,
                    distance: Distance::Cosine as i32,
                    ..Default::default()
                },
            );
        }
        let sparse = HashMap::from([(
            SPARSE.to_owned(),
            // No IDF modifier: lore weights queries by the scope's IDF (store::scope_idf).
            SparseVectorParams {
                index: None,
                modifier: None,
            },
        )]);
        let dense_id = match dense {
            Some((id, _)) => Value::from(serde_json::json!(id)),
            None => Value::from(serde_json::Value::Null),
        };
        CreateCollection {
            collection_name: self.collection.clone(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: vectors,
                })),
            }),
            sparse_vectors_config: Some(SparseVectorConfig { map: sparse }),
            shard_number: self.layout.shard_number,
            replication_factor: Some(self.layout.replication_factor),
            write_consistency_factor: Some(self.layout.write_consistency_factor),
            metadata: HashMap::from([
                (
                    META_FORMAT.to_owned(),
                    Value::from(serde_json::json!(FORMAT)),
                ),
                (META_DENSE.to_owned(), dense_id),
            ]),
            ..Default::default()
        }
    }

    /// The tenant index (marked as the tenant key, so the server co-locates each tenant's
    /// points), the source and channel indexes, and the term-hash index behind per-scope
    /// document frequencies (lookups only, no graph links per value). Creating an existing
    /// index is a no-op, so only missing ones are sent.
    async fn ensure_payload_indexes(&self, info: &CollectionInfo) -> Result<(), Refusal> {
        let keyword = |is_tenant| {
            payload_index_params::IndexParams::KeywordIndexParams(KeywordIndexParams {
                is_tenant: Some(is_tenant),
                ..Default::default()
            })
        };
        let term_hashes =
            payload_index_params::IndexParams::IntegerIndexParams(IntegerIndexParams {
                lookup: Some(true),
                range: Some(false),
                enable_hnsw: Some(false),
                ..Default::default()
            });
        let indexes = [
            (TENANT, FieldType::Keyword, keyword(true)),
            (SOURCE, FieldType::Keyword, keyword(false)),
            (CHANNEL, FieldType::Keyword, keyword(false)),
            (BM25_TERMS, FieldType::Integer, term_hashes),
        ];
        for (field, field_type, params) in indexes {
            let wanted = match field_type {
                FieldType::Integer => PayloadSchemaType::Integer,
                _ => PayloadSchemaType::Keyword,
            };
            if let Some(schema) = info.payload_schema.get(field) {
                if schema.data_type != wanted as i32 {
                    return Err((
                        StoreErrorKind::Incompatible,
                        format!(
                            "payload field {field:?} is indexed as {:?}, lore needs {:?}; \
                         use another [store] collection",
                            PayloadSchemaType::try_from(schema.data_type)
                                .map_or("unknown".into(), |t| t.as_str_name().to_owned()),
                            wanted.as_str_name()
                        ),
                    ));
                }
                continue;
            }
            let request = CreateFieldIndexCollection {
                collection_name: self.collection.clone(),
                wait: Some(true),
                field_name: field.to_owned(),
                field_type: Some(field_type as i32),
                field_index_params: Some(PayloadIndexParams {
                    index_params: Some(params),
                }),
                ..Default::default()
            };
            self.call(|c| {
                let request = request.clone();
                async move { c.create_field_index(request).await }
            })
            .await
            .map_err(|e| {
                (
                    error_kind(&e),
                    format!("creating the {field} payload index: {}", describe_error(&e)),
                )
            })?;
        }
        Ok(())
    }
}

/// Checks `version` (e.g. "1.16.2") against [`MIN_SERVER_VERSION`].
pub(super) fn check_version(version: &str) -> Result<(), String> {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next(), parts.next());
    let (min_major, min_minor) = MIN_SERVER_VERSION;
    match found {
        (Some(major), Some(minor)) if (major, minor) >= (min_major, min_minor) => Ok(()),
        (Some(_), Some(_)) => Err(format!(
            "the Qdrant server is version {version}; lore needs {min_major}.{min_minor} or newer \
             (Query API with parametrised RRF, tenant indexes, facets, collection metadata)"
        )),
        _ => Err(format!(
            "the Qdrant server reported an unreadable version {version:?}"
        )),
    }
}

/// Compares an existing collection with what lore would create.
pub(super) fn check_schema(
    info: &CollectionInfo,
    dense: &Option<(String, usize)>,
) -> Result<(), String> {
    let params = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .ok_or("the server returned no collection parameters")?;
    let metadata = info.config.as_ref().map(|c| &c.metadata);
    // Collections created by lore pin their format (checked first, so an older lore's
    // collection is named as such rather than as a schema mismatch) and embedder; another
    // model of the same size would otherwise pass the dimension check and return nonsense.
    // Format 1 holds BM25 dimensions shared by all tenants, format 2 BM25 scored with the
    // engine's IDF across all tenants and no term hashes for lore's per-scope IDF.
    if let Some(found) = metadata.and_then(|m| m.get(META_FORMAT)) {
        let found = match &found.kind {
            Some(value::Kind::IntegerValue(n)) => Some(*n),
            Some(value::Kind::DoubleValue(n)) => Some(*n as i64),
            _ => None,
        };
        if found != Some(i64::from(FORMAT)) {
            return Err(format!(
                "the collection was built by another lore version (format {}, this lore \
                 needs {FORMAT}); use another [store] collection and fill it with `lore \
                 migrate --from embedded --to qdrant` (the lore that wrote this collection can \
                 copy it out first with `lore migrate --from qdrant --to embedded`; this lore \
                 upgrades an embedded store in place) or by ingesting again",
                found.map_or("unknown".to_owned(), |n| n.to_string())
            ));
        }
    }
    let fix = "use another [store] collection, or the embedder it was built with";
    let named: HashMap<String, VectorParams> = match params
        .vectors_config
        .as_ref()
        .and_then(|v| v.config.clone())
    {
        Some(vectors_config::Config::ParamsMap(map)) => map.map,
        Some(vectors_config::Config::Params(_)) => {
            return Err(format!(
                "the collection has one unnamed dense vector; lore needs named vectors \
                 {DENSE:?} and {SPARSE:?}; {fix}"
            ));
        }
        None => HashMap::new(),
    };
    match (dense, named.get(DENSE)) {
        (Some((id, size)), Some(found)) => {
            if found.size != *size as u64 || found.distance != Distance::Cosine as i32 {
                return Err(format!(
                    "schema mismatch: the collection's {DENSE:?} vector has {} dimensions \
                     ({:?} distance) but {id} needs {size} (Cosine); {fix}",
                    found.size,
                    Distance::try_from(found.distance).unwrap_or(Distance::UnknownDistance)
                ));
            }
        }
        (Some((id, size)), None) => {
            return Err(format!(
                "schema mismatch: the collection has no {DENSE:?} vector but {id} \
                 ({size} dimensions) is configured; {fix}"
            ));
        }
        (None, Some(found)) => {
            return Err(format!(
                "schema mismatch: the collection has a {DENSE:?} vector ({} dimensions) but no \
                 dense embedder is configured (sparse-only); {fix}",
                found.size
            ));
        }
        (None, None) => {}
    }
    let sparse = params
        .sparse_vectors_config
        .as_ref()
        .and_then(|s| s.map.get(SPARSE));
    match sparse {
        Some(p) if p.modifier == Some(Modifier::Idf as i32) => {
            return Err(format!(
                "schema mismatch: the collection's {SPARSE:?} sparse vector has the IDF \
                 modifier, which counts every tenant (lore weights BM25 queries by each \
                 scope's own IDF); use another [store] collection"
            ));
        }
        Some(_) => {}
        None => {
            return Err(format!(
                "schema mismatch: the collection has no {SPARSE:?} sparse vector; use another \
                 [store] collection"
            ));
        }
    }
    if let Some(found) = metadata.and_then(|m| m.get(META_DENSE)) {
        let found = match &found.kind {
            Some(value::Kind::StringValue(s)) => Some(s.clone()),
            _ => None,
        };
        let wanted = dense.as_ref().map(|d| d.0.clone());
        if found != wanted {
            return Err(format!(
                "schema mismatch: the collection was built with dense embedder {} but {} is \
                 configured; {fix}",
                found.as_deref().unwrap_or("none (sparse-only)"),
                wanted.as_deref().unwrap_or("none (sparse-only)")
            ));
        }
    }
    Ok(())
}
