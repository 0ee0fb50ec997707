//! A local stand-in for a Qdrant server, for tests only (there is no Qdrant binary or
//! container on this machine). It serves qdrant-client's own generated gRPC services with
//! tonic on 127.0.0.1, and every collection is a real qdrant-edge shard: the client code of
//! lore's server backend runs end to end over the real wire protocol, and scoring,
//! filtering, prefetch and RRF fusion are Qdrant's own code.
//!
//! It translates the calls lore makes (health check; collection exists/info/create/list/
//! delete; create keyword and integer field indexes; upsert, delete, get, scroll, count,
//! query, facet). Any other call, or a request shape lore never sends, answers
//! `unimplemented` rather than guessing.
//! Collections persist under the stand-in's directory, so a restarted stand-in serves them
//! again.
//!
//! Known differences from a real Qdrant server (keep this list true when either changes):
//! - Authentication: like a real server, the health check is answered without a key and
//!   every collection and point call is refused (`Unauthenticated`) without the right
//!   `api-key`; a real server also has read-only keys and JWT roles, the stand-in one key.
//! - Facets: an unfiltered facet also reports, with a count of 0, every keyword value the
//!   key held since the stand-in started (a real server's keyword index keeps values whose
//!   points were all deleted, e.g. a tenant after `lore forget`); a filtered facet does
//!   not. The stand-in forgets these values when it restarts; a real server keeps them
//!   until its segments are optimised.
//! - One process, one qdrant-edge shard per collection: `shard_number`,
//!   `replication_factor` and `write_consistency_factor` are recorded and reported (in
//!   collection info and collection cluster info), shards and replicas are laid out over
//!   `peers` simulated peers, but every point lives in one shard, so scores, counts and
//!   facets are exact and never depend on the shard layout, whatever was asked.
//! - Errors: messages are not the server's words; codes are (`NotFound`, `AlreadyExists`,
//!   `InvalidArgument`, `Unauthenticated`, `Unavailable` for a simulated outage).
//! - Writes are applied at once (`wait` is ignored), and nothing is optimised in the
//!   background.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use qdrant_client::Payload as GrpcPayload;
use qdrant_client::qdrant as grpc;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant as QdrantService, QdrantServer};
use qdrant_edge as edge;
use tonic::{Request, Response, Status};

/// Version the stand-in reports unless told otherwise: the oldest lore accepts.
pub const DEFAULT_VERSION: &str = "1.16.0";

/// How the stand-in presents itself.
#[derive(Clone)]
pub struct StandInOptions {
    pub version: String,
    /// When set, every call must carry it in the `api-key` header, as on a real server.
    pub api_key: Option<String>,
    /// Serve over TLS with this (certificate PEM, PKCS#8 key PEM); the URL becomes https.
    pub tls: Option<(String, String)>,
    /// Simulated cluster peers (ids 1..=peers; this server is peer 1): a new collection's
    /// shards and replicas are laid out over them as a real cluster would, at most one
    /// replica of a shard per peer.
    pub peers: u64,
    /// A peer joins the cluster each time a collection is deleted: lets a test watch lore
    /// drop an under-replicated collection and create it again once peers have joined,
    /// without timing.
    pub peer_joins_on_delete: bool,
}

impl Default for StandInOptions {
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.to_owned(),
            api_key: None,
            tls: None,
            peers: 1,
            peer_joins_on_delete: false,
        }
    }
}

/// A running stand-in. Dropping it stops the server.
pub struct QdrantStandIn {
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct State {
    dir: PathBuf,
    options: StandInOptions,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Upsert calls still accepted before the stand-in starts failing them (None: never).
    upserts_before_outage: Mutex<Option<usize>>,
    upsert_calls: AtomicUsize,
    /// The last query request, so tests can check what the client sent.
    last_query: Mutex<Option<grpc::QueryPoints>>,
    /// Peers whose replicas are reported `Dead` (a node that is down).
    down_peers: Mutex<std::collections::BTreeSet<u64>>,
    /// Peers in the cluster now (starts at `options.peers`).
    peers: std::sync::atomic::AtomicU64,
    /// Collections created so far, for tests.
    creates: AtomicUsize,
}

struct Collection {
    // Writes and flushes hold it exclusively, reads share it (as in lore's edge store).
    shard: Arc<RwLock<edge::EdgeShard>>,
    metadata: HashMap<String, serde_json::Value>,
    /// Every string value each top-level payload key has held since the stand-in started:
    /// an unfiltered facet reports the ones no point holds any more with a count of 0, as a
    /// real server's keyword index does after deletions (see the header).
    seen: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    layout: Layout,
}

/// A collection's cluster layout: what was asked at creation, and the peers there were.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Layout {
    shard_number: u32,
    replication_factor: u32,
    write_consistency_factor: u32,
    /// Peers at creation: replicas stay where they were placed, as on a real cluster.
    peers: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            peers: 1,
        }
    }
}

impl Layout {
    /// The peers holding replicas of `shard`: at most one per peer, so a replication
    /// factor above the number of peers gives fewer replicas, as on a real cluster.
    fn replicas(&self, shard: u32) -> Vec<u64> {
        let count = u64::from(self.replication_factor).min(self.peers.max(1));
        (0..count)
            .map(|r| (u64::from(shard) + r) % self.peers.max(1) + 1)
            .collect()
    }
}

const META_FILE: &str = "standin-collection.json";
const LAYOUT_FILE: &str = "standin-layout.json";

