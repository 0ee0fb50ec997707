//! One conformance suite for every `KnowledgeStore` backend, written once (each case is a
//! generic async fn over a harness) and run against:
//! - the embedded store (always);
//! - lore's Qdrant server backend talking gRPC to the local stand-in
//!   (tests/support/qdrant_standin.rs: qdrant-client's generated services on a real
//!   qdrant-edge shard), always;
//! - a real Qdrant server when `LORE_TEST_QDRANT_URL` is set (API key from `QDRANT_API_KEY`);
//!   when it is unset, one line on stderr says so.
//!
//! Then the server backend's own checks (indexes, the hybrid request's filters, unreachable
//! server, schema mismatch, old version, API key) and `lore migrate` round trips.

#[path = "support/qdrant_standin.rs"]
mod qdrant_standin;
#[path = "support/qdrant_tls.rs"]
mod qdrant_tls;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use lore_core::embed::bm25::Bm25Encoder;
use lore_core::progress::Quiet;
use lore_core::retrieve::{Retriever, SearchMode};
use lore_core::store::embedded::EmbeddedStore;
use lore_core::store::migrate::{MigrateError, MigrateOptions, migrate};
use lore_core::store::qdrant::{CollectionLayout, QdrantStore, ServerConfig};
use lore_core::store::{
    Chunk, Hit, KnowledgeStore, SearchRequest, SourceSummary, SparseVector, StoreError,
    StoreErrorKind, StoreQuery, StoredChunk, TenantScope, chunk_point_id, tenant_terms,
};
use qdrant_client::qdrant as grpc;
use qdrant_standin::{QdrantStandIn, StandInOptions};

const DIM: usize = 4;
const EMBEDDER: &str = "conformance-dense-v1";
const RRF_K: u32 = 60;

fn dense_id() -> Option<(String, usize)> {
    Some((EMBEDDER.to_owned(), DIM))
}

static BM25: LazyLock<Bm25Encoder> = LazyLock::new(Bm25Encoder::new);

// ---- harness: one backend under test, which can be closed and opened again ----------------

enum Kind {
    Embedded,
    StandIn(Option<QdrantStandIn>),
    RealServer,
}

struct Harness {
    kind: Kind,
    dir: tempfile::TempDir,
    url: String,
    collection: String,
    api_key: Option<String>,
}

impl Harness {
    async fn embedded() -> Self {
        Self {
            kind: Kind::Embedded,
            dir: tempfile::tempdir().unwrap(),
            url: String::new(),
            collection: String::new(),
            api_key: None,
        }
    }

    async fn standin() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server =
            QdrantStandIn::start(&dir.path().join("server"), StandInOptions::default()).await;
        Self {
            url: server.url.clone(),
            kind: Kind::StandIn(Some(server)),
            dir,
            collection: "lore".into(),
            api_key: None,
        }
    }

    fn real(url: &str, case: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self {
            kind: Kind::RealServer,
            dir: tempfile::tempdir().unwrap(),
            url: url.to_owned(),
            collection: format!("lore_conformance_{case}_{}_{nanos}", std::process::id()),
            api_key: std::env::var("QDRANT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        }
    }

    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            url: self.url.clone(),
            collection: self.collection.clone(),
            api_key: self.api_key.clone(),
            timeout: Duration::from_secs(60),
            layout: Default::default(),
        }
    }

    async fn try_open(
        &self,
        dense: Option<(String, usize)>,
    ) -> Result<Arc<dyn KnowledgeStore>, StoreError> {
        match self.kind {
            Kind::Embedded => {
                let dir = self.dir.path().join("knowledge");
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, dense))
                    .await
                    .unwrap()?;
                Ok(Arc::new(store))
            }
            Kind::StandIn(_) | Kind::RealServer => Ok(Arc::new(
                QdrantStore::connect(self.server_config(), dense).await?,
            )),
        }
    }

    async fn open(&self) -> Arc<dyn KnowledgeStore> {
        self.try_open(dense_id()).await.expect("opening the store")
    }

    /// A process restart: the embedded store is reopened from disk; the stand-in server is
    /// stopped (flushing its shards) and started again on the same directory.
    async fn restart(&mut self) {
        if let Kind::StandIn(server) = &mut self.kind {
            server.take().expect("running").stop().await;
            let again =
                QdrantStandIn::start(&self.dir.path().join("server"), StandInOptions::default())
                    .await;
            self.url = again.url.clone();
            *server = Some(again);
        }
    }

    async fn cleanup(self) {
        if let Kind::RealServer = self.kind {
            let client = qdrant_client::Qdrant::from_url(&self.url)
                .api_key(self.api_key.clone())
                .skip_compatibility_check()
                .build()
                .unwrap();
            let _ = client.delete_collection(self.collection.clone()).await;
        }
    }
}

// ---- fixtures ---------------------------------------------------------------------------

fn stored(tenant: &str, source: &str, index: u32, text: &str, dense: [f32; DIM]) -> StoredChunk {
    StoredChunk {
        chunk: Chunk {
            tenant: tenant.into(),
            source: source.into(),
            index,
            text: text.into(),
            page: (source == "holiday.md").then_some(2),
            heading: Some(format!("{source} heading")),
            timestamp: None,
            title: None,
            start: 0,
            end: text.len(),
            source_hash: format!("hash-{source}"),
        },
        dense: Some(dense.to_vec()),
        sparse: BM25.document(text),
    }
}

/// Two tenants and the global knowledge base; globex's deploy chunk has the same dense
/// vector as acme's, so only the tenant filter keeps it out of acme's results.
fn corpus() -> Vec<StoredChunk> {
    vec![
        stored(
            "acme",
            "deploy.md",
            0,
            "Deploy the billing service with docker compose on the staging host.",
            [1.0, 0.0, 0.0, 0.0],
        ),
        stored(
            "acme",
            "deploy.md",
            1,
            "Rollback: redeploy the previous docker image if the billing deploy fails.",
            [0.8, 0.2, 0.0, 0.0],
        ),
        stored(
            "acme",
            "holiday.md",
            0,
            "Holiday policy: every employee gets twenty days of paid leave.",
            [0.0, 1.0, 0.0, 0.0],
        ),
        stored(
            "acme",
            "oncall.md",
            0,
            "The on-call rotation changes every Monday; the pager goes to the primary.",
            [0.0, 0.0, 1.0, 0.0],
        ),
        stored(
            "globex",
            "deploy.md",
            0,
            "Globex secret: deploy the billing service only to the kubernetes cluster.",
            [1.0, 0.0, 0.0, 0.0],
        ),
        stored(
            "global",
            "handbook.md",
            0,
            // "holiday" twice: with per-tenant BM25 statistics a single match here would
            // tie with oncall.md's "pager" exactly, and engines order ties arbitrarily.
            "Handbook: the holiday calendar and holiday leave rules apply to every team.",
            [0.0, 0.9, 0.0, 0.1],
        ),
    ]
}

async fn loaded(h: &Harness) -> Arc<dyn KnowledgeStore> {
    let store = h.open().await;
    store.upsert(corpus()).await.unwrap();
    store.commit().await.unwrap();
    store
}

fn request(scope: TenantScope, query: StoreQuery, limit: usize) -> SearchRequest {
    SearchRequest {
        scope,
        query,
        limit,
        candidates: 10,
        with_vectors: true,
    }
}

