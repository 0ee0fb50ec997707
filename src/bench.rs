//! `lore bench`: ingest throughput and search latency, measured side by side in one run.
//! Search latency is the store call alone (query vectors are computed beforehand), which is
//! what the p99 target is about; on a corpus, a whole question (embedding, both sides,
//! ranking) is also timed ranking chunks and ranking sections.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use lore_core::embed::bm25::Bm25Encoder;
use lore_core::kb::KnowledgeBase;
use lore_core::progress::Quiet;
use lore_core::retrieve::RankUnit;
use lore_core::store::embedded::EmbeddedStore;
use lore_core::store::synthetic::{XorShift, unit_vector};
use lore_core::store::{
    Chunk, KnowledgeStore, SearchRequest, SparseVector, StoreQuery, StoredChunk, TenantScope,
};

use crate::settings::Settings;

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub mode: String,
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Ingests `corpus` into a fresh store under `work` and reports throughput and latency.
pub async fn corpus(settings: &Settings, corpus: &Path, work: &Path) -> Result<()> {
    let mut settings = settings.knowledge();
    settings.store.data_dir = work.join("corpus");
    let app = KnowledgeBase::open(settings).await?;
    let started = Instant::now();
    let report = app
        .ingestor
        .ingest(&[corpus.display().to_string()], "bench", &Quiet)
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingest {}: {} files, {} chunks in {:.1} s = {:.1} chunks/s; embedding {:.1} s ({:.0}% of the time); errors {}",
        corpus.display(),
        report.files,
        report.chunks,
        seconds,
        report.chunks as f64 / seconds,
        report.embed_seconds,
        100.0 * report.embed_seconds / seconds,
        report.errors.len()
    );
    // Queries: the first sentence of every 7th chunk's neighbourhood is not available here,
    // so use short fixed questions in both languages, repeated.
    let questions = [
        "什么是支持向量机",
        "贝叶斯分类器的推导",
        "强化学习中的策略梯度",
        "如何写出清晰的提示词",
        "文本概括的技巧",
        "what is a kernel function",
        "聊天机器人的系统消息",
        "PCA 主成分分析",
    ];
    let bm25 = Bm25Encoder::new();
    let mut queries = Vec::new();
    for q in questions {
        let dense = match &app.embedder {
            Some(e) => Some(e.embed_query(q).await?),
            None => None,
        };
        queries.push((dense, bm25.query(q)));
    }
    let queries: Vec<_> = queries.iter().cycle().take(400).cloned().collect();
    for latency in search_latencies(app.store.as_ref(), "bench", &queries, 5).await? {
        print_latency(&latency);
    }
    for latency in question_latencies(&app, &questions, 200).await? {
        print_latency(&latency);
    }
    Ok(())
}