impl QdrantStandIn {
    /// Starts a stand-in on a free port, serving the collections already under `dir`.
    pub async fn start(dir: &Path, options: StandInOptions) -> Self {
        std::fs::create_dir_all(dir).expect("stand-in dir");
        let mut collections = HashMap::new();
        for entry in std::fs::read_dir(dir).expect("stand-in dir") {
            let path = entry.expect("dir entry").path();
            let meta = path.join(META_FILE);
            if !meta.is_file() {
                continue;
            }
            let metadata: HashMap<String, serde_json::Value> =
                serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
            let shard = edge::EdgeShard::load(&path.join("shard"), None).expect("reload shard");
            let layout = std::fs::read_to_string(path.join(LAYOUT_FILE))
                .map(|text| serde_json::from_str(&text).expect("stand-in layout"))
                .unwrap_or_default();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            collections.insert(
                name,
                Arc::new(Collection {
                    shard: Arc::new(RwLock::new(shard)),
                    metadata,
                    seen: Mutex::default(),
                    layout,
                }),
            );
        }
        let state = Arc::new(State {
            dir: dir.to_owned(),
            options: options.clone(),
            collections: RwLock::new(collections),
            upserts_before_outage: Mutex::new(None),
            upsert_calls: AtomicUsize::new(0),
            last_query: Mutex::new(None),
            down_peers: Mutex::default(),
            peers: std::sync::atomic::AtomicU64::new(options.peers.max(1)),
            creates: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = Service(state.clone());
        let key = options.api_key.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = &options.tls {
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .expect("stand-in TLS configuration");
        }
        let server = builder
            // A real server answers the health check without a key (its auth layer lets
            // `/qdrant.Qdrant/HealthCheck` through) and refuses the first real call.
            .add_service(QdrantServer::new(service.clone()))
            .add_service(CollectionsServer::with_interceptor(
                service.clone(),
                api_key_check(key.clone()),
            ))
            .add_service(PointsServer::with_interceptor(service, api_key_check(key)))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            });
        let task = tokio::spawn(async move {
            server.await.expect("stand-in server");
        });
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        Self {
            url: format!("{scheme}://{addr}"),
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops serving and flushes every shard to disk (a clean server shutdown).
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let collections: Vec<Arc<Collection>> = self
            .state
            .collections
            .read()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for c in collections {
            c.shard.write().unwrap().flush();
        }
    }

    /// After `accepted` more upsert calls succeed, further upserts fail with `Unavailable`,
    /// as when a server goes away in the middle of a migration.
    pub fn fail_upserts_after(&self, accepted: usize) {
        *self.state.upserts_before_outage.lock().unwrap() = Some(accepted);
    }

    /// Ends a simulated outage.
    pub fn heal(&self) {
        *self.state.upserts_before_outage.lock().unwrap() = None;
    }

    /// The last query request received.
    pub fn last_query(&self) -> Option<grpc::QueryPoints> {
        self.state.last_query.lock().unwrap().clone()
    }

    /// Reports `peer`'s replicas as `Dead`, as when that node is down.
    pub fn set_peer_down(&self, peer: u64) {
        self.state.down_peers.lock().unwrap().insert(peer);
    }

    /// Collections created so far (including ones deleted since).
    pub fn creates(&self) -> usize {
        self.state.creates.load(Ordering::SeqCst)
    }

    /// Upsert calls received so far (accepted or not).
    pub fn upsert_calls(&self) -> usize {
        self.state.upsert_calls.load(Ordering::SeqCst)
    }
}

impl Drop for QdrantStandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn api_key_check(
    key: Option<String>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if let Some(key) = &key {
            let sent = request
                .metadata()
                .get("api-key")
                .and_then(|v| v.to_str().ok());
            if sent != Some(key.as_str()) {
                return Err(Status::unauthenticated("Invalid api-key"));
            }
        }
        Ok(request)
    }
}

#[derive(Clone)]
struct Service(Arc<State>);

impl Service {
    fn collection(&self, name: &str) -> Result<Arc<Collection>, Status> {
        self.0
            .collections
            .read()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Collection `{name}` doesn't exist!")))
    }
}

/// Runs `f` on a blocking thread against a collection's shard.
async fn with_shard<T: Send + 'static>(
    collection: &Collection,
    write: bool,
    f: impl FnOnce(&edge::EdgeShard) -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    let shard = collection.shard.clone();
    tokio::task::spawn_blocking(move || {
        if write {
            f(&shard.write().unwrap())
        } else {
            f(&shard.read().unwrap())
        }
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
}

fn engine(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("the lore Qdrant stand-in does not support {what}"))
}

// ---- requests: gRPC -> edge -------------------------------------------------------------

fn json_path(key: &str) -> Result<edge::JsonPath, Status> {
    key.try_into()
        .map_err(|_| Status::invalid_argument(format!("bad payload key {key:?}")))
}

fn point_id(id: Option<grpc::PointId>) -> Result<edge::PointId, Status> {
    match id.and_then(|p| p.point_id_options) {
        Some(grpc::point_id::PointIdOptions::Uuid(s)) => uuid::Uuid::parse_str(&s)
            .map(edge::PointId::Uuid)
            .map_err(|e| Status::invalid_argument(format!("bad UUID {s:?}: {e}"))),
        Some(grpc::point_id::PointIdOptions::Num(n)) => Ok(edge::PointId::NumId(n)),
        None => Err(Status::invalid_argument("point without id")),
    }
}