fn hybrid(dense: [f32; DIM], text: &str) -> StoreQuery {
    StoreQuery::Hybrid {
        dense: dense.to_vec(),
        sparse: BM25.query(text),
        rrf_k: RRF_K,
    }
}

fn sources_of(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.chunk.source.clone()).collect()
}

fn summary(source: &str, chunks: usize) -> SourceSummary {
    SourceSummary {
        source: source.into(),
        chunks,
    }
}

// ---- the cases, written once ------------------------------------------------------------

async fn upsert_and_read_back(h: &mut Harness) {
    let store = loaded(h).await;
    let acme = TenantScope::only("acme");
    assert_eq!(
        store.sources(&acme).await.unwrap(),
        vec![
            summary("deploy.md", 2),
            summary("holiday.md", 1),
            summary("oncall.md", 1)
        ]
    );
    assert_eq!(
        store.sources(&TenantScope::only("globex")).await.unwrap(),
        vec![summary("deploy.md", 1)]
    );
    assert_eq!(
        store
            .source_hash("acme", "deploy.md")
            .await
            .unwrap()
            .as_deref(),
        Some("hash-deploy.md")
    );
    assert_eq!(store.source_hash("acme", "missing.md").await.unwrap(), None);
    assert_eq!(store.stats().await.unwrap().chunks, 6);
    assert_eq!(
        store.tenant_counts().await.unwrap(),
        BTreeMap::from([
            ("acme".into(), 4),
            ("global".into(), 1),
            ("globex".into(), 1)
        ])
    );
    // A chunk whose dense vector has the wrong size is refused, naming it; nothing is lost.
    let mut bad = stored("acme", "bad.md", 0, "wrong size", [1.0, 0.0, 0.0, 0.0]);
    bad.dense = Some(vec![1.0; DIM + 1]);
    let err = store.upsert(vec![bad]).await.unwrap_err().to_string();
    assert!(
        err.contains("bad.md") && err.contains("dimensions"),
        "{err}"
    );
    assert_eq!(store.stats().await.unwrap().chunks, 6);
    // Every field of a chunk comes back as stored.
    let hits = store
        .search(request(
            acme,
            StoreQuery::Dense(vec![0.0, 1.0, 0.0, 0.0]),
            1,
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].chunk, corpus()[2].chunk);
}

async fn upsert_is_idempotent(h: &mut Harness) {
    let store = loaded(h).await;
    store.upsert(corpus()).await.unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.stats().await.unwrap().chunks, 6);
    // Same tenant, source and position: the new text replaces the old one.
    let revised = stored(
        "acme",
        "holiday.md",
        0,
        "Holiday policy revised: thirty days of paid leave.",
        [0.0, 1.0, 0.0, 0.0],
    );
    store.upsert(vec![revised]).await.unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.stats().await.unwrap().chunks, 6);
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Sparse(BM25.query("thirty")),
            5,
        ))
        .await
        .unwrap();
    assert_eq!(sources_of(&hits), ["holiday.md"]);
    assert!(hits[0].chunk.text.contains("thirty"));
    let old = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Sparse(BM25.query("twenty")),
            5,
        ))
        .await
        .unwrap();
    assert!(old.is_empty(), "{old:?}");
}

async fn delete_by_source(h: &mut Harness) {
    let store = loaded(h).await;
    assert_eq!(store.delete_source("acme", "deploy.md").await.unwrap(), 2);
    store.commit().await.unwrap();
    assert_eq!(
        store.sources(&TenantScope::only("acme")).await.unwrap(),
        vec![summary("holiday.md", 1), summary("oncall.md", 1)]
    );
    // The same source name in another tenant is untouched.
    assert_eq!(
        store.sources(&TenantScope::only("globex")).await.unwrap(),
        vec![summary("deploy.md", 1)]
    );
    assert_eq!(store.delete_source("acme", "deploy.md").await.unwrap(), 0);
    assert_eq!(store.source_hash("acme", "deploy.md").await.unwrap(), None);
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Dense(vec![1.0, 0.0, 0.0, 0.0]),
            10,
        ))
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.chunk.source != "deploy.md"),
        "{:?}",
        sources_of(&hits)
    );
    assert_eq!(store.stats().await.unwrap().chunks, 4);
}

async fn tenants_are_isolated(h: &mut Harness) {
    let store = loaded(h).await;
    let queries = [
        StoreQuery::Dense(vec![1.0, 0.0, 0.0, 0.0]),
        StoreQuery::Sparse(BM25.query("Globex secret kubernetes billing deploy")),
        hybrid(
            [1.0, 0.0, 0.0, 0.0],
            "Globex secret kubernetes billing deploy",
        ),
    ];
    for query in queries {
        let acme = store
            .search(request(TenantScope::only("acme"), query.clone(), 10))
            .await
            .unwrap();
        assert!(!acme.is_empty());
        assert!(
            acme.iter()
                .all(|h| h.chunk.tenant == "acme" && !h.chunk.text.contains("Globex")),
            "{query:?} leaked: {:?}",
            acme.iter().map(|h| &h.chunk.tenant).collect::<Vec<_>>()
        );
        let globex = store
            .search(request(TenantScope::only("globex"), query.clone(), 10))
            .await
            .unwrap();
        assert!(
            globex.iter().all(|h| h.chunk.tenant == "globex"),
            "{query:?}"
        );
        let nobody = store
            .search(request(TenantScope::only("nobody"), query.clone(), 10))
            .await
            .unwrap();
        assert!(nobody.is_empty(), "{query:?}");
    }
    assert!(
        store
            .sources(&TenantScope::only("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn global_scope_filters(h: &mut Harness) {
    let store = loaded(h).await;
    let scope = TenantScope::with_global("acme", "global");
    let hits = store
        .search(request(
            scope.clone(),
            hybrid([0.0, 1.0, 0.0, 0.0], "holiday leave"),
            10,
        ))
        .await
        .unwrap();
    let found = sources_of(&hits);
    assert!(
        found.contains(&"holiday.md".to_owned()) && found.contains(&"handbook.md".to_owned()),
        "{found:?}"
    );
    assert!(hits.iter().all(|h| h.chunk.tenant != "globex"));
    assert_eq!(
        store.sources(&scope).await.unwrap(),
        vec![
            summary("deploy.md", 2),
            summary("handbook.md", 1),
            summary("holiday.md", 1),
            summary("oncall.md", 1)
        ]
    );
}

async fn dense_search(h: &mut Harness) {
    let store = loaded(h).await;
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Dense(vec![0.0, 1.0, 0.0, 0.0]),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4);
    assert_eq!(hits[0].chunk.source, "holiday.md");
    // Cosine: the identical direction scores 1.
    assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(hits[0].dense.as_ref().map(Vec::len), Some(DIM));
    assert!(
        hits[0]
            .sparse
            .as_ref()
            .is_some_and(|s| !s.indices.is_empty())
    );
    // Vectors only when asked for.
    let mut plain = request(
        TenantScope::only("acme"),
        StoreQuery::Dense(vec![0.0, 1.0, 0.0, 0.0]),
        2,
    );
    plain.with_vectors = false;
    let hits = store.search(plain).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.dense.is_none() && h.sparse.is_none()));
}

async fn sparse_search(h: &mut Harness) {
    let store = loaded(h).await;
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Sparse(BM25.query("pager rotation Monday")),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(sources_of(&hits), ["oncall.md"]);
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            StoreQuery::Sparse(BM25.query("docker billing")),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(sources_of(&hits), ["deploy.md", "deploy.md"]);
    assert!(hits[0].score >= hits[1].score && hits[1].score > 0.0);
}