/// Times `Retriever::search` (question embedding included) in the configured mode, ranking
/// chunks and ranking sections, interleaved so machine noise hits both alike.
async fn question_latencies(
    app: &KnowledgeBase,
    questions: &[&str],
    n: usize,
) -> Result<Vec<Latency>> {
    let units = [
        ("q/chunks", RankUnit::Chunk),
        ("q/sections", RankUnit::Section),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); units.len()];
    let scope = TenantScope::only("bench");
    for question in questions.iter().cycle().take(n) {
        for (i, (_, unit)) in units.iter().enumerate() {
            let started = Instant::now();
            app.retriever
                .search_by(&scope, question, None, 5, *unit)
                .await?;
            times[i].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(units
        .iter()
        .zip(times)
        .map(|((name, _), t)| latency(name, t))
        .collect())
}

/// The tenant whose queries are timed; the synthetic corpus spreads ten tenants evenly, so
/// the tenant filter does real work.
const PROBE_TENANT: usize = 3;
const TENANTS: usize = 10;

/// Fills a fresh store with `n` synthetic chunks (text sampled from `vocabulary_from`,
/// random unit vectors of `dim` dimensions), reports search latency, and checks the dense
/// index's recall against an exact scan, so a faster index setting cannot hide lost hits.
pub async fn synthetic(
    n: usize,
    dim: usize,
    search_ef: usize,
    vocabulary_from: &Path,
    work: &Path,
) -> Result<()> {
    let vocabulary = vocabulary(vocabulary_from)?;
    let bm25 = Bm25Encoder::new();
    let store = EmbeddedStore::open(&work.join("synthetic"), Some(("synthetic".into(), dim)))?
        .with_search_ef(search_ef);
    let kept = store.stats().await?.chunks;
    let build = kept < n;
    if !build {
        // A store kept by an older lore gets the current index layout before it is timed.
        store.commit().await?;
        let stats = store.stats().await?;
        println!(
            "synthetic: reusing {kept} chunks kept in {} ({} segments, {} indexed vectors)",
            work.display(),
            stats.segments,
            stats.indexed_vectors
        );
    }
    // The generator runs in full either way, so a reused store gets the same queries and
    // the probe tenant's vectors for the exact check.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    let mut probe: Vec<((String, u32), Vec<f32>)> = Vec::new();
    for i in 0..n {
        let text = synthetic_text(&mut rng, &vocabulary, 40, 80);
        let dense = unit_vector(&mut rng, dim);
        let (source, index) = (format!("synthetic/{}", i / 50), (i % 50) as u32);
        if i % TENANTS == PROBE_TENANT {
            probe.push(((source.clone(), index), dense.clone()));
        }
        if !build {
            continue;
        }
        batch.push(StoredChunk {
            sparse: bm25.document(&text),
            dense: Some(dense),
            chunk: Chunk {
                tenant: format!("t{}", i % TENANTS),
                source,
                index,
                text,
                page: None,
                heading: None,
                timestamp: None,
                title: None,
                start: 0,
                end: 0,
                source_hash: String::new(),
            },
        });
        if batch.len() == 1000 {
            store.upsert(std::mem::take(&mut batch)).await?;
        }
    }
    if build {
        store.upsert(batch).await?;
        let upserted = started.elapsed().as_secs_f64();
        store.commit().await?;
        let indexed = started.elapsed().as_secs_f64() - upserted;
        let stats = store.stats().await?;
        println!(
            "synthetic: {n} chunks ({dim}-d) upserted in {upserted:.1} s ({:.0} chunks/s, BM25 included), optimised in {indexed:.1} s; {} segments, {} indexed vectors, {} MiB on disk",
            n as f64 / upserted,
            stats.segments,
            stats.indexed_vectors,
            stats.bytes_on_disk >> 20
        );
    }
    let queries: Vec<_> = (0..500)
        .map(|_| {
            let text = synthetic_text(&mut rng, &vocabulary, 3, 5);
            (Some(unit_vector(&mut rng, dim)), bm25.query(&text))
        })
        .collect();
    let tenant = format!("t{PROBE_TENANT}");
    for latency in search_latencies(&store, &tenant, &queries, 5).await? {
        print_latency(&latency);
    }
    let k = 20;
    let sample: Vec<Vec<f32>> = queries
        .iter()
        .take(50)
        .filter_map(|q| q.0.clone())
        .collect();
    let recall = dense_recall(&store, &tenant, &probe, &sample, k).await?;
    println!(
        "search dense   recall@{k} against an exact scan: {recall:.3} over {} queries",
        sample.len()
    );
    Ok(())
}

/// `min + 0..span` words drawn from the vocabulary, concatenated as Chinese is written.
fn synthetic_text(rng: &mut XorShift, vocabulary: &[String], min: usize, span: u64) -> String {
    let words = min + (rng.next_u64() % span) as usize;
    (0..words)
        .map(|_| vocabulary[(rng.next_u64() % vocabulary.len() as u64) as usize].as_str())
        .collect()
}

/// Share of the exact top-k (by cosine over `probe`, the tenant's vectors) that the store's
/// dense search returns.
async fn dense_recall(
    store: &dyn KnowledgeStore,
    tenant: &str,
    probe: &[((String, u32), Vec<f32>)],
    queries: &[Vec<f32>],
    k: usize,
) -> Result<f64> {
    let (mut found, mut wanted) = (0usize, 0usize);
    for query in queries {
        let mut exact: Vec<(f32, &(String, u32))> = probe
            .iter()
            .map(|(key, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), key))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hits = store
            .search(SearchRequest {
                scope: TenantScope::only(tenant),
                query: StoreQuery::Dense(query.clone()),
                limit: k,
                candidates: k,
                with_vectors: false,
            })
            .await?;
        let returned: std::collections::HashSet<(String, u32)> = hits
            .into_iter()
            .map(|h| (h.chunk.source, h.chunk.index))
            .collect();
        wanted += k.min(exact.len());
        found += exact
            .iter()
            .take(k)
            .filter(|(_, key)| returned.contains(*key))
            .count();
    }
    Ok(if wanted == 0 {
        1.0
    } else {
        found as f64 / wanted as f64
    })
}