fn conditions(list: Vec<grpc::Condition>) -> Result<Option<Vec<edge::Condition>>, Status> {
    if list.is_empty() {
        return Ok(None);
    }
    list.into_iter()
        .map(|c| match c.condition_one_of {
            Some(grpc::condition::ConditionOneOf::Field(field)) => {
                let key = json_path(&field.key)?;
                let matcher = match field.r#match.and_then(|m| m.match_value) {
                    Some(grpc::r#match::MatchValue::Keyword(value)) => {
                        edge::Match::new_value(edge::ValueVariants::String(value))
                    }
                    Some(grpc::r#match::MatchValue::Keywords(values)) => edge::Match::new_any(
                        edge::AnyVariants::Strings(values.strings.into_iter().collect()),
                    ),
                    Some(grpc::r#match::MatchValue::Integer(value)) => {
                        edge::Match::new_value(edge::ValueVariants::Integer(value))
                    }
                    Some(grpc::r#match::MatchValue::Integers(values)) => edge::Match::new_any(
                        edge::AnyVariants::Integers(values.integers.into_iter().collect()),
                    ),
                    _ => return Err(unsupported("this field condition")),
                };
                Ok(edge::Condition::Field(edge::FieldCondition::new_match(
                    key, matcher,
                )))
            }
            Some(grpc::condition::ConditionOneOf::Filter(inner)) => {
                Ok(edge::Condition::Filter(filter(inner)?))
            }
            _ => Err(unsupported("this condition")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn filter(f: grpc::Filter) -> Result<edge::Filter, Status> {
    if f.min_should.is_some() {
        return Err(unsupported("min_should"));
    }
    Ok(edge::Filter {
        should: conditions(f.should)?,
        min_should: None,
        must: conditions(f.must)?,
        must_not: conditions(f.must_not)?,
    })
}

fn opt_filter(f: Option<grpc::Filter>) -> Result<Option<edge::Filter>, Status> {
    f.map(filter).transpose()
}

fn with_payload(
    s: Option<grpc::WithPayloadSelector>,
    default: bool,
) -> Result<edge::WithPayloadInterface, Status> {
    match s.and_then(|s| s.selector_options) {
        None => Ok(edge::WithPayloadInterface::Bool(default)),
        Some(grpc::with_payload_selector::SelectorOptions::Enable(b)) => {
            Ok(edge::WithPayloadInterface::Bool(b))
        }
        Some(_) => Err(unsupported("payload selectors")),
    }
}

fn with_vector(s: Option<grpc::WithVectorsSelector>) -> Result<edge::WithVector, Status> {
    match s.and_then(|s| s.selector_options) {
        None => Ok(edge::WithVector::Bool(false)),
        Some(grpc::with_vectors_selector::SelectorOptions::Enable(b)) => {
            Ok(edge::WithVector::Bool(b))
        }
        Some(_) => Err(unsupported("vector selectors")),
    }
}

fn query_vector(input: grpc::VectorInput) -> Result<edge::VectorInternal, Status> {
    match input.variant {
        Some(grpc::vector_input::Variant::Dense(d)) => Ok(edge::VectorInternal::Dense(d.data)),
        Some(grpc::vector_input::Variant::Sparse(s)) => {
            Ok(edge::VectorInternal::Sparse(edge::SparseVector {
                indices: s.indices,
                values: s.values,
            }))
        }
        _ => Err(unsupported("this query vector")),
    }
}

fn scoring(
    query: Option<grpc::Query>,
    using: Option<String>,
) -> Result<Option<edge::ScoringQuery>, Status> {
    let Some(variant) = query.and_then(|q| q.variant) else {
        return Ok(None);
    };
    Ok(Some(match variant {
        grpc::query::Variant::Nearest(input) => {
            edge::ScoringQuery::Vector(edge::QueryEnum::Nearest(edge::NamedQuery {
                query: query_vector(input)?,
                using,
            }))
        }
        grpc::query::Variant::Rrf(rrf) => edge::ScoringQuery::Fusion(edge::Fusion::Rrf {
            // Qdrant's default k.
            k: rrf.k.unwrap_or(2) as usize,
            weights: if rrf.weights.is_empty() {
                None
            } else {
                Some(rrf.weights.into_iter().map(Into::into).collect())
            },
        }),
        grpc::query::Variant::Fusion(f) if f == grpc::Fusion::Rrf as i32 => {
            edge::ScoringQuery::Fusion(edge::Fusion::Rrf {
                k: 2,
                weights: None,
            })
        }
        _ => return Err(unsupported("this query kind")),
    }))
}

fn prefetch(p: grpc::PrefetchQuery) -> Result<edge::Prefetch, Status> {
    if p.lookup_from.is_some() || p.params.is_some() || p.score_threshold.is_some() {
        return Err(unsupported("this prefetch option"));
    }
    Ok(edge::Prefetch {
        prefetches: p
            .prefetch
            .into_iter()
            .map(prefetch)
            .collect::<Result<_, _>>()?,
        query: scoring(p.query, p.using)?,
        limit: p.limit.unwrap_or(10) as usize,
        params: None,
        filter: opt_filter(p.filter)?,
        score_threshold: None,
    })
}

fn point(p: grpc::PointStruct) -> Result<edge::PointStruct, Status> {
    let id = point_id(p.id)?;
    let mut named: Vec<(String, edge::Vector)> = Vec::new();
    match p.vectors.and_then(|v| v.vectors_options) {
        Some(grpc::vectors::VectorsOptions::Vectors(vectors)) => {
            for (name, vector) in vectors.vectors {
                let v: edge::Vector = match vector.vector {
                    Some(grpc::vector::Vector::Dense(d)) => d.data.into(),
                    Some(grpc::vector::Vector::Sparse(s)) => edge::SparseVector {
                        indices: s.indices,
                        values: s.values,
                    }
                    .into(),
                    _ => return Err(unsupported("this vector encoding")),
                };
                named.push((name, v));
            }
        }
        _ => return Err(unsupported("unnamed vectors")),
    }
    let payload = serde_json::Value::from(GrpcPayload::from(p.payload));
    Ok(edge::PointStruct::new(
        id,
        edge::Vectors::new_named(named),
        payload,
    ))
}

// ---- responses: edge -> gRPC ------------------------------------------------------------

fn grpc_id(id: edge::PointId) -> grpc::PointId {
    grpc::PointId {
        point_id_options: Some(match id {
            edge::PointId::Uuid(u) => grpc::point_id::PointIdOptions::Uuid(u.to_string()),
            edge::PointId::NumId(n) => grpc::point_id::PointIdOptions::Num(n),
        }),
    }
}

fn grpc_payload(payload: Option<edge::Payload>) -> HashMap<String, grpc::Value> {
    match payload {
        Some(p) => GrpcPayload::from(p.0).into(),
        None => HashMap::new(),
    }
}

fn grpc_vectors(vector: Option<edge::VectorStructInternal>) -> Option<grpc::VectorsOutput> {
    let edge::VectorStructInternal::Named(named) = vector? else {
        return None;
    };
    let vectors = named
        .into_iter()
        .filter_map(|(name, v)| {
            let output = match v {
                edge::VectorInternal::Dense(data) => {
                    grpc::vector_output::Vector::Dense(grpc::DenseVector { data })
                }
                edge::VectorInternal::Sparse(s) => {
                    grpc::vector_output::Vector::Sparse(grpc::SparseVector {
                        values: s.values,
                        indices: s.indices,
                    })
                }
                _ => return None,
            };
            Some((
                name,
                grpc::VectorOutput {
                    vector: Some(output),
                    ..Default::default()
                },
            ))
        })
        .collect();
    Some(grpc::VectorsOutput {
        vectors_options: Some(grpc::vectors_output::VectorsOptions::Vectors(
            grpc::NamedVectorsOutput { vectors },
        )),
    })
}

fn retrieved(r: edge::Record) -> grpc::RetrievedPoint {
    grpc::RetrievedPoint {
        id: Some(grpc_id(r.id)),
        payload: grpc_payload(r.payload),
        vectors: grpc_vectors(r.vector),
        ..Default::default()
    }
}

fn updated() -> Response<grpc::PointsOperationResponse> {
    Response::new(grpc::PointsOperationResponse {
        result: Some(grpc::UpdateResult {
            operation_id: Some(0),
            status: grpc::UpdateStatus::Completed as i32,
        }),
        ..Default::default()
    })
}

fn edge_distance(d: i32) -> Result<edge::Distance, Status> {
    match grpc::Distance::try_from(d) {
        Ok(grpc::Distance::Cosine) => Ok(edge::Distance::Cosine),
        Ok(grpc::Distance::Dot) => Ok(edge::Distance::Dot),
        Ok(grpc::Distance::Euclid) => Ok(edge::Distance::Euclid),
        Ok(grpc::Distance::Manhattan) => Ok(edge::Distance::Manhattan),
        _ => Err(Status::invalid_argument("unknown distance")),
    }
}

fn grpc_distance(d: edge::Distance) -> i32 {
    (match d {
        edge::Distance::Cosine => grpc::Distance::Cosine,
        edge::Distance::Dot => grpc::Distance::Dot,
        edge::Distance::Euclid => grpc::Distance::Euclid,
        edge::Distance::Manhattan => grpc::Distance::Manhattan,
    }) as i32
}

fn collection_info(c: &Collection) -> grpc::CollectionInfo {
    let shard = c.shard.read().unwrap();
    let config = shard.config().clone();
    let info = shard.info();
    let vectors = config
        .vectors
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                grpc::VectorParams {
                    size: p.size as u64,
                    distance: grpc_distance(p.distance),
                    ..Default::default()
                },
            )
        })
        .collect();
    let sparse = config
        .sparse_vectors
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                grpc::SparseVectorParams {
                    index: None,
                    modifier: p.modifier.map(|m| match m {
                        edge::Modifier::Idf => grpc::Modifier::Idf as i32,
                        _ => grpc::Modifier::None as i32,
                    }),
                },
            )
        })
        .collect();
    let payload_schema = info
        .payload_schema
        .iter()
        .map(|(key, index)| {
            let data_type = match index.data_type {
                edge::PayloadSchemaType::Keyword => grpc::PayloadSchemaType::Keyword,
                edge::PayloadSchemaType::Integer => grpc::PayloadSchemaType::Integer,
                _ => grpc::PayloadSchemaType::UnknownType,
            };
            let params = match &index.params {
                Some(edge::PayloadSchemaParams::Keyword(k)) => Some(grpc::PayloadIndexParams {
                    index_params: Some(
                        grpc::payload_index_params::IndexParams::KeywordIndexParams(
                            grpc::KeywordIndexParams {
                                is_tenant: k.is_tenant,
                                ..Default::default()
                            },
                        ),
                    ),
                }),
                Some(edge::PayloadSchemaParams::Integer(i)) => Some(grpc::PayloadIndexParams {
                    index_params: Some(
                        grpc::payload_index_params::IndexParams::IntegerIndexParams(
                            grpc::IntegerIndexParams {
                                lookup: i.lookup,
                                range: i.range,
                                enable_hnsw: i.enable_hnsw,
                                ..Default::default()
                            },
                        ),
                    ),
                }),
                _ => None,
            };
            (
                key.to_string(),
                grpc::PayloadSchemaInfo {
                    data_type: data_type as i32,
                    params,
                    points: Some(index.points as u64),
                },
            )
        })
        .collect();
    grpc::CollectionInfo {
        status: grpc::CollectionStatus::Green as i32,
        segments_count: info.segments_count as u64,
        config: Some(grpc::CollectionConfig {
            params: Some(grpc::CollectionParams {
                shard_number: c.layout.shard_number,
                replication_factor: Some(c.layout.replication_factor),
                write_consistency_factor: Some(c.layout.write_consistency_factor),
                vectors_config: Some(grpc::VectorsConfig {
                    config: Some(grpc::vectors_config::Config::ParamsMap(
                        grpc::VectorParamsMap { map: vectors },
                    )),
                }),
                sparse_vectors_config: Some(grpc::SparseVectorConfig { map: sparse }),
                ..Default::default()
            }),
            metadata: c
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), grpc::Value::from(v.clone())))
                .collect(),
            ..Default::default()
        }),
        payload_schema,
        points_count: Some(info.points_count as u64),
        indexed_vectors_count: Some(info.indexed_vectors_count as u64),
        ..Default::default()
    }
}