async fn hybrid_search(h: &mut Harness) {
    let store = loaded(h).await;
    // Dense finds the on-call chunk first; BM25 finds only the holiday chunk.
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            hybrid([0.0, 0.0, 1.0, 0.0], "holiday leave"),
            2,
        ))
        .await
        .unwrap();
    assert_eq!(sources_of(&hits), ["holiday.md", "oncall.md"]);
    // Qdrant's RRF: 1 / (k + position) per list, position from 0.
    let first_of_one_list = 1.0 / RRF_K as f32;
    assert!(
        (hits[1].score - first_of_one_list).abs() < 1e-6,
        "{}",
        hits[1].score
    );
    assert!(hits[0].score > first_of_one_list && hits[0].score < 2.0 * first_of_one_list);
}

async fn mmr_prefers_a_different_passage(h: &mut Harness) {
    let store = h.open().await;
    let text = "Deploy the billing service with docker compose.";
    store
        .upsert(vec![
            stored("mmr", "deploy.md", 0, text, [1.0, 0.0, 0.0, 0.0]),
            stored("mmr", "deploy-copy.md", 0, text, [1.0, 0.0, 0.0, 0.0]),
            stored(
                "mmr",
                "runbook.md",
                0,
                "Runbook: deploy the billing service by hand when docker compose itself is down.",
                [0.0, 1.0, 0.0, 0.0],
            ),
        ])
        .await
        .unwrap();
    store.commit().await.unwrap();
    let mut settings = lore::settings::Settings::load(None, Vec::<(String, String)>::new())
        .unwrap()
        .retrieval;
    settings.mmr_lambda = 0.5;
    let retriever = Retriever::new(store, None, Arc::new(Bm25Encoder::new()), settings);
    let scope = TenantScope::only("mmr");
    let question = "deploy billing docker compose";
    // Relevance alone returns the two copies.
    let plain = retriever
        .search(&scope, question, Some(SearchMode::Sparse), 2)
        .await
        .unwrap();
    let mut plain_sources = sources_of(&plain.hits);
    plain_sources.sort();
    assert_eq!(plain_sources, ["deploy-copy.md", "deploy.md"]);
    // MMR, over the vectors the backend returned, swaps the copy for the runbook.
    let diverse = retriever
        .search(&scope, question, Some(SearchMode::Mmr), 2)
        .await
        .unwrap();
    let found = sources_of(&diverse.hits);
    assert_eq!(found.len(), 2);
    assert!(
        found[0] == "deploy.md" || found[0] == "deploy-copy.md",
        "{found:?}"
    );
    assert_eq!(found[1], "runbook.md");
}

async fn scroll_covers_every_chunk(h: &mut Harness) {
    let store = loaded(h).await;
    let mut seen = Vec::new();
    let mut from = None;
    let mut pages = 0;
    loop {
        let page = store.scroll(from, 4).await.unwrap();
        pages += 1;
        assert!(page.chunks.len() <= 4);
        seen.extend(page.chunks);
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let mut ids: Vec<_> = seen
        .iter()
        .map(|s| chunk_point_id(&s.chunk.tenant, &s.chunk.source, s.chunk.index))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    for original in corpus() {
        let copy = seen
            .iter()
            .find(|s| s.chunk == original.chunk)
            .expect("every chunk scrolled");
        assert_eq!(copy.sparse, original.sparse);
        let dense = copy.dense.as_ref().expect("dense vector");
        // Cosine vectors are stored normalised: same direction.
        let cosine = lore_cosine(dense, original.dense.as_ref().unwrap());
        assert!((cosine - 1.0).abs() < 1e-5, "{cosine}");
    }
}

fn lore_cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn survives_a_restart(h: &mut Harness) {
    let store = loaded(h).await;
    drop(store);
    h.restart().await;
    let store = h.open().await;
    assert_eq!(store.stats().await.unwrap().chunks, 6);
    assert_eq!(
        store.sources(&TenantScope::only("acme")).await.unwrap(),
        vec![
            summary("deploy.md", 2),
            summary("holiday.md", 1),
            summary("oncall.md", 1)
        ]
    );
    let hits = store
        .search(request(
            TenantScope::only("acme"),
            hybrid([0.0, 0.0, 1.0, 0.0], "holiday leave"),
            2,
        ))
        .await
        .unwrap();
    assert_eq!(sources_of(&hits), ["holiday.md", "oncall.md"]);
    // Still writable after the restart.
    assert_eq!(store.delete_source("acme", "oncall.md").await.unwrap(), 1);
}

/// The score of `tenant`'s best BM25 hit for `words`.
async fn top_sparse_score(store: &dyn KnowledgeStore, scope: TenantScope, words: &str) -> f32 {
    let hits = store
        .search(request(scope, StoreQuery::Sparse(BM25.query(words)), 3))
        .await
        .unwrap();
    hits.first().expect("a hit").score
}

/// A few chunks of tenant "bravo", whose BM25 scores the leak cases watch.
fn bravo_chunks() -> Vec<StoredChunk> {
    [
        "The quarterly audit checklist lives in the finance wiki.",
        "Audit findings are reviewed with the finance lead every quarter.",
        "Expense reports need a receipt for anything above fifty euros.",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| stored("bravo", "finance.md", i as u32, text, [0.0, 0.0, 0.0, 1.0]))
    .collect()
}

/// Issue 16: the engine's IDF counted every tenant, so another tenant's volume moved a
/// tenant's BM25 scores. Scores are counted in the scope alone now.
async fn another_tenants_volume_does_not_move_scores(h: &mut Harness) {
    let store = h.open().await;
    store.upsert(bravo_chunks()).await.unwrap();
    store.commit().await.unwrap();
    let scopes = [
        TenantScope::only("bravo"),
        TenantScope::with_global("bravo", "global"),
    ];
    let mut before = Vec::new();
    for scope in &scopes {
        before.push(top_sparse_score(store.as_ref(), scope.clone(), "audit").await);
    }
    let unrelated: Vec<StoredChunk> = (0..300)
        .map(|i| {
            let text = format!("Sprint {i} retrospective: ship the mobile app build {i}.");
            stored("alpha", "sprints.md", i, &text, [0.0, 1.0, 0.0, 0.0])
        })
        .collect();
    store.upsert(unrelated).await.unwrap();
    store.commit().await.unwrap();
    for (scope, before) in scopes.iter().zip(before) {
        let after = top_sparse_score(store.as_ref(), scope.clone(), "audit").await;
        assert!(
            (after - before).abs() < 1e-6,
            "{scope:?}: {before} -> {after}"
        );
    }
}

/// IDF is counted in the scope at query time (the embedded store reads the lengths of its
/// posting lists). A tenant's own writes and deletes must move its scores at once, commit
/// or not.
async fn a_tenants_own_writes_move_its_scores_at_once(h: &mut Harness) {
    let store = h.open().await;
    store.upsert(bravo_chunks()).await.unwrap();
    store.commit().await.unwrap();
    let scope = TenantScope::only("bravo");
    let before = top_sparse_score(store.as_ref(), scope.clone(), "audit").await;
    // "audit" in 20 more chunks: a commoner word weighs less.
    let more: Vec<StoredChunk> = (0..20)
        .map(|i| stored("bravo", "audits.md", i, "Audit log.", [0.0, 0.0, 1.0, 0.0]))
        .collect();
    store.upsert(more).await.unwrap();
    let common = top_sparse_score(store.as_ref(), scope.clone(), "audit").await;
    assert!(common < before - 1e-3, "{before} -> {common}");
    assert_eq!(store.delete_source("bravo", "audits.md").await.unwrap(), 20);
    let after = top_sparse_score(store.as_ref(), scope, "audit").await;
    assert!((after - before).abs() < 1e-6, "{before} -> {after}");
}

/// Issue 16's aimed attack: tenant alpha stores a term whose keyed BM25 dimension is the one
/// bravo's "audit" has (term ids are XORed with a tenant key, so alpha picks the id
/// that lands there), in as many chunks as it likes. Bravo's score must not move, so alpha
/// cannot learn whether bravo's chunks hold a word.
async fn colliding_terms_of_another_tenant_do_not_move_scores(h: &mut Harness) {
    let store = h.open().await;
    store.upsert(bravo_chunks()).await.unwrap();
    store.commit().await.unwrap();
    let before = top_sparse_score(store.as_ref(), TenantScope::only("bravo"), "audit").await;
    let audit = BM25.query("audit").indices[0];
    let aimed = tenant_terms("alpha", tenant_terms("bravo", vec![audit]))[0];
    let attack: Vec<StoredChunk> = (0..50)
        .map(|i| {
            let mut chunk = stored("alpha", "probe.md", i, "probe", [0.0, 1.0, 0.0, 0.0]);
            chunk.sparse = SparseVector {
                indices: vec![aimed],
                values: vec![1.0],
            };
            chunk
        })
        .collect();
    store.upsert(attack).await.unwrap();
    store.commit().await.unwrap();
    let after = top_sparse_score(store.as_ref(), TenantScope::only("bravo"), "audit").await;
    assert!((after - before).abs() < 1e-6, "{before} -> {after}");
    // And alpha's aimed chunks never reach bravo.
    let hits = store
        .search(request(
            TenantScope::only("bravo"),
            StoreQuery::Sparse(BM25.query("audit")),
            10,
        ))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.chunk.tenant == "bravo"));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let mut h = super::Harness::embedded().await;
                    super::$case(&mut h).await;
                }
            )*
        }

        /// lore's server backend over gRPC against the local stand-in.
        mod standin {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let mut h = super::Harness::standin().await;
                    super::$case(&mut h).await;
                }
            )*
        }

        /// The whole suite against a real Qdrant server, one fresh collection per case.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn real_qdrant_server() {
            let Some(url) = std::env::var("LORE_TEST_QDRANT_URL").ok().filter(|u| !u.is_empty()) else {
                // Written past the test harness's capture, so it shows in every run.
                let _ = writeln!(
                    std::io::stderr(),
                    "store_conformance: LORE_TEST_QDRANT_URL is unset, so the suite ran against the \
                     embedded store and the local Qdrant stand-in only, not a real Qdrant server"
                );
                return;
            };
            $(
                let mut h = Harness::real(&url, stringify!($case));
                $case(&mut h).await;
                h.cleanup().await;
            )*
        }
    };
}

