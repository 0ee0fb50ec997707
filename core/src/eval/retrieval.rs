//! Retrieval evaluation: index a set into a store of its own, ask every question, and score
//! where the gold passage or page landed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::dataset::{self, QaSet};
pub use super::results::{CaseResult, IndexConfig, LevelScores, QueryKnobs, RunConfig, RunResult};
use super::{EvalError, RetrievalArgs, metrics};
use crate::ingest::document::DocKind;
use crate::ingest::load;
use crate::kb::{KnowledgeBase, KnowledgeBaseSettings};
use crate::progress::Progress;
use crate::retrieve::{RankUnit, RetrievalSettings, Retriever, SearchMode};
use crate::store::TenantScope;

/// Tenant of the stores `lore eval` builds itself.
pub const EVAL_TENANT: &str = "eval";

/// A store ready to query, holding its temporary directory alive.
pub struct Index {
    pub kb: KnowledgeBase,
    pub tenant: String,
    pub chunks: usize,
    pub ingest_seconds: f64,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// Builds a fresh store for `config` at `at` (a new temporary directory when `None`): the
/// set's own passages, one source each, then the `corpus` files.
pub async fn build_index(
    settings: &KnowledgeBaseSettings,
    set: &QaSet,
    corpus: &[String],
    config: &IndexConfig,
    at: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Index, EvalError> {
    let (temp, dir) = match at {
        Some(dir) => {
            if dir.exists() {
                return Err(EvalError::Usage(format!(
                    "{} already exists; an evaluation store must start empty",
                    dir.display()
                )));
            }
            (None, dir.to_owned())
        }
        None => {
            let temp = tempfile::tempdir().map_err(EvalError::io(std::env::temp_dir()))?;
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    let mut settings = settings.clone();
    settings.store.data_dir = dir.clone();
    settings.ingest.chunk_size = config.chunk_size;
    settings.ingest.chunk_overlap = config.chunk_overlap;
    settings.embedding.provider = config.embedder.parse().map_err(EvalError::Usage)?;
    let kb = KnowledgeBase::open(settings).await?;
    let started = Instant::now();
    let mut chunks = 0;
    progress.begin(set.passages.len() as u64, "passages");
    for passage in &set.passages {
        // The text loader's path (cleaning included), as if the passage were a .txt file.
        let document = load::load_bytes(&passage.id, DocKind::Text, passage.text.as_bytes())
            .map_err(|e| EvalError::Ingest {
                name: passage.id.clone(),
                reason: e.to_string(),
            })?;
        let outcome = kb
            .ingestor
            .ingest_document(document, EVAL_TENANT)
            .await
            .map_err(|e| EvalError::Ingest {
                name: passage.id.clone(),
                reason: e.to_string(),
            })?;
        if let crate::ingest::pipeline::SourceOutcome::Stored { chunks: n, .. } = outcome {
            chunks += n;
        }
        progress.advance(1);
    }
    progress.end();
    if !corpus.is_empty() {
        let report = kb.ingestor.ingest(corpus, EVAL_TENANT, progress).await?;
        if let Some((name, reason)) = report.errors.into_iter().next() {
            return Err(EvalError::Ingest { name, reason });
        }
        chunks += report.chunks;
    }
    kb.store.commit().await?;
    Ok(Index {
        kb,
        tenant: EVAL_TENANT.into(),
        chunks,
        ingest_seconds: started.elapsed().as_secs_f64(),
        dir,
        _temp: temp,
    })
}

/// Opens an existing store (`--store`) with the configured embedder, for `tenant`.
pub async fn open_index(
    settings: &KnowledgeBaseSettings,
    dir: &Path,
    tenant: &str,
) -> Result<Index, EvalError> {
    if !dir.is_dir() {
        return Err(EvalError::Usage(format!(
            "--store {}: no such directory",
            dir.display()
        )));
    }
    let mut settings = settings.clone();
    settings.store.data_dir = dir.to_owned();
    let kb = KnowledgeBase::open(settings).await?;
    let scope = TenantScope::only(tenant);
    let chunks = kb
        .store
        .sources(&scope)
        .await?
        .iter()
        .map(|s| s.chunks)
        .sum();
    if chunks == 0 {
        // Scoring an empty store reports zeros that read like a broken retriever.
        return Err(EvalError::Usage(format!(
            "--store {}: no chunks for tenant {tenant:?} there (ingest into it first, or pass the tenant it was built for)",
            dir.display()
        )));
    }
    Ok(Index {
        kb,
        tenant: tenant.to_owned(),
        chunks,
        ingest_seconds: 0.0,
        dir: dir.to_owned(),
        _temp: None,
    })
}

/// Asks every question of `set` in `mode` with `retriever` (the index's own, or the same
/// store with other query settings) and scores where the gold landed, among distinct
/// sections (as `lore search` returns them) and among raw chunks, within the largest k.
pub async fn evaluate(
    index: &Index,
    retriever: &Retriever,
    set: &QaSet,
    mode: SearchMode,
    ks: &[usize],
    progress: &dyn Progress,
) -> Result<(Vec<CaseResult>, f64), EvalError> {
    let k_max = ks.iter().copied().max().unwrap_or(10).max(10);
    let scope = TenantScope::only(&index.tenant);
    let started = Instant::now();
    progress.begin(set.cases.len() as u64, "queries");
    let mut cases = Vec::with_capacity(set.cases.len());
    for case in &set.cases {
        // One embedding of the question serves both rankings.
        let encoded = retriever.encode(&case.query, Some(mode)).await?;
        let (sections, chunks) = futures::try_join!(
            retriever.search_encoded(&scope, &encoded, k_max, RankUnit::Section),
            retriever.search_encoded(&scope, &encoded, k_max, RankUnit::Chunk),
        )?;
        let rank_of = |hits: &[crate::store::Hit]| {
            let relevant: Vec<bool> = hits
                .iter()
                .map(|h| case.gold.matches(&h.chunk, &case.answers))
                .collect();
            metrics::first_relevant_rank(&relevant)
        };
        let rank = rank_of(&sections.hits);
        let scores: Vec<f32> = sections.hits.iter().map(|h| h.score).collect();
        cases.push(CaseResult {
            id: case.id.clone(),
            query: case.query.clone(),
            gold: case.gold.label(),
            rank,
            chunk_rank: rank_of(&chunks.hits),
            tied: metrics::rank_is_tied(&scores, rank),
            retrieved: sections
                .hits
                .iter()
                .map(|h| match h.chunk.page {
                    Some(p) => format!("{} p.{p}", h.chunk.source),
                    None => h.chunk.source.clone(),
                })
                .collect(),
        });
        progress.advance(1);
    }
    progress.end();
    Ok((cases, started.elapsed().as_secs_f64()))
}

/// Scores cases into a result (section level, with the chunk level beside it); ranks count
/// within the largest k searched.
pub fn score(config: RunConfig, cases: Vec<CaseResult>) -> RunResult {
    let sections = level(&config.ks, cases.iter().map(|c| c.rank).collect());
    let chunks = level(&config.ks, cases.iter().map(|c| c.chunk_rank).collect());
    RunResult {
        recall: sections.recall,
        mrr: sections.mrr,
        ndcg10: sections.ndcg10,
        config,
        cases,
        chunk_level: Some(chunks),
        answers: None,
    }
}

fn level(ks: &[usize], ranks: Vec<Option<usize>>) -> LevelScores {
    LevelScores {
        recall: ks
            .iter()
            .map(|k| (k.to_string(), metrics::recall_at(&ranks, *k)))
            .collect(),
        mrr: metrics::mrr(&ranks),
        ndcg10: metrics::ndcg_at(&ranks, 10),
    }
}

/// Loads the set, keeping the first `limit` questions; every passage is still indexed, so
/// the others stay in as distractors.
pub fn load_set(path: &Path, page_base: u32, limit: Option<usize>) -> Result<QaSet, EvalError> {
    let mut set = dataset::load(path, page_base)?;
    if let Some(n) = limit {
        set.cases.truncate(n);
    }
    Ok(set)
}

/// `lore eval retrieval`: one configuration.
pub async fn run(
    settings: &KnowledgeBaseSettings,
    args: &RetrievalArgs,
    tenant: &str,
    progress: &dyn Progress,
) -> Result<RunResult, EvalError> {
    Ok(run_keeping_index(settings, args, tenant, progress).await?.0)
}

/// Like [`run`], also handing back the index and the set so answers can be scored on the
/// same store; the index's default search mode is the run's.
pub async fn run_keeping_index(
    settings: &KnowledgeBaseSettings,
    args: &RetrievalArgs,
    tenant: &str,
    progress: &dyn Progress,
) -> Result<(RunResult, Index, QaSet), EvalError> {
    let set = load_set(&args.set.qa, args.set.page_base, args.set.limit)?;
    let mode = args.mode.unwrap_or(settings.retrieval.mode);
    let mut settings = settings.clone();
    settings.retrieval.mode = mode;
    let config = IndexConfig {
        chunk_size: args.chunk_size.unwrap_or(settings.ingest.chunk_size),
        chunk_overlap: args.chunk_overlap.unwrap_or(settings.ingest.chunk_overlap),
        embedder: args
            .embedder
            .unwrap_or(settings.embedding.provider)
            .as_str()
            .to_owned(),
    };
    let index = match &args.store {
        Some(dir) => open_index(&settings, dir, tenant).await?,
        None => build_index(&settings, &set, &args.set.corpus, &config, None, progress).await?,
    };
    let retriever = index.kb.retriever.clone();
    let (cases, search_seconds) =
        evaluate(&index, &retriever, &set, mode, &args.k, progress).await?;
    let mut run_config = run_config(
        &index,
        &retriever,
        &args.set,
        config,
        mode,
        &args.k,
        search_seconds,
    );
    run_config.store = args.store.as_ref().map(|d| d.display().to_string());
    Ok((score(run_config, cases), index, set))
}

/// The recorded configuration of a run over `index`.
pub fn run_config(
    index: &Index,
    retriever: &Retriever,
    set: &super::SetArgs,
    config: IndexConfig,
    mode: SearchMode,
    ks: &[usize],
    search_seconds: f64,
) -> RunConfig {
    let effective_mode = retriever.effective_mode(Some(mode));
    let knobs = knobs(retriever.settings());
    let reference = match effective_mode {
        SearchMode::Dense => String::new(),
        _ => format!("-ref{}", retriever.settings().reference_weight),
    };
    let label = format!(
        "{}/{}/{}/{:?}{}{reference}",
        config.chunk_size,
        config.chunk_overlap,
        match &index.kb.embedder {
            Some(_) => config.embedder.as_str(),
            None => "none",
        },
        effective_mode,
        match effective_mode {
            SearchMode::Hybrid => format!(
                "/{}-{}{}",
                knobs.fusion.as_str(),
                knobs.dense_weight,
                if knobs.cut_instructions { "" } else { "-whole" }
            ),
            SearchMode::Sparse if !knobs.cut_instructions => "/whole".into(),
            _ => String::new(),
        }
    )
    .to_lowercase();
    RunConfig {
        label,
        qa: set.qa.display().to_string(),
        corpus: set.corpus.clone(),
        store: None,
        index: config,
        embedder_id: index.kb.embedder.as_ref().map(|e| e.id().to_owned()),
        mode,
        effective_mode,
        ks: ks.to_vec(),
        chunks: index.chunks,
        ingest_seconds: index.ingest_seconds,
        search_seconds,
        query: Some(knobs),
    }
}

/// The query-time knobs of `settings`, as results.json records them.
pub fn knobs(settings: &RetrievalSettings) -> QueryKnobs {
    QueryKnobs {
        fusion: settings.fusion,
        dense_weight: settings.dense_weight,
        cut_instructions: settings.cut_instructions,
        reference_weight: Some(settings.reference_weight),
    }
}