// ---- services ---------------------------------------------------------------------------

#[tonic::async_trait]
impl QdrantService for Service {
    async fn health_check(
        &self,
        _request: Request<grpc::HealthCheckRequest>,
    ) -> Result<Response<grpc::HealthCheckReply>, Status> {
        Ok(Response::new(grpc::HealthCheckReply {
            title: "qdrant - vector search engine (lore test stand-in)".into(),
            version: self.0.options.version.clone(),
            commit: None,
        }))
    }
}

/// Implements a service trait: the given methods as written, every other method as
/// `unimplemented` (so the trait stays complete without pretending to support more).
macro_rules! service {
    (impl $trait:ident { $($methods:tt)* } unsupported { $($skip:ident: $rq:ty => $rs:ty;)* }) => {
        #[tonic::async_trait]
        impl $trait for Service {
            $($methods)*
            $(
                async fn $skip(&self, _request: Request<$rq>) -> Result<Response<$rs>, Status> {
                    Err(unsupported(stringify!($skip)))
                }
            )*
        }
    };
}

service! {
    impl Collections {
        async fn get(
            &self,
            request: Request<grpc::GetCollectionInfoRequest>,
        ) -> Result<Response<grpc::GetCollectionInfoResponse>, Status> {
            let collection = self.collection(&request.into_inner().collection_name)?;
            let info = tokio::task::spawn_blocking(move || collection_info(&collection))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(grpc::GetCollectionInfoResponse {
                result: Some(info),
                time: 0.0,
            }))
        }

        async fn collection_cluster_info(
            &self,
            request: Request<grpc::CollectionClusterInfoRequest>,
        ) -> Result<Response<grpc::CollectionClusterInfoResponse>, Status> {
            let collection = self.collection(&request.into_inner().collection_name)?;
            let down = self.0.down_peers.lock().unwrap().clone();
            let state = |peer: u64| {
                if down.contains(&peer) {
                    grpc::ReplicaState::Dead as i32
                } else {
                    grpc::ReplicaState::Active as i32
                }
            };
            let (mut local_shards, mut remote_shards) = (Vec::new(), Vec::new());
            for shard_id in 0..collection.layout.shard_number {
                for peer in collection.layout.replicas(shard_id) {
                    if peer == 1 {
                        // Every point lives in the one edge shard (see the header).
                        local_shards.push(grpc::LocalShardInfo {
                            shard_id,
                            points_count: 0,
                            state: state(peer),
                            shard_key: None,
                        });
                    } else {
                        remote_shards.push(grpc::RemoteShardInfo {
                            shard_id,
                            peer_id: peer,
                            state: state(peer),
                            shard_key: None,
                        });
                    }
                }
            }
            Ok(Response::new(grpc::CollectionClusterInfoResponse {
                peer_id: 1,
                shard_count: u64::from(collection.layout.shard_number),
                local_shards,
                remote_shards,
                ..Default::default()
            }))
        }

        async fn list(
            &self,
            _request: Request<grpc::ListCollectionsRequest>,
        ) -> Result<Response<grpc::ListCollectionsResponse>, Status> {
            let mut names: Vec<String> =
                self.0.collections.read().unwrap().keys().cloned().collect();
            names.sort();
            Ok(Response::new(grpc::ListCollectionsResponse {
                collections: names
                    .into_iter()
                    .map(|name| grpc::CollectionDescription { name })
                    .collect(),
                time: 0.0,
            }))
        }

        async fn collection_exists(
            &self,
            request: Request<grpc::CollectionExistsRequest>,
        ) -> Result<Response<grpc::CollectionExistsResponse>, Status> {
            let name = request.into_inner().collection_name;
            let exists = self.0.collections.read().unwrap().contains_key(&name);
            Ok(Response::new(grpc::CollectionExistsResponse {
                result: Some(grpc::CollectionExists { exists }),
                time: 0.0,
            }))
        }

        async fn create(
            &self,
            request: Request<grpc::CreateCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let request = request.into_inner();
            let name = request.collection_name.clone();
            if name.is_empty() || name.contains(['/', '\\', '.']) {
                return Err(Status::invalid_argument(format!("bad collection name {name:?}")));
            }
            let mut config = edge::EdgeConfig::default();
            match request.vectors_config.and_then(|v| v.config) {
                Some(grpc::vectors_config::Config::ParamsMap(map)) => {
                    for (vector, p) in map.map {
                        config.vectors.insert(
                            vector,
                            edge::EdgeVectorParams {
                                size: p.size as usize,
                                distance: edge_distance(p.distance)?,
                                on_disk: None,
                                multivector_config: None,
                                datatype: None,
                                quantization_config: None,
                                hnsw_config: None,
                            },
                        );
                    }
                }
                None => {}
                Some(_) => return Err(unsupported("unnamed vectors")),
            }
            for (vector, p) in request.sparse_vectors_config.map(|s| s.map).unwrap_or_default() {
                let modifier = match p.modifier.map(grpc::Modifier::try_from) {
                    Some(Ok(grpc::Modifier::Idf)) => Some(edge::Modifier::Idf),
                    _ => None,
                };
                config.sparse_vectors.insert(
                    vector,
                    edge::EdgeSparseVectorParams {
                        modifier,
                        ..Default::default()
                    },
                );
            }
            let metadata: HashMap<String, serde_json::Value> = request
                .metadata
                .into_iter()
                .map(|(k, v)| (k, serde_json::to_value(&v).expect("value serialises")))
                .collect();
            let peers = self.0.peers.load(Ordering::SeqCst);
            let layout = Layout {
                shard_number: request.shard_number.unwrap_or(peers as u32).max(1),
                replication_factor: request.replication_factor.unwrap_or(1).max(1),
                write_consistency_factor: request.write_consistency_factor.unwrap_or(1).max(1),
                peers,
            };
            let mut collections = self.0.collections.write().unwrap();
            if collections.contains_key(&name) {
                return Err(Status::already_exists(format!(
                    "Collection `{name}` already exists!"
                )));
            }
            let dir = self.0.dir.join(&name);
            let shard_dir = dir.join("shard");
            std::fs::create_dir_all(&shard_dir).map_err(|e| Status::internal(e.to_string()))?;
            let shard = edge::EdgeShard::new(&shard_dir, config).map_err(engine)?;
            std::fs::write(
                dir.join(META_FILE),
                serde_json::to_string(&metadata).expect("metadata serialises"),
            )
            .map_err(|e| Status::internal(e.to_string()))?;
            std::fs::write(
                dir.join(LAYOUT_FILE),
                serde_json::to_string(&layout).expect("layout serialises"),
            )
            .map_err(|e| Status::internal(e.to_string()))?;
            collections.insert(
                name,
                Arc::new(Collection {
                    shard: Arc::new(RwLock::new(shard)),
                    metadata,
                    seen: Mutex::default(),
                    layout,
                }),
            );
            self.0.creates.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(grpc::CollectionOperationResponse {
                result: true,
                time: 0.0,
            }))
        }

        async fn delete(
            &self,
            request: Request<grpc::DeleteCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let name = request.into_inner().collection_name;
            let removed = self.0.collections.write().unwrap().remove(&name);
            if removed.is_some() {
                drop(removed);
                let _ = std::fs::remove_dir_all(self.0.dir.join(&name));
                if self.0.options.peer_joins_on_delete {
                    self.0.peers.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Response::new(grpc::CollectionOperationResponse {
                result: true,
                time: 0.0,
            }))
        }
    }
    unsupported {
        update: grpc::UpdateCollection => grpc::CollectionOperationResponse;
        update_aliases: grpc::ChangeAliases => grpc::CollectionOperationResponse;
        list_collection_aliases: grpc::ListCollectionAliasesRequest => grpc::ListAliasesResponse;
        list_aliases: grpc::ListAliasesRequest => grpc::ListAliasesResponse;
        update_collection_cluster_setup: grpc::UpdateCollectionClusterSetupRequest => grpc::UpdateCollectionClusterSetupResponse;
        create_shard_key: grpc::CreateShardKeyRequest => grpc::CreateShardKeyResponse;
        delete_shard_key: grpc::DeleteShardKeyRequest => grpc::DeleteShardKeyResponse;
        list_shard_keys: grpc::ListShardKeysRequest => grpc::ListShardKeysResponse;
    }
}

