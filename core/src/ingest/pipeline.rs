//! The ingest pipeline: walk inputs, skip unchanged sources, load, split, embed, store.
//! One bad file costs only itself: its error is recorded and the rest go in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::IngestSettings;
use super::document::Document;
use super::load::{self, LoadError, LoadLimits};
use super::split::Splitter;
use crate::embed::Embedder;
use crate::embed::bm25::{BM25_ID, Bm25Encoder};
use crate::progress::Progress;
use crate::store::{Chunk, KnowledgeStore, StoreError};

#[cfg(test)]
mod crash_tests;
mod write;

/// An ingest run makes its finished sources durable this often, so a kill loses at most
/// this much finished work. A flush costs ~0.2 s on a busy disk: per file, a folder of tiny
/// files would take several times as long.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What an ingest run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestReport {
    /// Sources stored (new or changed).
    pub files: usize,
    pub pages: usize,
    pub chunks: usize,
    /// Sources skipped because their content and settings are unchanged.
    pub unchanged: usize,
    /// Paths skipped because their type is not supported.
    pub unsupported: Vec<String>,
    /// Sources that failed, with the reason.
    pub errors: Vec<(String, String)>,
    pub seconds: f64,
    /// Time spent in the dense embedder.
    pub embed_seconds: f64,
}

/// Outcome of ingesting one source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceOutcome {
    Stored { pages: usize, chunks: usize },
    Unchanged,
}

/// Why one source could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("embedding {name}: {reason}")]
    Embed { name: String, reason: String },
}

/// Turns sources into stored chunks for one store and embedder.
pub struct Ingestor {
    store: Arc<dyn KnowledgeStore>,
    embedder: Option<Arc<dyn Embedder>>,
    bm25: Arc<Bm25Encoder>,
    splitter: Arc<Splitter>,
    limits: LoadLimits,
    embed_batch: usize,
    /// What besides the content shapes the stored chunks (see `content_hash`).
    hash_salt: Arc<str>,
    flush_every: Duration,
    /// Faults injected at the steps of storing a document (tests only).
    #[cfg(test)]
    fault: Option<write::FaultHook>,
}

