//! Team knowledge channels: posts there become knowledge of the tenant. A post is one source
//! (its permalink, or `platform:tenant:channel:message`), its attachments `source#file`; an
//! edit replaces them, a delete removes them, and a repeated event changes nothing.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lore_chat::{Attachment, ChannelHistory, EventKind, IncomingEvent};
use serde::{Deserialize, Serialize};

use super::admission::KeyedLimiter;
use super::uploads::{Reservation, Spooled};
use super::{BotError, Core};
use crate::ingest::document::{DocKind, Document, Section};
use crate::ingest::load::{self, LoadLimits};
use crate::ingest::pipeline::{IngestError, SourceOutcome};
use crate::store::StoreErrorKind;

/// Which channels are knowledge channels, which sources each post became, and how far
/// each backfill got.
pub struct KnowledgeChannels {
    channels: sled::Tree,
    posts: sled::Tree,
    checkpoints: sled::Tree,
    running: Mutex<HashSet<String>>,
    pacer: KeyedLimiter<String>,
}

/// Where a backfill stopped; stored after every page so a crash resumes there.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    cursor: Option<String>,
    messages: usize,
    done: bool,
}

impl KnowledgeChannels {
    /// Knowledge-channel state in `db`; backfills read `pages_per_minute` history pages per tenant.
    pub fn new(db: &sled::Db, pages_per_minute: u32) -> Result<Self, sled::Error> {
        let rate = NonZeroU32::new(pages_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            channels: db.open_tree("knowledge_channels")?,
            posts: db.open_tree("knowledge_posts")?,
            checkpoints: db.open_tree("knowledge_backfill")?,
            running: Mutex::new(HashSet::new()),
            pacer: KeyedLimiter::per_minute(rate, NonZeroU32::MIN),
        })
    }

    /// True when the event's channel is a knowledge channel.
    pub fn is_enabled(&self, event: &IncomingEvent) -> bool {
        matches!(self.channels.contains_key(channel_id(event)), Ok(true))
    }

    /// Marks or unmarks the event's channel; true if that changed anything.
    pub fn set(&self, event: &IncomingEvent, on: bool) -> Result<bool, sled::Error> {
        let id = channel_id(event);
        let changed = if on {
            self.channels.insert(&id, &[])?.is_none()
        } else {
            self.checkpoints.remove(&id)?;
            self.channels.remove(&id)?.is_some()
        };
        Ok(changed)
    }

    /// Knowledge channels, across platforms and tenants.
    pub fn count(&self) -> usize {
        self.channels.len()
    }

    /// Knowledge channels of one tenant on one platform.
    pub fn count_of(&self, platform: &str, tenant: &str) -> usize {
        self.channels
            .scan_prefix(format!("{platform}\0{tenant}\0"))
            .count()
    }

    fn sources_of(&self, event: &IncomingEvent) -> Result<Vec<String>, BotError> {
        match self.posts.get(post_key(event))? {
            Some(v) => Ok(serde_json::from_slice(&v).unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    fn checkpoint(&self, id: &str) -> Checkpoint {
        self.checkpoints
            .get(id)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default()
    }

    /// True when the channel's backfill has not finished and none is running.
    pub fn backfill_pending(&self, event: &IncomingEvent) -> bool {
        let id = channel_id(event);
        !self.checkpoint(&id).done && !self.running.lock().expect("not poisoned").contains(&id)
    }
}

fn channel_id(event: &IncomingEvent) -> String {
    format!("{}\0{}\0{}", event.platform, event.tenant, event.channel)
}

fn post_key(event: &IncomingEvent) -> String {
    format!("{}\0{}", channel_id(event), event.message_id)
}

/// The source name of a post: its permalink, or a stable id where the platform has none.
pub fn post_source(event: &IncomingEvent) -> String {
    event.permalink.clone().unwrap_or_else(|| {
        format!(
            "{}:{}:{}:{}",
            event.platform, event.tenant, event.channel, event.message_id
        )
    })
}

/// A post's text as a document, cited with its author and time; None for an empty post.
pub fn text_document(event: &IncomingEvent, source: String, text: &str) -> Option<Document> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(Document {
        source,
        kind: DocKind::Text,
        title: None,
        sections: vec![Section {
            text: text.to_owned(),
            page: None,
            heading: Some(event.author.name.clone()),
            timestamp: event.timestamp.clone(),
        }],
    })
}

/// Downloads one attachment chunk by chunk into a temporary file, its bytes counted in
/// `reservation` (the budget of uploads in flight) and refused past `max_bytes` while it
/// streams, then loads it under `source`. Hold the reservation until the document is stored.
pub async fn load_attachment(
    core: &Core,
    reservation: &mut Reservation,
    attachment: &Attachment,
    source: String,
    max_bytes: u64,
) -> Result<Document, BotError> {
    let kind = load::kind_for_path(Path::new(&attachment.name))
        .ok_or_else(|| BotError::Unsupported(attachment.name.clone()))?;
    if attachment.size > max_bytes {
        return Err(BotError::TooLarge {
            name: attachment.name.clone(),
            limit_mib: max_bytes / (1024 * 1024),
        });
    }
    // The size the platform states is reserved up front, so two downloads never each hold
    // half of what both need; anything past it is covered as it arrives.
    reservation.reserve_more(attachment.size).await?;
    let mut spool = core
        .uploads
        .spool(&attachment.name, max_bytes, reservation)?;
    if let Err(e) = attachment.handle.download(max_bytes, &mut spool).await {
        return Err(spool.take_failure().unwrap_or_else(|| {
            BotError::Platform(format!("downloading {}: {e}", attachment.name))
        }));
    }
    let spooled = spool.finish().await?;
    load_spooled(&spooled, kind, source, core.load_limits()).await
}

/// Loads a spooled upload as a document of `kind` under `source` within `limits`: its
/// bytes are read back once, parsed on the blocking pool and dropped.
pub async fn load_spooled(
    spooled: &Spooled,
    kind: DocKind,
    source: String,
    limits: LoadLimits,
) -> Result<Document, BotError> {
    let bytes = spooled.read().await?;
    tokio::task::spawn_blocking(move || load::load_bytes_within(&source, kind, &bytes, &limits))
        .await
        .map_err(|e| BotError::Internal(format!("loader crashed: {e}")))?
        .map_err(|e| BotError::Ingest(e.to_string()))
}

/// Stores a document under `tenant` within the tenant's quota.
pub async fn store_document(
    core: &Core,
    tenant: &str,
    document: Document,
) -> Result<SourceOutcome, BotError> {
    let bytes: u64 = document.sections.iter().map(|s| s.text.len() as u64).sum();
    let source = document.source.clone();
    core.quota
        .check(core.kb.store.as_ref(), tenant, &source, bytes)
        .await?;
    let outcome = core
        .kb
        .ingestor
        .ingest_document(document, tenant)
        .await
        .map_err(|e| match e {
            // A full disk is the operator's to fix, not this document's fault.
            IngestError::Store(s) if s.kind() == StoreErrorKind::NoSpace => BotError::Store(s),
            e => BotError::Ingest(e.to_string()),
        })?;
    core.quota.record(tenant, &source, bytes)?;
    Ok(outcome)
}

/// Removes one source of `tenant` and gives its quota back; returns the chunks removed.
pub async fn remove_source(core: &Core, tenant: &str, source: &str) -> Result<usize, BotError> {
    // The name people see may be the shortened one of a source stored by an older lore.
    let stored = crate::answer::resolve_source(core.kb.store.as_ref(), tenant, source).await?;
    let source = stored.as_deref().unwrap_or(source);
    let removed = core.kb.store.delete_source(tenant, source).await?;
    core.quota.release(tenant, source)?;
    Ok(removed)
}

/// Applies a post, edit or delete in a knowledge channel; returns the chunks now stored.
pub async fn apply(core: &Core, event: &IncomingEvent) -> Result<usize, BotError> {
    let kc = &core.knowledge;
    let old = kc.sources_of(event)?;
    let mut documents = Vec::new();
    if event.kind != EventKind::Deleted {
        let source = post_source(event);
        documents.extend(text_document(event, source.clone(), &event.text));
        let max = core.max_file_bytes();
        for attachment in &event.attachments {
            let name = format!("{source}#{}", attachment.name);
            // Each file's budget is returned once it is loaded: the post's documents are text.
            let mut reservation = core.uploads.reservation();
            match load_attachment(core, &mut reservation, attachment, name, max).await {
                Ok(doc) => documents.push(doc),
                // One unreadable file must not lose the post's text.
                Err(e) => {
                    tracing::warn!(file = %attachment.name, error = %e, "knowledge attachment skipped")
                }
            }
        }
    }
    let new: Vec<String> = documents.iter().map(|d| d.source.clone()).collect();
    for gone in old.iter().filter(|s| !new.contains(s)) {
        remove_source(core, &event.tenant, gone).await?;
    }
    let mut chunks = 0;
    for doc in documents {
        if let SourceOutcome::Stored { chunks: n, .. } =
            store_document(core, &event.tenant, doc).await?
        {
            chunks += n;
        }
    }
    if new.is_empty() {
        kc.posts.remove(post_key(event))?;
    } else {
        kc.posts.insert(
            post_key(event),
            serde_json::to_vec(&new).expect("strings serialise"),
        )?;
    }
    core.kb.store.commit().await?;
    Ok(chunks)
}

/// Reads the channel's history into the knowledge base, a page at a time at the configured
/// pace, saving a checkpoint after each page so a restart resumes where it stopped.
pub async fn backfill(core: Arc<Core>, channel: IncomingEvent, history: Arc<dyn ChannelHistory>) {
    let kc = &core.knowledge;
    let id = channel_id(&channel);
    if !kc.running.lock().expect("not poisoned").insert(id.clone()) {
        return;
    }
    let mut cp = kc.checkpoint(&id);
    let limit = core.settings.backfill_max_messages;
    while !cp.done && kc.is_enabled(&channel) {
        while let Err(wait) = kc.pacer.check(&channel.tenant) {
            tokio::time::sleep(wait.0).await;
        }
        let page = match history.page(cp.cursor.as_deref()).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "knowledge backfill paused; it resumes with the next post");
                break;
            }
        };
        for event in page.events.iter().filter(|e| !e.addressing.is_addressed()) {
            if let Err(e) = apply(&core, event).await {
                tracing::warn!(message = %event.message_id, error = %e, "backfill: post skipped");
            }
        }
        cp.messages += page.events.len();
        cp.done = page.next.is_none() || cp.messages >= limit;
        cp.cursor = page.next;
        let saved = serde_json::to_vec(&cp).expect("checkpoint serialises");
        if let Err(e) = kc.checkpoints.insert(&id, saved) {
            tracing::warn!(error = %e, "backfill checkpoint not saved");
        }
    }
    tracing::info!(
        messages = cp.messages,
        done = cp.done,
        "knowledge backfill stopped"
    );
    kc.running.lock().expect("not poisoned").remove(&id);
}
