//! A Qdrant server or cluster over gRPC (qdrant-client): the backend for a team that has
//! outgrown one machine. Same collection layout, point ids and BM25 vectors as the
//! embedded store, so search results agree and `lore migrate` can copy between them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    CollectionExistsRequest, CollectionInfo, Condition, CountPoints, CreateCollection,
    CreateFieldIndexCollection, DeletePoints, DenseVector, Distance, FacetCounts, FieldCondition,
    FieldType, Filter, GetCollectionInfoRequest, GetPoints, KeywordIndexParams, Match, Modifier,
    NamedVectors, PayloadIndexParams, PayloadSchemaType, PointId, PointStruct, PointsSelector,
    PrefetchQuery, Query, QueryPoints, RepeatedStrings, Rrf, ScrollPoints, SparseVectorConfig,
    SparseVectorParams, UpsertPoints, Value, Vector, VectorInput, VectorParams, VectorParamsMap,
    Vectors, VectorsConfig, VectorsOutput, WithPayloadSelector, WithVectorsSelector, condition,
    facet_value, r#match, payload_index_params, point_id, points_selector, query, value, vector,
    vector_input, vector_output, vectors, vectors_config, vectors_output, with_payload_selector,
    with_vectors_selector,
};
use qdrant_client::{Payload, Qdrant, QdrantError};

use super::{
    Chunk, Hit, KnowledgeStore, ScrollPage, SearchRequest, SourceSummary, SparseVector, StoreError,
    StoreQuery, StoreStats, StoredChunk, TenantScope, chunk_point_id, lore_terms, scope_terms,
    tenant_terms,
};

const DENSE: &str = "dense";
const SPARSE: &str = "bm25";
/// Collection metadata keys pinning what a collection was built with (Qdrant >= 1.16).
const META_FORMAT: &str = "lore_format";
const META_DENSE: &str = "lore_dense";
/// Same meaning as the embedded store's manifest format (2: BM25 dimensions keyed per
/// tenant, [`tenant_terms`]).
const FORMAT: i64 = 2;
/// Oldest server with everything used here: Query API prefetch + parametrised RRF,
/// tenant indexes, facets and collection metadata.
pub const MIN_SERVER_VERSION: (u64, u64) = (1, 16);
/// Points per upsert call: well under gRPC's default 4 MiB message limit at 384 dimensions.
const UPSERT_BATCH: usize = 128;
/// Facet limit for "every value" (sources of a tenant, tenants of a collection).
const FACET_ALL: u64 = 1_000_000;

/// Where the server is and how to reach it. The API key comes from `QDRANT_API_KEY` and is
/// never printed (this type deliberately has no `Debug`).
#[derive(Clone)]
pub struct ServerConfig {
    /// gRPC endpoint, e.g. `http://localhost:6334`; `https://` turns TLS on.
    pub url: String,
    pub collection: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// A knowledge store in one collection of a Qdrant server.
pub struct QdrantServerStore {
    client: Qdrant,
    collection: String,
    dense_dimension: Option<usize>,
    /// `url/collection`, for messages.
    location: String,
    server_version: String,
}

impl QdrantServerStore {
    /// Connects, checks the server version, creates the collection if it is missing, and
    /// checks its schema against `dense` (the configured embedder's id and dimension).
    pub async fn connect(
        config: ServerConfig,
        dense: Option<(String, usize)>,
    ) -> Result<Self, StoreError> {
        let location = format!("{}/{}", config.url.trim_end_matches('/'), config.collection);
        let open_err = |reason: String| StoreError::Open {
            path: location.clone(),
            reason,
        };
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(open_err(format!(
                "[store] url {:?} must start with http:// or https:// (gRPC, usually port 6334)",
                config.url
            )));
        }
        if config.collection.trim().is_empty() {
            return Err(open_err("[store] collection is empty".into()));
        }
        let client = Qdrant::from_url(&config.url)
            .api_key(config.api_key.clone())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // The builder's own check runs a blocking runtime; ours below is async and
            // turns a failure into a message that says what to fix.
            .skip_compatibility_check()
            .build()
            .map_err(|e| open_err(format!("invalid Qdrant client settings: {e}")))?;
        let health = client
            .health_check()
            .await
            .map_err(|e| open_err(unreachable_reason(&config.url, &e)))?;
        check_version(&health.version).map_err(open_err)?;
        let store = Self {
            client,
            collection: config.collection.clone(),
            dense_dimension: dense.as_ref().map(|d| d.1),
            location: location.clone(),
            server_version: health.version,
        };
        store.ensure_collection(&dense).await.map_err(open_err)?;
        Ok(store)
    }