conformance!(
    upsert_and_read_back,
    upsert_is_idempotent,
    delete_by_source,
    tenants_are_isolated,
    global_scope_filters,
    dense_search,
    sparse_search,
    hybrid_search,
    mmr_prefers_a_different_passage,
    scroll_covers_every_chunk,
    survives_a_restart,
    another_tenants_volume_does_not_move_scores,
    colliding_terms_of_another_tenant_do_not_move_scores,
    a_tenants_own_writes_move_its_scores_at_once,
);

// ---- both backends give the same answers ------------------------------------------------

/// (score rounded to 1e-4, source, index), sorted, so equal scores in another order agree.
fn normalised(hits: &[Hit]) -> Vec<(i64, String, u32)> {
    let mut v: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                (h.score * 1e4).round() as i64,
                h.chunk.source.clone(),
                h.chunk.index,
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_server_backends_agree() {
    let embedded = Harness::embedded().await;
    let server = Harness::standin().await;
    let (a, b) = (loaded(&embedded).await, loaded(&server).await);
    let q = [0.9, 0.5, 0.3, 0.2];
    let words = "billing deploy holiday pager docker";
    for query in [
        StoreQuery::Dense(q.to_vec()),
        StoreQuery::Sparse(BM25.query(words)),
        hybrid(q, words),
    ] {
        for scope in [
            TenantScope::only("acme"),
            TenantScope::with_global("acme", "global"),
        ] {
            let req = request(scope, query.clone(), 10);
            let (x, y) = (
                a.search(req.clone()).await.unwrap(),
                b.search(req).await.unwrap(),
            );
            assert!(!x.is_empty());
            assert_eq!(normalised(&x), normalised(&y), "{query:?}");
        }
    }
}

// ---- the server backend's own checks ------------------------------------------------------

async fn raw_client(url: &str, api_key: Option<&str>) -> qdrant_client::Qdrant {
    qdrant_client::Qdrant::from_url(url)
        .api_key(api_key.map(str::to_owned))
        .skip_compatibility_check()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_collection_has_named_vectors_and_payload_indexes() {
    let h = Harness::standin().await;
    let _store = h.open().await;
    let info = raw_client(&h.url, None)
        .await
        .collection_info(h.collection.clone())
        .await
        .unwrap()
        .result
        .unwrap();
    let params = info.config.as_ref().unwrap().params.as_ref().unwrap();
    let Some(grpc::vectors_config::Config::ParamsMap(map)) =
        params.vectors_config.as_ref().unwrap().config.clone()
    else {
        panic!("named vectors expected");
    };
    assert_eq!(map.map["dense"].size, DIM as u64);
    assert_eq!(map.map["dense"].distance, grpc::Distance::Cosine as i32);
    // No engine IDF: it would count every tenant; lore weights queries per scope.
    let sparse = &params.sparse_vectors_config.as_ref().unwrap().map["bm25_tf"];
    assert_ne!(sparse.modifier, Some(grpc::Modifier::Idf as i32));
    assert_eq!(
        info.payload_schema["bm25_terms"].data_type,
        grpc::PayloadSchemaType::Integer as i32
    );
    let is_tenant = |field: &str| match info.payload_schema[field]
        .params
        .as_ref()
        .and_then(|p| p.index_params.clone())
    {
        Some(grpc::payload_index_params::IndexParams::KeywordIndexParams(k)) => k.is_tenant,
        other => panic!("{field}: {other:?}"),
    };
    assert_eq!(is_tenant("tenant"), Some(true));
    assert_eq!(is_tenant("source"), Some(false));
    assert_eq!(is_tenant("channel"), Some(false));
    for field in ["tenant", "source", "channel"] {
        assert_eq!(
            info.payload_schema[field].data_type,
            grpc::PayloadSchemaType::Keyword as i32
        );
    }
    // The embedder is pinned in the collection's metadata.
    let pinned = &info.config.as_ref().unwrap().metadata["lore_dense"];
    assert_eq!(
        pinned.kind,
        Some(grpc::value::Kind::StringValue(EMBEDDER.into()))
    );
}

fn tenant_filter_of(filter: Option<&grpc::Filter>) -> Vec<String> {
    let filter = filter.expect("a filter");
    filter
        .must
        .iter()
        .filter_map(|c| match &c.condition_one_of {
            Some(grpc::condition::ConditionOneOf::Field(f)) if f.key == "tenant" => {
                match f.r#match.as_ref()?.match_value.as_ref()? {
                    grpc::r#match::MatchValue::Keywords(k) => Some(k.strings.clone()),
                    grpc::r#match::MatchValue::Keyword(k) => Some(vec![k.clone()]),
                    _ => None,
                }
            }
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_is_one_query_with_two_filtered_prefetches_fused_by_rrf() {
    let h = Harness::standin().await;
    let store = loaded(&h).await;
    let scope = TenantScope::with_global("acme", "global");
    store
        .search(request(scope, hybrid([0.0, 1.0, 0.0, 0.0], "holiday"), 3))
        .await
        .unwrap();
    let Kind::StandIn(Some(server)) = &h.kind else {
        unreachable!()
    };
    let sent = server.last_query().expect("a query reached the server");
    let tenants = vec!["acme".to_owned(), "global".to_owned()];
    assert_eq!(
        tenant_filter_of(sent.filter.as_ref()),
        tenants,
        "fused query"
    );
    assert_eq!(sent.prefetch.len(), 2);
    let mut using = Vec::new();
    for prefetch in &sent.prefetch {
        assert_eq!(
            tenant_filter_of(prefetch.filter.as_ref()),
            tenants,
            "prefetch"
        );
        assert_eq!(prefetch.limit, Some(10));
        using.push(prefetch.using.clone().unwrap());
    }
    using.sort();
    assert_eq!(using, ["bm25_tf", "dense"]);
    assert_eq!(
        sent.query.and_then(|q| q.variant),
        Some(grpc::query::Variant::Rrf(grpc::Rrf {
            k: Some(RRF_K),
            weights: vec![]
        }))
    );
    assert_eq!(sent.limit, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = ServerConfig {
        url: url.clone(),
        collection: "lore".into(),
        api_key: None,
        timeout: Duration::from_secs(20),
        layout: Default::default(),
    };
    let err = QdrantStore::connect(config, dense_id())
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let err = err.to_string();
    assert!(
        err.contains("cannot reach a Qdrant server") && err.contains(&url),
        "{err}"
    );
    assert!(err.contains("6334"), "names the gRPC port: {err}");
    // A REST-style or schemeless URL is refused before any connection.
    let config = ServerConfig {
        url: "localhost:6334".into(),
        collection: "lore".into(),
        api_key: None,
        timeout: Duration::from_secs(5),
        layout: Default::default(),
    };
    let err = QdrantStore::connect(config, dense_id())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_mismatch_is_a_clear_error() {
    let h = Harness::standin().await;
    drop(h.open().await);
    // Another dimension.
    let err = h.try_open(Some((EMBEDDER.into(), 8))).await.err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    let err = err.to_string();
    assert!(
        err.contains("schema mismatch") && err.contains("4 dimensions"),
        "{err}"
    );
    // Same dimension, another model: caught by the pinned embedder id.
    let err = h
        .try_open(Some(("other-model".into(), DIM)))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("schema mismatch") && err.contains(EMBEDDER),
        "{err}"
    );
    // Sparse-only lore against a collection with dense vectors.
    let err = h.try_open(None).await.err().unwrap().to_string();
    assert!(err.contains("no dense embedder"), "{err}");
    // A collection made by someone else, with the engine's IDF modifier.
    let raw = raw_client(&h.url, None).await;
    raw.create_collection(grpc::CreateCollection {
        collection_name: "foreign".into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(grpc::vectors_config::Config::ParamsMap(
                grpc::VectorParamsMap {
                    map: [(
                        "dense".to_owned(),
                        grpc::VectorParams {
                            size: DIM as u64,
                            distance: grpc::Distance::Cosine as i32,
                            ..Default::default()
                        },
                    )]
                    .into(),
                },
            )),
        }),
        sparse_vectors_config: Some(grpc::SparseVectorConfig {
            map: [(
                "bm25_tf".to_owned(),
                grpc::SparseVectorParams {
                    index: None,
                    modifier: Some(grpc::Modifier::Idf as i32),
                },
            )]
            .into(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let foreign = ServerConfig {
        collection: "foreign".into(),
        ..h.server_config()
    };
    let err = QdrantStore::connect(foreign, dense_id())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("IDF") && err.contains("foreign"), "{err}");
}

/// A collection written by a lore whose BM25 dimensions were shared by all tenants (format
/// 1) would answer keyed sparse queries with nothing; it is refused with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_of_another_format_is_refused() {
    let mut h = Harness::standin().await;
    drop(h.open().await);
    if let Kind::StandIn(server) = &mut h.kind {
        server.take().expect("running").stop().await;
    }
    // The stand-in keeps each collection's metadata beside its shard.
    let meta = h
        .dir
        .path()
        .join("server")
        .join(&h.collection)
        .join("standin-collection.json");
    let mut metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    metadata["lore_format"] = serde_json::json!(1);
    std::fs::write(&meta, metadata.to_string()).unwrap();
    let again = QdrantStandIn::start(&h.dir.path().join("server"), StandInOptions::default()).await;
    h.url = again.url.clone();
    h.kind = Kind::StandIn(Some(again));
    let err = h.try_open(dense_id()).await.err().unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    let err = err.to_string();
    assert!(
        err.contains("format 1") && err.contains("lore migrate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_is_refused_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = QdrantStandIn::start(
        dir.path(),
        StandInOptions {
            version: "1.9.4".into(),
            ..Default::default()
        },
    )
    .await;
    let config = ServerConfig {
        url: server.url.clone(),
        collection: "lore".into(),
        api_key: None,
        timeout: Duration::from_secs(20),
        layout: Default::default(),
    };
    let err = QdrantStore::connect(config, dense_id())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    let err = err.to_string();
    assert!(err.contains("1.9.4") && err.contains("1.16"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_sent_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let server = QdrantStandIn::start(
        dir.path(),
        StandInOptions {
            api_key: Some("s3cret-key".into()),
            ..Default::default()
        },
    )
    .await;
    let config = |key: Option<&str>| ServerConfig {
        url: server.url.clone(),
        collection: "lore".into(),
        api_key: key.map(str::to_owned),
        timeout: Duration::from_secs(20),
        layout: Default::default(),
    };
    // As on a real server, the health check needs no key; the first real call is refused.
    let health = raw_client(&server.url, None).await.health_check().await;
    assert!(health.is_ok(), "{health:?}");
    let err = QdrantStore::connect(config(None), dense_id())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    let err = err.to_string();
    assert!(
        err.contains("refused the API key") && err.contains("QDRANT_API_KEY"),
        "lore's own words: {err}"
    );
    assert!(!err.contains("MetadataMap"), "no raw client error: {err}");
    let err = QdrantStore::connect(config(Some("wrong-key-value")), dense_id())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("QDRANT_API_KEY") && !err.contains("wrong-key-value"),
        "{err}"
    );
    assert!(!err.contains("MetadataMap"), "{err}");
    let store = QdrantStore::connect(config(Some("s3cret-key")), dense_id())
        .await
        .unwrap();
    store.upsert(corpus()).await.unwrap();
    assert_eq!(store.stats().await.unwrap().chunks, 6);
}

// ---- a Qdrant cluster: layout, replication, several URLs ----------------------------------

fn cluster_config(url: &str, layout: CollectionLayout) -> ServerConfig {
    ServerConfig {
        url: url.to_owned(),
        collection: "lore".into(),
        api_key: None,
        timeout: Duration::from_secs(20),
        layout,
    }
}

fn layout(shards: Option<u32>, replication: u32, peer_wait_secs: u64) -> CollectionLayout {
    CollectionLayout {
        shard_number: shards,
        replication_factor: replication,
        write_consistency_factor: 1,
        peer_wait: Duration::from_secs(peer_wait_secs),
    }
}

async fn cluster_standin(dir: &Path, peers: u64) -> QdrantStandIn {
    QdrantStandIn::start(
        dir,
        StandInOptions {
            peers,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_collection_takes_the_configured_shards_and_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster_standin(dir.path(), 3).await;
    let store = QdrantStore::connect(
        cluster_config(&server.url, layout(Some(6), 2, 5)),
        dense_id(),
    )
    .await
    .unwrap();
    let info = raw_client(&server.url, None)
        .await
        .collection_info("lore")
        .await
        .unwrap()
        .result
        .unwrap();
    let params = info.config.unwrap().params.unwrap();
    assert_eq!(params.shard_number, 6);
    assert_eq!(params.replication_factor, Some(2));
    assert_eq!(params.write_consistency_factor, Some(1));
    let cluster = store
        .stats()
        .await
        .unwrap()
        .cluster
        .expect("a server reports its cluster");
    assert_eq!(
        (
            cluster.shard_number,
            cluster.replication_factor,
            cluster.peers
        ),
        (6, 2, 3)
    );
    assert_eq!(cluster.shards.len(), 6);
    for shard in &cluster.shards {
        assert_eq!(shard.replicas.len(), 2, "{shard:?}");
        assert!(
            shard.replicas.iter().all(|r| r.state == "Active"),
            "{shard:?}"
        );
    }
    // A node goes down: its replicas are reported dead, and lore still starts (the
    // replicas exist and come back with the node).
    server.set_peer_down(2);
    let again = QdrantStore::connect(
        cluster_config(&server.url, layout(Some(6), 2, 5)),
        dense_id(),
    )
    .await
    .unwrap();
    let cluster = again.stats().await.unwrap().cluster.unwrap();
    let dead: Vec<u64> = cluster
        .shards
        .iter()
        .flat_map(|s| &s.replicas)
        .filter(|r| r.state == "Dead")
        .map(|r| r.peer)
        .collect();
    assert!(
        !dead.is_empty() && dead.iter().all(|p| *p == 2),
        "{cluster:?}"
    );
    // The embedded store has no cluster.
    let embedded = Harness::embedded().await;
    assert!(
        embedded
            .open()
            .await
            .stats()
            .await
            .unwrap()
            .cluster
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_peers_for_the_replication_factor_is_refused_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster_standin(dir.path(), 1).await;
    let err = QdrantStore::connect(cluster_config(&server.url, layout(None, 2, 1)), dense_id())
        .await
        .err()
        .expect("one peer cannot hold two replicas");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("replication_factor is 2") && text.contains("peer_wait_secs"),
        "{text}"
    );
    // The under-replicated collection it made while waiting is not left behind.
    let exists = raw_client(&server.url, None)
        .await
        .collection_exists("lore")
        .await
        .unwrap();
    assert!(!exists);
}

/// Peers still joining: the first collection gets one replica per shard, lore drops it and
/// creates it again, and the stand-in lets a peer join at each drop (no timing involved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lore_waits_for_peers_before_keeping_a_new_collection() {
    let dir = tempfile::tempdir().unwrap();
    let server = QdrantStandIn::start(
        dir.path(),
        StandInOptions {
            peers: 1,
            peer_joins_on_delete: true,
            ..Default::default()
        },
    )
    .await;
    let store = QdrantStore::connect(
        cluster_config(&server.url, layout(Some(4), 2, 600)),
        dense_id(),
    )
    .await
    .unwrap();
    assert_eq!(server.creates(), 2, "created, dropped, created again");
    let cluster = store.stats().await.unwrap().cluster.unwrap();
    assert_eq!(cluster.peers, 2);
    assert!(
        cluster.shards.iter().all(|s| s.replicas.len() == 2),
        "{cluster:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_less_replicated_than_configured_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster_standin(dir.path(), 3).await;
    drop(
        QdrantStore::connect(
            cluster_config(&server.url, layout(Some(3), 1, 1)),
            dense_id(),
        )
        .await
        .unwrap(),
    );
    let err = QdrantStore::connect(
        cluster_config(&server.url, layout(Some(3), 2, 1)),
        dense_id(),
    )
    .await
    .err()
    .expect("one replica per shard, two configured");
    assert_eq!(err.kind(), StoreErrorKind::Incompatible, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("less replicated") && text.contains("replication_factor = 2"),
        "{text}"
    );
    assert!(text.contains("shard 0 has 1 replica"), "{text}");
}

/// Log lines written by a test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Two independent stand-ins holding the same knowledge stand for two nodes of a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_urls_move_to_the_next_server_when_one_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let first = QdrantStandIn::start(&dir.path().join("a"), StandInOptions::default()).await;
    let second = QdrantStandIn::start(&dir.path().join("b"), StandInOptions::default()).await;
    for url in [&first.url, &second.url] {
        let store = QdrantStore::connect(cluster_config(url, layout(None, 1, 1)), dense_id())
            .await
            .unwrap();
        store.upsert(corpus()).await.unwrap();
    }
    let (first_url, second_url) = (first.url.clone(), second.url.clone());
    let both = format!("{first_url}, {second_url}");
    let store = QdrantStore::connect(cluster_config(&both, layout(None, 1, 1)), dense_id())
        .await
        .unwrap();
    assert_eq!(store.current_url(), first_url);
    let query = || {
        request(
            TenantScope::only("acme"),
            hybrid([0.0, 1.0, 0.0, 0.0], "holiday leave"),
            2,
        )
    };
    let before = store.search(query()).await.unwrap();
    first.stop().await;
    // A read finds the first server gone and is answered by the next one, with one warning
    // line (the test body runs on this thread, so a thread-local subscriber sees it).
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let after = store.search(query()).await.unwrap();
    drop(guard);
    assert_eq!(store.current_url(), second_url);
    assert_eq!(normalised(&before), normalised(&after));
    let log = log.text();
    let moves: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("moving to the next one"))
        .collect();
    assert_eq!(moves.len(), 1, "{log}");
    assert!(
        moves[0].contains("WARN")
            && moves[0].contains(&first_url)
            && moves[0].contains(&second_url),
        "{log}"
    );
    // A write goes to the server in use.
    store
        .upsert(vec![stored(
            "acme",
            "new.md",
            0,
            "fresh",
            [0.0, 0.0, 0.0, 1.0],
        )])
        .await
        .unwrap();
    assert_eq!(second.upsert_calls(), 2);
    assert_eq!(store.stats().await.unwrap().chunks, 7);
    // At start, a server that does not answer is skipped.
    let store = QdrantStore::connect(cluster_config(&both, layout(None, 1, 1)), dense_id())
        .await
        .unwrap();
    assert_eq!(store.current_url(), second_url);
    assert_eq!(store.stats().await.unwrap().chunks, 7);
    // None answering: every server is named.
    second.stop().await;
    let err = QdrantStore::connect(cluster_config(&both, layout(None, 1, 1)), dense_id())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot reach a Qdrant server at {first_url}"))
            && text.contains(&format!("cannot reach a Qdrant server at {second_url}")),
        "{text}"
    );
}

/// BM25 scores must not depend on how the collection is sharded. Qdrant's IDF modifier takes
/// its statistics shard by shard, so the same corpus would score differently on 1 and on 6
/// shards (and differently again after a rebalance). lore never asks the server for IDF:
/// the collection has no modifier, the scope's chunk count and document frequencies come
/// from exact counts (which a cluster sums over every shard), and the query arrives already
/// weighted, so the server only takes dot products. The stand-in keeps one engine shard
/// whatever layout is asked (see its header), so this checks the construction: the same
/// scores on a 1-shard and a 6-shard collection, and every score equal to the dot product of
/// the query lore sent and the chunk's stored term weights, computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_are_the_same_on_one_shard_and_on_six() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster_standin(dir.path(), 3).await;
    let mut results = Vec::new();
    for (collection, shards) in [("one_shard", 1), ("six_shards", 6)] {
        let config = ServerConfig {
            collection: collection.into(),
            ..cluster_config(&server.url, layout(Some(shards), 1, 1))
        };
        let store = QdrantStore::connect(config, dense_id()).await.unwrap();
        store.upsert(corpus()).await.unwrap();
        let cluster = store.stats().await.unwrap().cluster.unwrap();
        assert_eq!(cluster.shards.len(), shards as usize);
        let hits = store
            .search(request(
                TenantScope::with_global("acme", "global"),
                StoreQuery::Sparse(BM25.query("holiday leave billing deploy")),
                10,
            ))
            .await
            .unwrap();
        assert!(hits.len() >= 3, "{hits:?}");
        let sent = server.last_query().unwrap();
        let Some(grpc::query::Variant::Nearest(grpc::VectorInput {
            variant: Some(grpc::vector_input::Variant::Sparse(query)),
        })) = sent.query.and_then(|q| q.variant)
        else {
            panic!("a sparse nearest query")
        };
        for hit in &hits {
            let stored = hit.sparse.as_ref().unwrap();
            let keyed = tenant_terms(&hit.chunk.tenant, stored.indices.clone());
            let dot: f32 = keyed
                .iter()
                .zip(&stored.values)
                .filter_map(|(term, tf)| {
                    let at = query.indices.iter().position(|q| q == term)?;
                    Some(query.values[at] * tf)
                })
                .sum();
            assert!(
                (dot - hit.score).abs() <= 1e-4 * dot.abs().max(1.0),
                "{}: server {} vs dot product {dot}",
                hit.chunk.source,
                hit.score
            );
        }
        results.push(normalised(&hits));
    }
    assert_eq!(results[0], results[1]);
}

// ---- lore migrate -------------------------------------------------------------------------

fn options(dir: &Path, batch: usize) -> MigrateOptions {
    MigrateOptions {
        route: "test route".into(),
        checkpoint: dir.join("migrate-checkpoint.json"),
        batch,
    }
}

async fn everything(store: &dyn KnowledgeStore) -> Vec<(Chunk, SparseVector)> {
    let mut all = Vec::new();
    let mut from = None;
    loop {
        let page = store.scroll(from, 100).await.unwrap();
        all.extend(page.chunks.into_iter().map(|s| (s.chunk, s.sparse)));
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    all.sort_by(|a, b| {
        (&a.0.tenant, &a.0.source, a.0.index).cmp(&(&b.0.tenant, &b.0.source, b.0.index))
    });
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_round_trip_embedded_to_server_and_back() {
    let source = Harness::embedded().await;
    let server = Harness::standin().await;
    let back = Harness::embedded().await;
    let (a, b, c) = (
        loaded(&source).await,
        server.open().await,
        back.open().await,
    );
    let work = tempfile::tempdir().unwrap();
    // An empty source is a mistake (wrong --from or settings), not a successful copy.
    let err = migrate(c.as_ref(), b.as_ref(), &options(work.path(), 4), &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no chunks"), "{err}");
    let report = migrate(a.as_ref(), b.as_ref(), &options(work.path(), 4), &Quiet)
        .await
        .unwrap();
    assert_eq!(report.copied, 6);
    assert_eq!(report.resumed_after, None);
    assert_eq!(report.tenants, a.tenant_counts().await.unwrap());
    assert!(!work.path().join("migrate-checkpoint.json").exists());
    let report = migrate(b.as_ref(), c.as_ref(), &options(work.path(), 4), &Quiet)
        .await
        .unwrap();
    assert_eq!(report.copied, 6);
    let original = everything(a.as_ref()).await;
    assert_eq!(everything(b.as_ref()).await, original);
    assert_eq!(everything(c.as_ref()).await, original);
    let req = request(
        TenantScope::only("acme"),
        hybrid([0.0, 0.0, 1.0, 0.0], "holiday leave"),
        2,
    );
    assert_eq!(
        sources_of(&c.search(req).await.unwrap()),
        ["holiday.md", "oncall.md"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_resumes_after_an_interruption_and_verifies_counts() {
    let source = Harness::embedded().await;
    let server = Harness::standin().await;
    let (a, b) = (loaded(&source).await, server.open().await);
    let Kind::StandIn(Some(standin)) = &server.kind else {
        unreachable!()
    };
    let work = tempfile::tempdir().unwrap();
    let opts = options(work.path(), 2);
    // The server goes away after two pages (four chunks) of six.
    standin.fail_upserts_after(2);
    let err = migrate(a.as_ref(), b.as_ref(), &opts, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::Store(_)), "{err}");
    assert!(opts.checkpoint.exists());
    assert_eq!(b.stats().await.unwrap().chunks, 4);
    standin.heal();
    let calls_before = standin.upsert_calls();
    let report = migrate(a.as_ref(), b.as_ref(), &opts, &Quiet)
        .await
        .unwrap();
    assert_eq!(report.resumed_after, Some(4));
    assert_eq!(report.copied, 2);
    // One page, not a restart from the beginning.
    assert_eq!(standin.upsert_calls() - calls_before, 1);
    assert_eq!(everything(b.as_ref()).await, everything(a.as_ref()).await);
    assert!(!opts.checkpoint.exists());

    // A checkpoint from another migration is not resumed by mistake.
    std::fs::write(
        &opts.checkpoint,
        r#"{"route":"elsewhere","next":null,"finished":false,"copied":3}"#,
    )
    .unwrap();
    let err = migrate(a.as_ref(), b.as_ref(), &opts, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("elsewhere") && err.contains("delete"), "{err}");
    std::fs::remove_file(&opts.checkpoint).unwrap();

    // Verification notices a target holding more than the source.
    b.upsert(vec![stored(
        "intruder",
        "x.md",
        0,
        "extra",
        [0.0, 0.0, 0.0, 1.0],
    )])
    .await
    .unwrap();
    let err = migrate(a.as_ref(), b.as_ref(), &opts, &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("verification failed") && err.contains("intruder"),
        "{err}"
    );
}

/// `lore forget` of a tenant's last source leaves the tenant in a real server's keyword index
/// with 0 points (the stand-in does the same for unfiltered facets): such a tenant holds
/// nothing to copy and must neither fail the verification nor show up as a tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_ignores_a_tenant_emptied_by_forget() {
    let server = Harness::standin().await;
    let target = Harness::embedded().await;
    let (a, b) = (loaded(&server).await, target.open().await);
    assert_eq!(a.delete_source("globex", "deploy.md").await.unwrap(), 1);
    a.commit().await.unwrap();
    let raw = raw_client(&server.url, None)
        .await
        .facet(grpc::FacetCounts {
            collection_name: server.collection.clone(),
            key: "tenant".into(),
            exact: Some(true),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        raw.hits.iter().any(|h| h.count == 0),
        "the server reports the emptied tenant: {raw:?}"
    );
    let wanted = BTreeMap::from([("acme".to_owned(), 4), ("global".to_owned(), 1)]);
    assert_eq!(a.tenant_counts().await.unwrap(), wanted);
    let work = tempfile::tempdir().unwrap();
    let report = migrate(a.as_ref(), b.as_ref(), &options(work.path(), 4), &Quiet)
        .await
        .unwrap();
    assert_eq!(report.copied, 5);
    assert_eq!(report.tenants, wanted);
    assert_eq!(b.tenant_counts().await.unwrap(), wanted);
}

// ---- the `lore migrate` command ---------------------------------------------------------

/// The `lore` binary cargo built for these tests.
fn lore_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lore"))
}

/// Runs the `lore` binary sparse-only with this data dir and server; `backend` None keeps
/// the default (embedded).
fn lore(data: &Path, url: &str, backend: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(lore_bin());
    cmd.args(args)
        .env("LORE_STORE__DATA_DIR", data)
        .env("LORE_STORE__URL", url)
        .env("LORE_STORE__COLLECTION", "kb")
        .env("LORE_EMBEDDING__PROVIDER", "none")
        .env_remove("LORE_STORE__BACKEND")
        .env_remove("LORE_TENANT")
        .env_remove("QDRANT_API_KEY");
    if let Some(backend) = backend {
        cmd.env("LORE_STORE__BACKEND", backend);
    }
    cmd.output().unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "lore failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lore_migrate_command_round_trip() {
    let server = Harness::standin().await;
    let url = server.url.clone();
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(
        docs.path().join("tea.md"),
        "# 茶\n\n乌龙茶是一种半发酵茶，主要产自福建和台湾。\n",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("rust.txt"),
        "The borrow checker enforces ownership at compile time.",
    )
    .unwrap();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let (first_dir, second_dir) = (first.path().to_owned(), second.path().to_owned());
    let docs_dir = docs.path().to_owned();
    // The CLI blocks; the stand-in keeps serving on this runtime's other worker.
    let outputs = tokio::task::spawn_blocking(move || {
        let run = |data: &Path, backend, args: &[&str]| ok(lore(data, &url, backend, args));
        let docs = docs_dir.to_str().unwrap();
        let rust = docs_dir.join("rust.txt");
        run(&first_dir, None, &["ingest", docs]);
        run(
            &first_dir,
            None,
            &["--tenant", "team2", "ingest", rust.to_str().unwrap()],
        );
        let to_server = run(
            &first_dir,
            None,
            &["migrate", "--from", "embedded", "--to", "qdrant"],
        );
        // The server backend answers like the embedded one.
        let searched = run(
            &first_dir,
            Some("qdrant"),
            &["search", "borrow checker", "--json"],
        );
        let back = run(
            &second_dir,
            None,
            &["migrate", "--from", "qdrant", "--to", "embedded"],
        );
        let sources_first = run(&first_dir, None, &["sources", "--json"]);
        let sources_second = run(&second_dir, None, &["sources", "--json"]);
        let team2_second = run(
            &second_dir,
            None,
            &["--tenant", "team2", "sources", "--json"],
        );
        (
            to_server,
            searched,
            back,
            sources_first,
            sources_second,
            team2_second,
        )
    })
    .await
    .unwrap();
    let (to_server, searched, back, sources_first, sources_second, team2_second) = outputs;
    assert!(
        to_server.contains("migrated") && to_server.contains("verified tenant global"),
        "{to_server}"
    );
    assert!(to_server.contains("verified tenant team2"), "{to_server}");
    assert!(searched.contains("rust.txt"), "{searched}");
    assert!(back.contains("migrated"), "{back}");
    assert_eq!(sources_first, sources_second);
    assert!(sources_second.contains("tea.md") && sources_second.contains("rust.txt"));
    assert!(
        team2_second.contains("rust.txt") && !team2_second.contains("tea.md"),
        "{team2_second}"
    );
    // Same backends on both sides is refused.
    let dir = tempfile::tempdir().unwrap();
    let out = lore(
        dir.path(),
        "http://127.0.0.1:9",
        None,
        &["migrate", "--from", "embedded", "--to", "embedded"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same backend"));
}

/// `lore stats --json` on a server backend: the collection's shards, replicas and states,
/// laid out by the `[store]` settings from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lore_stats_shows_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster_standin(&dir.path().join("server"), 3).await;
    let (url, data) = (server.url.clone(), dir.path().join("data"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lore_bin())
            .args(["stats", "--json"])
            .env("LORE_STORE__DATA_DIR", &data)
            .env("LORE_STORE__BACKEND", "qdrant")
            .env("LORE_STORE__URL", &url)
            .env("LORE_STORE__SHARD_NUMBER", "6")
            .env("LORE_STORE__REPLICATION_FACTOR", "2")
            .env("LORE_EMBEDDING__PROVIDER", "none")
            .env_remove("LORE_TENANT")
            .env_remove("QDRANT_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    let cluster = &stats["cluster"];
    assert_eq!(cluster["shard_number"], 6, "{stats}");
    assert_eq!(cluster["replication_factor"], 2, "{stats}");
    assert_eq!(cluster["peers"], 3, "{stats}");
    let shards = cluster["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 6);
    for shard in shards {
        let replicas = shard["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 2, "{shard}");
        assert!(replicas.iter().all(|r| r["state"] == "Active"), "{shard}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_url_talks_tls_and_checks_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = QdrantStandIn::start(
        &dir.path().join("server"),
        StandInOptions {
            tls: Some((
                qdrant_tls::SERVER_CERT_PEM.to_owned(),
                qdrant_tls::SERVER_KEY_PEM.to_owned(),
            )),
            ..Default::default()
        },
    )
    .await;
    assert!(server.url.starts_with("https://"));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, qdrant_tls::CA_PEM).unwrap();
    let (url, data) = (server.url.clone(), dir.path().join("data"));
    // The CLI, so the CA is trusted through its own environment only.
    let (trusted, untrusted) = tokio::task::spawn_blocking(move || {
        let run = |trust: bool| {
            let mut cmd = std::process::Command::new(lore_bin());
            cmd.args(["sources"])
                .env("LORE_STORE__DATA_DIR", &data)
                .env("LORE_STORE__BACKEND", "qdrant")
                .env("LORE_STORE__URL", &url)
                .env("LORE_EMBEDDING__PROVIDER", "none")
                .env_remove("LORE_TENANT")
                .env_remove("QDRANT_API_KEY")
                .env_remove("SSL_CERT_DIR");
            if trust {
                cmd.env("SSL_CERT_FILE", &ca);
            } else {
                cmd.env_remove("SSL_CERT_FILE");
            }
            cmd.output().unwrap()
        };
        (run(true), run(false))
    })
    .await
    .unwrap();
    assert!(
        ok(trusted).contains("no sources in tenant global"),
        "over TLS"
    );
    // Without trusting the CA the handshake fails, and lore says it cannot reach the server.
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("cannot reach a Qdrant server"), "{stderr}");
}