/// An input after expanding directories: a file (with the name it is stored and cited
/// under) or a URL.
enum Input {
    File { path: PathBuf, name: String },
    Url(String),
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn KnowledgeStore>,
        embedder: Option<Arc<dyn Embedder>>,
        bm25: Arc<Bm25Encoder>,
        settings: &IngestSettings,
    ) -> Self {
        let splitter = Splitter::new(settings.chunk_size, settings.chunk_overlap);
        let mut salt = format!("{}{BM25_ID}", splitter.signature());
        if let Some(embedder) = &embedder {
            salt.push_str(embedder.id());
        }
        Self {
            store,
            embedder,
            bm25,
            splitter: Arc::new(splitter),
            hash_salt: salt.into(),
            flush_every: FLUSH_EVERY,
            #[cfg(test)]
            fault: None,
            limits: LoadLimits::from_settings(settings),
            embed_batch: settings.embed_batch,
        }
    }

    /// Ingests files, directories (recursively) and http(s) URLs into `tenant`, flushing
    /// every few sources so a crash keeps what was finished, then builds indexes and
    /// flushes, reporting a step per input to `progress`.
    pub async fn ingest(
        &self,
        inputs: &[String],
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<IngestReport, StoreError> {
        let started = Instant::now();
        let mut report = IngestReport::default();
        let expanded = expand(inputs, &mut report);
        progress.begin(expanded.len() as u64, "files");
        let mut last_flush = Instant::now();
        for input in expanded {
            let (source, outcome) = match input {
                Input::File { path, name } => {
                    progress.message(&name);
                    let outcome = self.ingest_file(&path, &name, tenant, &mut report).await;
                    let outcome = match outcome {
                        Ok(done) => self
                            .forget_legacy_name(&path, &name, tenant)
                            .await
                            .map(|()| done),
                        Err(e) => Err(e),
                    };
                    (name, outcome)
                }
                Input::Url(url) => {
                    progress.message(&url);
                    let outcome = self.ingest_url(&url, tenant, &mut report).await;
                    (url, outcome)
                }
            };
            match outcome {
                Ok(SourceOutcome::Stored { pages, chunks }) => {
                    report.files += 1;
                    report.pages += pages;
                    report.chunks += chunks;
                    tracing::debug!(source = %source, chunks, "source stored");
                    if last_flush.elapsed() >= self.flush_every {
                        self.make_durable().await?;
                        tracing::debug!(sources = report.files, "ingest flushed");
                        last_flush = Instant::now();
                    }
                }
                Ok(SourceOutcome::Unchanged) => report.unchanged += 1,
                Err(IngestError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(source = %source, error = %e, "source not ingested");
                    report.errors.push((source, e.to_string()));
                }
            }
            progress.advance(1);
        }
        progress.end();
        self.store.commit().await?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    async fn ingest_file(
        &self,
        path: &Path,
        source: &str,
        tenant: &str,
        report: &mut IngestReport,
    ) -> Result<SourceOutcome, IngestError> {
        let kind = load::kind_for_path(path).expect("expand keeps supported files only");
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|err| LoadError::Io {
                source: source.to_owned(),
                err,
            })?
            .len();
        if size > self.limits.max_file_bytes {
            return Err(LoadError::TooLarge {
                source: source.to_owned(),
                size,
                limit: self.limits.max_file_bytes,
            }
            .into());
        }
        let bytes = tokio::fs::read(path).await.map_err(|err| LoadError::Io {
            source: source.to_owned(),
            err,
        })?;
        let salt = self.hash_salt.clone();
        let (bytes, hash) = off_runtime(source, "hashing", move || {
            let hash = content_hash(&bytes, &salt);
            (bytes, hash)
        })
        .await?;
        if self.store.source_hash(tenant, source).await?.as_deref() == Some(hash.as_str()) {
            return Ok(SourceOutcome::Unchanged);
        }
        let (name, limits) = (source.to_owned(), self.limits.clone());
        let document = off_runtime(source, "loader", move || {
            load::load_bytes_within(&name, kind, &bytes, &limits)
        })
        .await??;
        self.store_document(document, tenant, hash, report).await
    }

    /// Before names were relative, a file was stored under its path as given (often
    /// absolute). Once it is stored under its new name, the copy under the old one goes, so
    /// ingesting a folder again after an upgrade leaves no duplicates.
    async fn forget_legacy_name(
        &self,
        path: &Path,
        name: &str,
        tenant: &str,
    ) -> Result<(), IngestError> {
        // Only absolute names: a relative one may as well be another file's current name.
        let legacy = legacy_source_name(path);
        if legacy != name
            && Path::new(&legacy).is_absolute()
            && self.store.source_hash(tenant, &legacy).await?.is_some()
        {
            let removed = self.store.delete_source(tenant, &legacy).await?;
            tracing::info!(source = %name, removed, "replaced the copy stored under the file's old path name");
        }
        Ok(())
    }

    async fn ingest_url(
        &self,
        url: &str,
        tenant: &str,
        report: &mut IngestReport,
    ) -> Result<SourceOutcome, IngestError> {
        let document = load::fetch_url(url, &self.limits).await?;
        self.store_if_changed(document, tenant, report).await
    }

    /// Stores an already-loaded document (a chat post, an attachment) under `tenant`,
    /// replacing an older version of the same source. Unchanged content is skipped. It is
    /// durable once the caller commits or flushes the store (once per request); a crash
    /// before that leaves the source absent or incomplete, and the same request stores it.
    pub async fn ingest_document(
        &self,
        document: Document,
        tenant: &str,
    ) -> Result<SourceOutcome, IngestError> {
        self.store_if_changed(document, tenant, &mut IngestReport::default())
            .await
    }

    async fn store_if_changed(
        &self,
        document: Document,
        tenant: &str,
        report: &mut IngestReport,
    ) -> Result<SourceOutcome, IngestError> {
        let result = async {
            let salt = self.hash_salt.clone();
            let (document, hash) = off_runtime(&document.source.clone(), "hashing", move || {
                let hash = document_hash(&document, &salt);
                (document, hash)
            })
            .await?;
            if self
                .store
                .source_hash(tenant, &document.source)
                .await?
                .as_deref()
                == Some(hash.as_str())
            {
                return Ok(SourceOutcome::Unchanged);
            }
            self.store_document(document, tenant, hash, report).await
        }
        .await;
        let outcome = match &result {
            Ok(SourceOutcome::Stored { chunks, .. }) => {
                metrics::counter!("lore_ingest_chunks_total").increment(*chunks as u64);
                "stored"
            }
            Ok(SourceOutcome::Unchanged) => "unchanged",
            Err(_) => "failed",
        };
        metrics::counter!("lore_ingest_sources_total", "outcome" => outcome).increment(1);
        result
    }

    /// Dense vectors for every chunk, or none without an embedder.
    async fn embed(
        &self,
        source: &str,
        chunks: &[Chunk],
        report: &mut IngestReport,
    ) -> Result<Vec<Vec<f32>>, IngestError> {
        let Some(embedder) = &self.embedder else {
            return Ok(Vec::new());
        };
        let started = Instant::now();
        let mut vectors = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(self.embed_batch) {
            let texts = batch.iter().map(|c| c.text.clone()).collect();
            let embedded =
                embedder
                    .embed_documents(texts)
                    .await
                    .map_err(|e| IngestError::Embed {
                        name: source.to_owned(),
                        reason: e.to_string(),
                    })?;
            if embedded.len() != batch.len() {
                return Err(IngestError::Embed {
                    name: source.to_owned(),
                    reason: format!(
                        "embedder returned {} vectors for {} chunks",
                        embedded.len(),
                        batch.len()
                    ),
                });
            }
            vectors.extend(embedded);
        }
        report.embed_seconds += started.elapsed().as_secs_f64();
        Ok(vectors)
    }
}

