//! Writing one document so that a crash at any moment leaves it either whole or absent:
//! its old chunks go first, then chunks 1..n, and chunk 0, which carries the hash that
//! decides "unchanged", goes in last. A source without chunk 0 reads as not stored and is
//! ingested again in full, replacing whatever part of it landed.

#[cfg(test)]
use std::sync::Arc;

use super::{IngestError, IngestReport, Ingestor, SourceOutcome, off_runtime};
use crate::embed::bm25::Bm25Encoder;
use crate::ingest::document::Document;
use crate::ingest::split::Splitter;
use crate::store::{Chunk, SparseVector, StoreError, StoredChunk};

/// Chunks per upsert call.
const WRITE_BATCH: usize = 256;

/// The steps of storing a document, where tests inject a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The source's old chunks are deleted.
    Deleted,
    /// One more batch of chunks 1..n is written.
    Batch,
    /// Chunks 1..n are written; chunk 0 is next.
    BeforeHead,
    /// The source is written; the flush that makes it durable is next.
    BeforeFlush,
}

/// Called at each step; an error stops the ingest there, as a crash would (tests only).
#[cfg(test)]
pub(crate) type FaultHook = Arc<dyn Fn(Step) -> Result<(), StoreError> + Send + Sync>;

impl Ingestor {
    /// Injects `hook` at every step of storing a document.
    #[cfg(test)]
    pub(crate) fn with_fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    #[cfg(test)]
    fn checkpoint(&self, step: Step) -> Result<(), StoreError> {
        match &self.fault {
            Some(hook) => hook(step),
            None => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn checkpoint(&self, _step: Step) -> Result<(), StoreError> {
        Ok(())
    }

    /// The commit point: everything written so far survives a kill.
    pub(super) async fn make_durable(&self) -> Result<(), StoreError> {
        self.checkpoint(Step::BeforeFlush)?;
        self.store.flush().await
    }

    /// Splits, embeds and writes one document, replacing its previous chunks.
    pub(super) async fn store_document(
        &self,
        document: Document,
        tenant: &str,
        source_hash: String,
        report: &mut IngestReport,
    ) -> Result<SourceOutcome, IngestError> {
        let source = document.source.clone();
        let (splitter, bm25, owner) = (self.splitter.clone(), self.bm25.clone(), tenant.to_owned());
        let (chunks, sparse, pages) = off_runtime(&source, "splitting", move || {
            split_and_encode(&splitter, &bm25, &document, &owner, &source_hash)
        })
        .await?;
        let dense = self.embed(&source, &chunks, report).await?;
        let count = chunks.len();
        let stored: Vec<StoredChunk> = chunks
            .into_iter()
            .zip(sparse)
            .zip(dense.into_iter().map(Some).chain(std::iter::repeat(None)))
            .map(|((chunk, sparse), dense)| StoredChunk {
                chunk,
                dense,
                sparse,
            })
            .collect();
        self.write_source(tenant, &source, stored).await?;
        Ok(SourceOutcome::Stored {
            pages,
            chunks: count,
        })
    }

    /// Replaces a source's chunks, head last (see the module comment).
    async fn write_source(
        &self,
        tenant: &str,
        source: &str,
        mut chunks: Vec<StoredChunk>,
    ) -> Result<(), StoreError> {
        // Old chunks go first so a shorter new version leaves no stale tail.
        self.store.delete_source(tenant, source).await?;
        self.checkpoint(Step::Deleted)?;
        let rest = if chunks.is_empty() {
            Vec::new()
        } else {
            chunks.split_off(1)
        };
        for batch in chunked(rest, WRITE_BATCH) {
            self.store.upsert(batch).await?;
            self.checkpoint(Step::Batch)?;
        }
        self.checkpoint(Step::BeforeHead)?;
        self.store.upsert(chunks).await
    }
}

/// The chunks of a document with their BM25 vectors, and its page count.
fn split_and_encode(
    splitter: &Splitter,
    bm25: &Bm25Encoder,
    document: &Document,
    tenant: &str,
    source_hash: &str,
) -> (Vec<Chunk>, Vec<SparseVector>, usize) {
    let mut chunks = Vec::new();
    let mut pages = 0;
    for section in &document.sections {
        if section.page.is_some() {
            pages += 1;
        }
        for piece in splitter.split(document.kind, section) {
            chunks.push(Chunk {
                tenant: tenant.to_owned(),
                source: document.source.clone(),
                index: chunks.len() as u32,
                text: piece.text,
                page: section.page,
                heading: section.heading.clone(),
                timestamp: section.timestamp.clone(),
                title: document.title.clone(),
                start: piece.start,
                end: piece.end,
                source_hash: source_hash.to_owned(),
            });
        }
    }
    let sparse = chunks.iter().map(|c| bm25.document(&c.text)).collect();
    (chunks, sparse, pages)
}

fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut iter = items.into_iter().peekable();
    while iter.peek().is_some() {
        out.push(iter.by_ref().take(size).collect());
    }
    out
}