    /// The version the server reported at connect.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    async fn ensure_collection(&self, dense: &Option<(String, usize)>) -> Result<(), String> {
        let exists = self
            .client
            .collection_exists(CollectionExistsRequest {
                collection_name: self.collection.clone(),
            })
            .await
            .map_err(|e| format!("checking the collection: {e}"))?;
        if !exists {
            if let Err(e) = self
                .client
                .create_collection(self.create_request(dense))
                .await
            {
                // Another lore process may have created it meanwhile; the schema check
                // below decides whether that is fine.
                let now_exists = self
                    .client
                    .collection_exists(CollectionExistsRequest {
                        collection_name: self.collection.clone(),
                    })
                    .await
                    .unwrap_or(false);
                if !now_exists {
                    return Err(format!("creating the collection: {e}"));
                }
            }
            tracing::info!(collection = %self.collection, "created the Qdrant collection");
        }
        let info = self.info().await.map_err(|e| e.to_string())?;
        check_schema(&info, dense)?;
        self.ensure_payload_indexes(&info).await
    }

    fn create_request(&self, dense: &Option<(String, usize)>) -> CreateCollection {
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
            SparseVectorParams {
                index: None,
                modifier: Some(Modifier::Idf as i32),
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
    /// points), and the source and channel indexes. Creating an existing index is a no-op,
    /// so only missing ones are sent.
    async fn ensure_payload_indexes(&self, info: &CollectionInfo) -> Result<(), String> {
        for (field, is_tenant) in [("tenant", true), ("source", false), ("channel", false)] {
            if let Some(schema) = info.payload_schema.get(field) {
                if schema.data_type != PayloadSchemaType::Keyword as i32 {
                    return Err(format!(
                        "payload field {field:?} is indexed as {:?}, lore needs a keyword index; \
                         use another [store] collection",
                        PayloadSchemaType::try_from(schema.data_type)
                            .map_or("unknown".into(), |t| t.as_str_name().to_owned())
                    ));
                }
                continue;
            }
            self.client
                .create_field_index(CreateFieldIndexCollection {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    field_name: field.to_owned(),
                    field_type: Some(FieldType::Keyword as i32),
                    field_index_params: Some(PayloadIndexParams {
                        index_params: Some(payload_index_params::IndexParams::KeywordIndexParams(
                            KeywordIndexParams {
                                is_tenant: Some(is_tenant),
                                ..Default::default()
                            },
                        )),
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("creating the {field} payload index: {e}"))?;
        }
        Ok(())
    }

    async fn info(&self) -> Result<CollectionInfo, StoreError> {
        self.client
            .collection_info(GetCollectionInfoRequest {
                collection_name: self.collection.clone(),
            })
            .await
            .map_err(|e| self.backend(e))?
            .result
            .ok_or_else(|| StoreError::Backend(format!("{}: empty collection info", self.location)))
    }

    fn backend(&self, e: QdrantError) -> StoreError {
        StoreError::Backend(format!(
            "Qdrant server {}: {}",
            self.location,
            describe_error(&e)
        ))
    }

    async fn count(&self, filter: Filter) -> Result<usize, StoreError> {
        let response = self
            .client
            .count(CountPoints {
                collection_name: self.collection.clone(),
                filter: Some(filter),
                exact: Some(true),
                ..Default::default()
            })
            .await
            .map_err(|e| self.backend(e))?;
        Ok(response.result.map_or(0, |r| r.count as usize))
    }

    async fn facet(
        &self,
        key: &str,
        filter: Option<Filter>,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let response = self
            .client
            .facet(FacetCounts {
                collection_name: self.collection.clone(),
                key: key.to_owned(),
                filter,
                limit: Some(FACET_ALL),
                exact: Some(true),
                ..Default::default()
            })
            .await
            .map_err(|e| self.backend(e))?;
        Ok(response
            .hits
            .into_iter()
            .filter_map(|hit| match hit.value?.variant? {
                facet_value::Variant::StringValue(value) => Some((value, hit.count as usize)),
                _ => None,
            })
            .collect())
    }
}

/// Why the health check failed, in words an operator can act on.
fn unreachable_reason(url: &str, e: &QdrantError) -> String {
    let detail = describe_error(e);
    if let QdrantError::ResponseError { status } = e {
        let code = format!("{:?}", status.code());
        if code == "Unauthenticated" || code == "PermissionDenied" {
            return format!(
                "the Qdrant server at {url} refused the API key ({detail}); set QDRANT_API_KEY"
            );
        }
    }
    format!(
        "cannot reach a Qdrant server at {url} ({detail}); check [store] url (the gRPC port, \
         usually 6334, not the REST port 6333), that the server is running, and QDRANT_API_KEY"
    )
}

/// A client error without response metadata (which could echo request headers).
fn describe_error(e: &QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// Checks `version` (e.g. "1.16.2") against [`MIN_SERVER_VERSION`].
fn check_version(version: &str) -> Result<(), String> {
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
fn check_schema(info: &CollectionInfo, dense: &Option<(String, usize)>) -> Result<(), String> {
    let params = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .ok_or("the server returned no collection parameters")?;
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
        Some(p) if p.modifier == Some(Modifier::Idf as i32) => {}
        Some(_) => {
            return Err(format!(
                "schema mismatch: the collection's {SPARSE:?} sparse vector lacks the IDF \
                 modifier, so BM25 scores would differ; use another [store] collection"
            ));
        }
        None => {
            return Err(format!(
                "schema mismatch: the collection has no {SPARSE:?} sparse vector; use another \
                 [store] collection"
            ));
        }
    }
    // Collections created by lore pin their format and embedder; another model of the same
    // size would otherwise pass the dimension check and return nonsense, and a format-1
    // collection holds BM25 dimensions shared by all tenants, which keyed queries miss.
    let metadata = info.config.as_ref().map(|c| &c.metadata);
    if let Some(found) = metadata.and_then(|m| m.get(META_FORMAT)) {
        let found = match &found.kind {
            Some(value::Kind::IntegerValue(n)) => Some(*n),
            Some(value::Kind::DoubleValue(n)) => Some(*n as i64),
            _ => None,
        };
        if found != Some(FORMAT) {
            return Err(format!(
                "the collection was built by another lore version (format {}, this lore \
                 needs {FORMAT}); use another [store] collection and fill it with `lore \
                 migrate --from embedded --to qdrant` or by ingesting again",
                found.map_or("unknown".to_owned(), |n| n.to_string())
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

fn uuid_id(id: uuid::Uuid) -> PointId {
    PointId {
        point_id_options: Some(point_id::PointIdOptions::Uuid(id.to_string())),
    }
}

fn parse_id(id: Option<PointId>) -> Result<uuid::Uuid, StoreError> {
    match id.and_then(|p| p.point_id_options) {
        Some(point_id::PointIdOptions::Uuid(s)) => uuid::Uuid::parse_str(&s)
            .map_err(|e| StoreError::Backend(format!("point id {s:?} is not a UUID: {e}"))),
        other => Err(StoreError::Backend(format!(
            "point id {other:?} was not written by lore (expected a UUID)"
        ))),
    }
}

fn keyword(field: &str, value: &str) -> Condition {
    Condition {
        condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
            key: field.to_owned(),
            r#match: Some(Match {
                match_value: Some(r#match::MatchValue::Keyword(value.to_owned())),
            }),
            ..Default::default()
        })),
    }
}

/// The tenant filter: the one place a scope becomes a server condition.
fn scope_filter(scope: &TenantScope) -> Filter {
    Filter {
        must: vec![Condition {
            condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
                key: "tenant".to_owned(),
                r#match: Some(Match {
                    match_value: Some(r#match::MatchValue::Keywords(RepeatedStrings {
                        strings: scope.tenants().to_vec(),
                    })),
                }),
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

fn source_filter(tenant: &str, source: &str) -> Filter {
    Filter {
        must: vec![keyword("tenant", tenant), keyword("source", source)],
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
    let mut named = HashMap::from([(
        SPARSE.to_owned(),
        Vector {
            vector: Some(vector::Vector::Sparse(
                qdrant_client::qdrant::SparseVector {
                    values: sparse.values,
                    indices: tenant_terms(&chunk.tenant, sparse.indices),
                },
            )),
            ..Default::default()
        },
    )]);
    if let Some(data) = dense {
        named.insert(
            DENSE.to_owned(),
            Vector {
                vector: Some(vector::Vector::Dense(DenseVector { data })),
                ..Default::default()
            },
        );
    }
    let json = serde_json::to_value(&chunk).map_err(|e| StoreError::Backend(e.to_string()))?;
    let payload = Payload::try_from(json).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(PointStruct {
        id: Some(uuid_id(id)),
        payload: payload.into(),
        vectors: Some(Vectors {
            vectors_options: Some(vectors::VectorsOptions::Vectors(NamedVectors {
                vectors: named,
            })),
        }),
    })
}

/// The stored vectors of a point of `tenant`: (dense, sparse with lore's term ids).
fn split_vectors(
    tenant: &str,
    vectors: Option<VectorsOutput>,
) -> (Option<Vec<f32>>, Option<SparseVector>) {
    let (mut dense, mut sparse) = (None, None);
    if let Some(vectors_output::VectorsOptions::Vectors(named)) =
        vectors.and_then(|v| v.vectors_options)
    {
        for (name, output) in named.vectors {
            match (name.as_str(), output.into_vector()) {
                (DENSE, vector_output::Vector::Dense(v)) => dense = Some(v.data),
                (SPARSE, vector_output::Vector::Sparse(v)) => {
                    sparse = Some(lore_terms(tenant, v.indices, v.values))
                }
                _ => {}
            }
        }
    }
    (dense, sparse)
}

fn to_chunk(payload: HashMap<String, Value>) -> Result<Chunk, StoreError> {
    Payload::from(payload)
        .deserialize::<Chunk>()
        .map_err(|e| StoreError::Backend(format!("a point's payload is not a lore chunk: {e}")))
}

fn nearest(input: vector_input::Variant) -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(input),
        })),
    })
}

fn dense_input(v: Vec<f32>) -> vector_input::Variant {
    vector_input::Variant::Dense(DenseVector { data: v })
}

fn sparse_input(v: SparseVector) -> vector_input::Variant {
    vector_input::Variant::Sparse(qdrant_client::qdrant::SparseVector {
        values: v.values,
        indices: v.indices,
    })
}

fn with_payload(enable: bool) -> Option<WithPayloadSelector> {
    Some(WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(enable)),
    })
}