/// Content plus everything that shapes the stored chunks (`salt`: the chunking, BM25 and
/// embedder ids), so changing the chunking or the embedder re-ingests unchanged files.
fn content_hash(bytes: &[u8], salt: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.update(salt.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

fn document_hash(document: &Document, salt: &str) -> String {
    let mut bytes = Vec::with_capacity(document.char_count() * 3);
    for section in &document.sections {
        for part in [
            section.text.as_str(),
            section.heading.as_deref().unwrap_or(""),
            section.timestamp.as_deref().unwrap_or(""),
        ] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        bytes.extend_from_slice(&section.page.unwrap_or(0).to_le_bytes());
    }
    content_hash(&bytes, salt)
}

/// Runs CPU-heavy work of one source (hashing, loading, splitting) on a blocking thread,
/// so a big file never stalls the async runtime (health checks, chat replies).
async fn off_runtime<T: Send + 'static>(
    source: &str,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Corrupt {
            source: source.to_owned(),
            reason: format!("{what} crashed: {e}"),
        })
}

/// Expands directories recursively, keeps supported files and URLs, and records the rest.
fn expand(inputs: &[String], report: &mut IngestReport) -> Vec<Input> {
    let mut out = Vec::new();
    for input in inputs {
        if input.starts_with("http://") || input.starts_with("https://") {
            out.push(Input::Url(input.clone()));
            continue;
        }
        let path = Path::new(input);
        if !path.exists() {
            report
                .errors
                .push((input.clone(), "no such file or directory".into()));
            continue;
        }
        let is_dir = path.is_dir();
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(path)
            .follow_links(true)
            .into_iter()
            .filter_map(|entry| match entry {
                Ok(e) if e.file_type().is_file() => Some(e.into_path()),
                Ok(_) => None,
                Err(e) => {
                    report.errors.push((input.clone(), e.to_string()));
                    None
                }
            })
            .filter(|p| !is_hidden(p))
            .collect();
        files.sort();
        for file in files {
            let name = if is_dir {
                source_name(path, &file)
            } else {
                file_name(&file)
            };
            if load::kind_for_path(&file).is_some() {
                out.push(Input::File { path: file, name });
            } else {
                report.unsupported.push(name);
            }
        }
    }
    out
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The name a file found under the folder `root` is stored and cited under: its path
/// relative to `root`, with `/` between components, so no server path reaches a reply.
pub fn source_name(root: &Path, file: &Path) -> String {
    match file.strip_prefix(root) {
        Ok(relative) if relative.components().next().is_some() => relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => file_name(file),
    }
}

/// The name a file given on its own is stored under: its file name.
pub fn file_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.to_string_lossy().into_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The name lore stored a file under before names were relative: its path as given,
/// without a leading `./`.
fn legacy_source_name(path: &Path) -> String {
    let shown = path.to_string_lossy();
    shown.strip_prefix("./").unwrap_or(&shown).to_owned()
}