fn print_latency(l: &Latency) {
    println!(
        "search {:<10} top-5: p50 {:.3} ms, p99 {:.3} ms over {} queries",
        l.mode, l.p50_ms, l.p99_ms, l.queries
    );
}

/// Times the store call for each mode over the same queries, interleaved so machine noise
/// hits every mode alike.
async fn search_latencies(
    store: &dyn KnowledgeStore,
    tenant: &str,
    queries: &[(Option<Vec<f32>>, SparseVector)],
    k: usize,
) -> Result<Vec<Latency>> {
    let modes: &[&str] = if store.dense_dimension().is_some() {
        &["dense", "hybrid", "sparse"]
    } else {
        &["sparse"]
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let scope = TenantScope::only(tenant);
    for (dense, sparse) in queries {
        for (m, mode) in modes.iter().enumerate() {
            let query = match *mode {
                "dense" => StoreQuery::Dense(dense.clone().expect("dense store")),
                "sparse" => StoreQuery::Sparse(sparse.clone()),
                _ => StoreQuery::Hybrid {
                    dense: dense.clone().expect("dense store"),
                    sparse: sparse.clone(),
                    rrf_k: 60,
                },
            };
            let started = Instant::now();
            store
                .search(SearchRequest {
                    scope: scope.clone(),
                    query,
                    limit: k,
                    candidates: k * 4,
                    with_vectors: true,
                })
                .await?;
            times[m].push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(modes
        .iter()
        .zip(times)
        .map(|(mode, t)| latency(mode, t))
        .collect())
}

/// The percentiles of one mode's times.
fn latency(mode: &str, mut t: Vec<f64>) -> Latency {
    t.sort_by(f64::total_cmp);
    Latency {
        mode: mode.to_string(),
        queries: t.len(),
        p50_ms: percentile(&t, 0.50),
        p99_ms: percentile(&t, 0.99),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Words for synthetic text: the CMRC passages cut at punctuation and spaces into short
/// runs, so BM25 sees a realistic Chinese vocabulary.
fn vocabulary(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading vocabulary source {}: {e}", path.display()))?;
    let mut words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .flat_map(|w| {
            let chars: Vec<char> = w.chars().collect();
            chars
                .chunks(2)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    words.sort();
    words.dedup();
    anyhow::ensure!(!words.is_empty(), "no words in {}", path.display());
    Ok(words)
}

/// Default location of the shared corpus, beside the repository.
pub fn default_shared(rel: &str) -> PathBuf {
    PathBuf::from("../shared/data").join(rel)
}

/// Runs the whole benchmark.
pub async fn run(
    settings: &Settings,
    synthetic_chunks: usize,
    corpus_dir: Option<PathBuf>,
    keep: Option<PathBuf>,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let corpus_dir = corpus_dir.unwrap_or_else(|| default_shared("knowledge_db"));
    corpus(settings, &corpus_dir, work.path()).await?;
    if synthetic_chunks > 0 {
        synthetic(
            synthetic_chunks,
            384,
            settings.store.hnsw_ef,
            &default_shared("qa/cmrc2018_trial.json"),
            keep.as_deref().unwrap_or(work.path()),
        )
        .await?;
    }
    Ok(())
}