service! {
    impl Points {
        async fn upsert(
            &self,
            request: Request<grpc::UpsertPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            self.0.upsert_calls.fetch_add(1, Ordering::SeqCst);
            {
                let mut left = self.0.upserts_before_outage.lock().unwrap();
                match left.as_mut() {
                    Some(0) => return Err(Status::unavailable("stand-in: simulated outage")),
                    Some(n) => *n -= 1,
                    None => {}
                }
            }
            let request = request.into_inner();
            if request.update_filter.is_some() || request.update_mode.is_some() {
                return Err(unsupported("conditional upserts"));
            }
            let collection = self.collection(&request.collection_name)?;
            {
                let mut seen = collection.seen.lock().unwrap();
                for p in &request.points {
                    for (key, value) in &p.payload {
                        if let Some(grpc::value::Kind::StringValue(s)) = &value.kind {
                            seen.entry(key.clone()).or_default().insert(s.clone());
                        }
                    }
                }
            }
            let points = request
                .points
                .into_iter()
                .map(|p| point(p).map(Into::into))
                .collect::<Result<Vec<_>, Status>>()?;
            with_shard(&collection, true, move |shard| {
                shard
                    .update(edge::UpdateOperation::PointOperation(
                        edge::PointOperations::UpsertPoints(
                            edge::PointInsertOperations::PointsList(points),
                        ),
                    ))
                    .map_err(engine)
            })
            .await?;
            Ok(updated())
        }

        async fn delete(
            &self,
            request: Request<grpc::DeletePoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let request = request.into_inner();
            let collection = self.collection(&request.collection_name)?;
            let operation = match request.points.and_then(|p| p.points_selector_one_of) {
                Some(grpc::points_selector::PointsSelectorOneOf::Filter(f)) => {
                    edge::PointOperations::DeletePointsByFilter(filter(f)?)
                }
                Some(grpc::points_selector::PointsSelectorOneOf::Points(list)) => {
                    edge::PointOperations::DeletePoints {
                        ids: list
                            .ids
                            .into_iter()
                            .map(|id| point_id(Some(id)))
                            .collect::<Result<_, _>>()?,
                    }
                }
                None => return Err(Status::invalid_argument("no points selected")),
            };
            with_shard(&collection, true, move |shard| {
                shard
                    .update(edge::UpdateOperation::PointOperation(operation))
                    .map_err(engine)
            })
            .await?;
            Ok(updated())
        }

        async fn get(
            &self,
            request: Request<grpc::GetPoints>,
        ) -> Result<Response<grpc::GetResponse>, Status> {
            let request = request.into_inner();
            let collection = self.collection(&request.collection_name)?;
            let ids = request
                .ids
                .into_iter()
                .map(|id| point_id(Some(id)))
                .collect::<Result<Vec<_>, _>>()?;
            let payload = with_payload(request.with_payload, false)?;
            let vector = with_vector(request.with_vectors)?;
            let records = with_shard(&collection, false, move |shard| {
                shard
                    .retrieve(&ids, Some(payload), Some(vector))
                    .map_err(engine)
            })
            .await?;
            Ok(Response::new(grpc::GetResponse {
                result: records.into_iter().map(retrieved).collect(),
                ..Default::default()
            }))
        }

        async fn create_field_index(
            &self,
            request: Request<grpc::CreateFieldIndexCollection>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let request = request.into_inner();
            let collection = self.collection(&request.collection_name)?;
            let params = request.field_index_params.and_then(|p| p.index_params);
            let mismatch = || Status::invalid_argument("index params do not match the field type");
            let schema = match request.field_type.map(grpc::FieldType::try_from) {
                Some(Ok(grpc::FieldType::Keyword)) => {
                    let is_tenant = match params {
                        Some(grpc::payload_index_params::IndexParams::KeywordIndexParams(k)) => {
                            k.is_tenant
                        }
                        None => None,
                        Some(_) => return Err(mismatch()),
                    };
                    edge::PayloadSchemaParams::Keyword(edge::KeywordIndexParams {
                        r#type: Default::default(),
                        is_tenant,
                        on_disk: None,
                        enable_hnsw: None,
                    })
                }
                Some(Ok(grpc::FieldType::Integer)) => {
                    let (lookup, range, enable_hnsw) = match params {
                        Some(grpc::payload_index_params::IndexParams::IntegerIndexParams(i)) => {
                            (i.lookup, i.range, i.enable_hnsw)
                        }
                        None => (None, None, None),
                        Some(_) => return Err(mismatch()),
                    };
                    edge::PayloadSchemaParams::Integer(edge::IntegerIndexParams {
                        lookup,
                        range,
                        enable_hnsw,
                        ..Default::default()
                    })
                }
                _ => return Err(unsupported("indexes other than keyword and integer")),
            };
            let field = json_path(&request.field_name)?;
            let schema = edge::PayloadFieldSchema::FieldParams(schema);
            with_shard(&collection, true, move |shard| {
                shard
                    .update(edge::UpdateOperation::FieldIndexOperation(
                        edge::FieldIndexOperations::CreateIndex(edge::CreateIndex {
                            field_name: field,
                            field_schema: Some(schema),
                        }),
                    ))
                    .map_err(engine)
            })
            .await?;
            Ok(updated())
        }

        async fn scroll(
            &self,
            request: Request<grpc::ScrollPoints>,
        ) -> Result<Response<grpc::ScrollResponse>, Status> {
            let request = request.into_inner();
            if request.order_by.is_some() {
                return Err(unsupported("order_by"));
            }
            let collection = self.collection(&request.collection_name)?;
            let scroll = edge::ScrollRequest {
                offset: request.offset.map(|id| point_id(Some(id))).transpose()?,
                limit: Some(request.limit.unwrap_or(10) as usize),
                filter: opt_filter(request.filter)?,
                with_payload: Some(with_payload(request.with_payload, true)?),
                with_vector: with_vector(request.with_vectors)?,
                order_by: None,
            };
            let (records, next) =
                with_shard(&collection, false, move |shard| shard.scroll(scroll).map_err(engine))
                    .await?;
            Ok(Response::new(grpc::ScrollResponse {
                next_page_offset: next.map(grpc_id),
                result: records.into_iter().map(retrieved).collect(),
                ..Default::default()
            }))
        }

        async fn count(
            &self,
            request: Request<grpc::CountPoints>,
        ) -> Result<Response<grpc::CountResponse>, Status> {
            let request = request.into_inner();
            let collection = self.collection(&request.collection_name)?;
            let count = edge::CountRequest {
                filter: opt_filter(request.filter)?,
                exact: request.exact.unwrap_or(true),
            };
            let n = with_shard(&collection, false, move |shard| shard.count(count).map_err(engine))
                .await?;
            Ok(Response::new(grpc::CountResponse {
                result: Some(grpc::CountResult { count: n as u64 }),
                ..Default::default()
            }))
        }

        async fn query(
            &self,
            request: Request<grpc::QueryPoints>,
        ) -> Result<Response<grpc::QueryResponse>, Status> {
            let request = request.into_inner();
            *self.0.last_query.lock().unwrap() = Some(request.clone());
            if request.lookup_from.is_some() || request.params.is_some() {
                return Err(unsupported("this query option"));
            }
            let collection = self.collection(&request.collection_name)?;
            let query = edge::QueryRequest {
                prefetches: request
                    .prefetch
                    .into_iter()
                    .map(prefetch)
                    .collect::<Result<_, _>>()?,
                query: scoring(request.query, request.using)?,
                filter: opt_filter(request.filter)?,
                score_threshold: request.score_threshold.map(Into::into),
                limit: request.limit.unwrap_or(10) as usize,
                offset: request.offset.unwrap_or(0) as usize,
                params: None,
                with_vector: with_vector(request.with_vectors)?,
                with_payload: with_payload(request.with_payload, false)?,
            };
            let points =
                with_shard(&collection, false, move |shard| shard.query(query).map_err(engine))
                    .await?;
            Ok(Response::new(grpc::QueryResponse {
                result: points
                    .into_iter()
                    .map(|p| grpc::ScoredPoint {
                        id: Some(grpc_id(p.id)),
                        payload: grpc_payload(p.payload),
                        score: p.score,
                        version: p.version,
                        vectors: grpc_vectors(p.vector),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }))
        }

        async fn facet(
            &self,
            request: Request<grpc::FacetCounts>,
        ) -> Result<Response<grpc::FacetResponse>, Status> {
            let request = request.into_inner();
            let collection = self.collection(&request.collection_name)?;
            let unfiltered = request.filter.is_none();
            let facet = edge::FacetRequest {
                key: json_path(&request.key)?,
                limit: request.limit.unwrap_or(10) as usize,
                filter: opt_filter(request.filter)?,
                exact: request.exact.unwrap_or(false),
            };
            let limit = facet.limit;
            let response =
                with_shard(&collection, false, move |shard| shard.facet(facet).map_err(engine))
                    .await?;
            let mut hits = response.hits;
            if unfiltered {
                let seen = collection.seen.lock().unwrap();
                for value in seen.get(&request.key).into_iter().flatten() {
                    let held = hits.iter().any(|h| {
                        matches!(&h.value, edge::FacetValue::Keyword(s) if s == value)
                    });
                    if !held && hits.len() < limit {
                        hits.push(edge::FacetValueHit {
                            value: edge::FacetValue::Keyword(value.clone()),
                            count: 0,
                        });
                    }
                }
            }
            Ok(Response::new(grpc::FacetResponse {
                hits: hits
                    .into_iter()
                    .filter_map(|hit| {
                        let variant = match hit.value {
                            edge::FacetValue::Keyword(s) => {
                                grpc::facet_value::Variant::StringValue(s)
                            }
                            edge::FacetValue::Int(i) => grpc::facet_value::Variant::IntegerValue(i),
                            edge::FacetValue::Bool(b) => grpc::facet_value::Variant::BoolValue(b),
                            _ => return None,
                        };
                        Some(grpc::FacetHit {
                            value: Some(grpc::FacetValue {
                                variant: Some(variant),
                            }),
                            count: hit.count as u64,
                        })
                    })
                    .collect(),
                ..Default::default()
            }))
        }
    }
    unsupported {
        update_vectors: grpc::UpdatePointVectors => grpc::PointsOperationResponse;
        delete_vectors: grpc::DeletePointVectors => grpc::PointsOperationResponse;
        set_payload: grpc::SetPayloadPoints => grpc::PointsOperationResponse;
        overwrite_payload: grpc::SetPayloadPoints => grpc::PointsOperationResponse;
        delete_payload: grpc::DeletePayloadPoints => grpc::PointsOperationResponse;
        clear_payload: grpc::ClearPayloadPoints => grpc::PointsOperationResponse;
        delete_field_index: grpc::DeleteFieldIndexCollection => grpc::PointsOperationResponse;
        create_vector_name: grpc::CreateVectorNameRequest => grpc::PointsOperationResponse;
        delete_vector_name: grpc::DeleteVectorNameRequest => grpc::PointsOperationResponse;
        search: grpc::SearchPoints => grpc::SearchResponse;
        search_batch: grpc::SearchBatchPoints => grpc::SearchBatchResponse;
        search_groups: grpc::SearchPointGroups => grpc::SearchGroupsResponse;
        recommend: grpc::RecommendPoints => grpc::RecommendResponse;
        recommend_batch: grpc::RecommendBatchPoints => grpc::RecommendBatchResponse;
        recommend_groups: grpc::RecommendPointGroups => grpc::RecommendGroupsResponse;
        discover: grpc::DiscoverPoints => grpc::DiscoverResponse;
        discover_batch: grpc::DiscoverBatchPoints => grpc::DiscoverBatchResponse;
        update_batch: grpc::UpdateBatchPoints => grpc::UpdateBatchResponse;
        query_batch: grpc::QueryBatchPoints => grpc::QueryBatchResponse;
        query_groups: grpc::QueryPointGroups => grpc::QueryGroupsResponse;
        search_matrix_pairs: grpc::SearchMatrixPoints => grpc::SearchMatrixPairsResponse;
        search_matrix_offsets: grpc::SearchMatrixPoints => grpc::SearchMatrixOffsetsResponse;
    }
}