fn with_vectors(enable: bool) -> Option<WithVectorsSelector> {
    Some(WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(enable)),
    })
}

#[async_trait]
impl KnowledgeStore for QdrantServerStore {
    fn dense_dimension(&self) -> Option<usize> {
        self.dense_dimension
    }

    async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError> {
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
        let mut points = chunks
            .into_iter()
            .map(to_point)
            .collect::<Result<Vec<_>, _>>()?;
        while !points.is_empty() {
            let rest = points.split_off(points.len().min(UPSERT_BATCH));
            self.client
                .upsert_points(UpsertPoints {
                    collection_name: self.collection.clone(),
                    // Searches right after ingest must see the chunks.
                    wait: Some(true),
                    points,
                    ..Default::default()
                })
                .await
                .map_err(|e| self.backend(e))?;
            points = rest;
        }
        Ok(())
    }

    async fn delete_source(&self, tenant: &str, source: &str) -> Result<usize, StoreError> {
        let filter = source_filter(tenant, source);
        let count = self.count(filter.clone()).await?;
        if count > 0 {
            self.client
                .delete_points(DeletePoints {
                    collection_name: self.collection.clone(),
                    wait: Some(true),
                    points: Some(PointsSelector {
                        points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                            filter,
                        )),
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| self.backend(e))?;
        }
        Ok(count)
    }

    async fn source_hash(&self, tenant: &str, source: &str) -> Result<Option<String>, StoreError> {
        let response = self
            .client
            .get_points(GetPoints {
                collection_name: self.collection.clone(),
                ids: vec![uuid_id(chunk_point_id(tenant, source, 0))],
                with_payload: with_payload(true),
                with_vectors: with_vectors(false),
                ..Default::default()
            })
            .await
            .map_err(|e| self.backend(e))?;
        Ok(response.result.into_iter().next().and_then(|point| {
            match point
                .payload
                .get("source_hash")
                .and_then(|v| v.kind.clone())
            {
                Some(value::Kind::StringValue(hash)) => Some(hash),
                _ => None,
            }
        }))
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
        let filter = scope_filter(&request.scope);
        let mut query = QueryPoints {
            collection_name: self.collection.clone(),
            // The tenant filter on the fused query too, not only on the prefetches.
            filter: Some(filter.clone()),
            limit: Some(request.limit as u64),
            with_payload: with_payload(true),
            with_vectors: with_vectors(request.with_vectors),
            ..Default::default()
        };
        match request.query {
            StoreQuery::Dense(v) => {
                query.query = nearest(dense_input(v));
                query.using = Some(DENSE.to_owned());
            }
            StoreQuery::Sparse(v) => {
                query.query = nearest(sparse_input(scope_terms(&request.scope, &v)));
                query.using = Some(SPARSE.to_owned());
            }
            StoreQuery::Hybrid {
                dense,
                sparse,
                rrf_k,
            } => {
                let depth = request.candidates.max(request.limit) as u64;
                let side = |input, using: &str| PrefetchQuery {
                    query: nearest(input),
                    using: Some(using.to_owned()),
                    filter: Some(filter.clone()),
                    limit: Some(depth),
                    ..Default::default()
                };
                query.prefetch = vec![
                    side(dense_input(dense), DENSE),
                    side(sparse_input(scope_terms(&request.scope, &sparse)), SPARSE),
                ];
                query.query = Some(Query {
                    variant: Some(query::Variant::Rrf(Rrf {
                        k: Some(rrf_k.max(1)),
                        weights: vec![],
                    })),
                });
            }
        }
        let response = self
            .client
            .query(query)
            .await
            .map_err(|e| self.backend(e))?;
        response
            .result
            .into_iter()
            .map(|point| {
                let chunk = to_chunk(point.payload)?;
                let (dense, sparse) = split_vectors(&chunk.tenant, point.vectors);
                Ok(Hit {
                    score: point.score,
                    chunk,
                    dense,
                    sparse,
                })
            })
            .collect()
    }

    async fn sources(&self, scope: &TenantScope) -> Result<Vec<SourceSummary>, StoreError> {
        let mut sources: Vec<SourceSummary> = self
            .facet("source", Some(scope_filter(scope)))
            .await?
            .into_iter()
            .map(|(source, chunks)| SourceSummary { source, chunks })
            .collect();
        sources.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(sources)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let info = self.info().await?;
        Ok(StoreStats {
            chunks: info.points_count.unwrap_or(0) as usize,
            indexed_vectors: info.indexed_vectors_count.unwrap_or(0) as usize,
            segments: info.segments_count as usize,
            // The gRPC API does not report disk use; the server's own metrics do.
            bytes_on_disk: 0,
        })
    }

    async fn commit(&self) -> Result<(), StoreError> {
        // Every upsert and delete waited for the server's WAL, and the server indexes and
        // flushes on its own: nothing is left to do here.
        Ok(())
    }

    async fn scroll(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<ScrollPage, StoreError> {
        let response = self
            .client
            .scroll(ScrollPoints {
                collection_name: self.collection.clone(),
                offset: from.map(uuid_id),
                limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
                with_payload: with_payload(true),
                with_vectors: with_vectors(true),
                ..Default::default()
            })
            .await
            .map_err(|e| self.backend(e))?;
        let chunks = response
            .result
            .into_iter()
            .map(|point| {
                let chunk = to_chunk(point.payload)?;
                let (dense, sparse) = split_vectors(&chunk.tenant, point.vectors);
                Ok(StoredChunk {
                    chunk,
                    dense,
                    sparse: sparse.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = match response.next_page_offset {
            Some(id) => Some(parse_id(Some(id))?),
            None => None,
        };
        Ok(ScrollPage { chunks, next })
    }

    async fn tenant_counts(&self) -> Result<BTreeMap<String, usize>, StoreError> {
        Ok(self.facet("tenant", None).await?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_the_minimum_are_refused_with_the_reason() {
        assert!(check_version("1.16.0").is_ok());
        assert!(check_version("1.17.2-dev").is_ok());
        assert!(check_version("2.0.0").is_ok());
        let err = check_version("1.9.4").unwrap_err();
        assert!(err.contains("1.9.4") && err.contains("1.16"), "{err}");
        assert!(check_version("dev").unwrap_err().contains("unreadable"));
    }

    #[test]
    fn a_chunk_survives_the_payload_round_trip() {
        let chunk = Chunk {
            tenant: "t".into(),
            source: "a.md".into(),
            index: 3,
            text: "你好 world".into(),
            page: None,
            heading: Some("H".into()),
            timestamp: None,
            start: 10,
            end: 20,
            source_hash: "abc".into(),
        };
        let point = to_point(StoredChunk {
            chunk: chunk.clone(),
            dense: Some(vec![0.5, 0.25]),
            sparse: SparseVector {
                indices: vec![1, 9],
                values: vec![1.0, 2.0],
            },
        })
        .unwrap();
        assert_eq!(
            parse_id(point.id.clone()).unwrap(),
            chunk_point_id("t", "a.md", 3)
        );
        assert_eq!(to_chunk(point.payload).unwrap(), chunk);
    }
}
