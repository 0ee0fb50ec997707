//! The chat bot core: everything a chat bot decides, once, for every platform. Adapters
//! submit [`IncomingEvent`]s; the [`Engine`] orders them per channel, decides whether to
//! answer, ingest or stay quiet, runs the command, remembers the turn and replies.

pub mod admission;
pub mod commands;
pub mod knowledge;
pub mod memory;
pub mod permissions;
pub mod quota;
pub mod reply;
pub mod settings;
pub mod turn;
pub mod uploads;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lore_chat::{ChatHandler, EventKind, Handled, IncomingEvent, ReplySink};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::kb::KnowledgeBase;
use crate::store::{StoreError, TenantScope};
use admission::{InboundLimiter, RetryIn};
use knowledge::KnowledgeChannels;
use memory::{ConversationStore, MemoryError, MemoryLimits, SledConversationStore};
use quota::Quota;
use reply::Streamer;
use settings::BotSettings;

/// Why a message could not be handled; the Display is what the user is told.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("{0}")]
    RateLimited(#[from] RetryIn),
    #[error("only an admin of this server or chat may {0}")]
    NotAllowed(&'static str),
    #[error("the team's knowledge quota is full: {0}")]
    Quota(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0} is not a supported file type")]
    Unsupported(String),
    #[error("{name} is larger than the {limit_mib} MiB limit")]
    TooLarge { name: String, limit_mib: u64 },
    /// Other uploads hold the whole `ingest.max_inflight_mib` budget.
    #[error("lore is busy with other uploads; try again in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error("ingesting failed: {0}")]
    Ingest(String),
    /// The assistant's own reason ("the language model failed: ..."); its kind (a vendor
    /// failure that may pass, or one that will not) reaches the HTTP status.
    #[error(transparent)]
    Answer(#[from] crate::answer::AnswerError),
    #[error("the chat platform failed: {0}")]
    Platform(String),
    #[error("the knowledge base failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Memory(#[from] MemoryError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sled::Error> for BotError {
    fn from(e: sled::Error) -> Self {
        BotError::Memory(MemoryError::Sled(e))
    }
}

/// What the bot did for one tenant, for `stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub answered: u64,
    pub refused: u64,
    pub ingested_posts: u64,
}

/// Tallies kept per tenant, so `stats` never shows one tenant another's activity.
#[derive(Default)]
pub struct Counters(Mutex<HashMap<String, Tally>>);

impl Counters {
    /// Updates `tenant`'s tally.
    pub fn record(&self, tenant: &str, update: impl FnOnce(&mut Tally)) {
        let mut tallies = self.0.lock().expect("not poisoned");
        match tallies.get_mut(tenant) {
            Some(tally) => update(tally),
            None => update(tallies.entry(tenant.to_owned()).or_default()),
        }
    }

    /// `tenant`'s tally so far.
    pub fn of(&self, tenant: &str) -> Tally {
        let tallies = self.0.lock().expect("not poisoned");
        tallies.get(tenant).copied().unwrap_or_default()
    }
}

/// The shared state every command sees.
pub struct Core {
    pub kb: Arc<KnowledgeBase>,
    pub settings: BotSettings,
    pub memory: Arc<dyn ConversationStore>,
    pub knowledge: KnowledgeChannels,
    pub quota: Quota,
    /// The byte budget of uploads and downloads in flight (`ingest.max_inflight_mib`).
    pub uploads: uploads::Uploads,
    /// None where one trusted person is the only user (the terminal).
    limiter: Option<InboundLimiter>,
    permits: Semaphore,
    /// Messages waiting for a free slot, for queue positions.
    waiting: AtomicUsize,
    pub counters: Counters,
}

impl Core {
    /// The tenants a question in `tenant` may see: the tenant, plus the operator's global
    /// knowledge base when configured. Every retrieval path of the bot goes through here.
    pub fn scope(&self, tenant: &str) -> TenantScope {
        if self.settings.include_global_knowledge {
            TenantScope::with_global(tenant, &self.settings.global_tenant)
        } else {
            TenantScope::only(tenant)
        }
    }

    /// Largest attachment accepted, from `ingest.max_file_mib`.
    pub fn max_file_bytes(&self) -> u64 {
        self.kb.settings.ingest.max_file_bytes()
    }

    /// What one file may cost to fetch and load, from `[ingest]`: every surface loads under
    /// the same limits as `lore ingest`.
    pub fn load_limits(&self) -> crate::ingest::load::LoadLimits {
        crate::ingest::load::LoadLimits::from_settings(&self.kb.settings.ingest)
    }

    /// Interval between in-place edits of a streaming answer.
    pub fn edit_interval(&self) -> Duration {
        Duration::from_millis(self.settings.edit_interval_ms)
    }

    /// Messages waiting for a free slot right now.
    pub fn backlog(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits for one of the `bot.max_concurrent_channels` answering slots, for surfaces
    /// that do not go through [`Engine::submit`] (the HTTP API); hold it while answering.
    pub async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.slot_or_queue(|_| async {}).await.0
    }

    /// Takes a free slot, or joins the queue, calls `on_queued` with the 1-based position
    /// (to tell the asker) and waits for a slot.
    async fn slot_or_queue<T, F: Future<Output = T>>(
        &self,
        on_queued: impl FnOnce(usize) -> F,
    ) -> (tokio::sync::SemaphorePermit<'_>, Option<T>) {
        if let Ok(permit) = self.permits.try_acquire() {
            return (permit, None);
        }
        let position = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        let queued = on_queued(position).await;
        let permit = self.permits.acquire().await.expect("never closed");
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        (permit, Some(queued))
    }

    /// Keys the inbound question limits remember now (users and channels seen lately).
    pub fn rate_limit_keys(&self) -> usize {
        self.limiter.as_ref().map_or(0, InboundLimiter::keys)
    }

    /// The inbound question limits: `user` (unique within the key's platform) and the
    /// conversation each have a budget per minute. Every surface asks here first.
    pub fn admit(&self, user: &str, key: &memory::ConversationKey) -> Result<(), BotError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check(&format!("{}:{user}", key.platform), &key.id())
            .map_err(|e| {
                metrics::counter!("lore_rate_limit_rejections_total", "platform" => key.platform.clone())
                    .increment(1);
                BotError::RateLimited(e)
            })
    }
}

struct Job {
    event: IncomingEvent,
    sink: Arc<dyn ReplySink>,
    done: oneshot::Sender<()>,
}

/// The conversation engine: per-channel order, a global concurrency cap, routing.
#[derive(Clone)]
pub struct Engine {
    core: Arc<Core>,
    queues: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>,
}

impl Engine {
    /// Opens the bot's memory under `<data_dir>/bot` (moved aside if corrupt) next to the
    /// knowledge base.
    pub fn open(kb: Arc<KnowledgeBase>, settings: BotSettings) -> Result<Self, BotError> {
        let s = settings;
        let db = memory::open_db(&kb.settings.store.data_dir.join("bot"))?;
        let limits = MemoryLimits {
            max_turns: s.memory_turns,
            token_budget: s.memory_token_budget,
            ttl: Duration::from_secs(s.memory_ttl_hours.saturating_mul(3600)),
            max_conversations: s.memory_max_conversations,
        };
        let memory: Arc<dyn ConversationStore> =
            Arc::new(SledConversationStore::new(db.clone(), limits)?);
        let evicted = memory.evict_idle()?;
        if evicted > 0 {
            tracing::info!(evicted, "idle conversations forgotten");
        }
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let core = Core {
            knowledge: KnowledgeChannels::new(&db, s.backfill_pages_per_minute)?,
            quota: Quota::new(
                &db,
                s.quota_bytes_per_tenant,
                s.quota_chunks_per_tenant,
                kb.settings.ingest.chunk_size,
            )?,
            limiter: Some(InboundLimiter::new(
                nz(s.questions_per_user_per_minute),
                nz(s.questions_per_channel_per_minute),
            )),
            uploads: uploads::Uploads::new(
                kb.settings.ingest.max_inflight_mib,
                Duration::from_secs(kb.settings.ingest.inflight_wait_secs),
            ),
            permits: Semaphore::new(s.max_concurrent_channels),
            waiting: AtomicUsize::new(0),
            counters: Counters::default(),
            memory,
            settings: s,
            kb,
        };
        Ok(Self {
            core: Arc::new(core),
            queues: Arc::default(),
        })
    }

    /// The same engine without per-user and per-channel question limits, for a surface
    /// with one trusted local user (`lore chat`). Call before submitting anything.
    pub fn without_rate_limits(mut self) -> Self {
        if let Some(core) = Arc::get_mut(&mut self.core) {
            core.limiter = None;
        }
        self
    }

    /// The shared state (for surfaces that need the settings or memory).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Flushes memory; call before exiting.
    pub async fn shutdown(&self) -> Result<(), BotError> {
        self.core.memory.flush().await?;
        Ok(())
    }

    /// Runs one channel's queue until it is empty, then retires it.
    async fn run_channel(
        core: Arc<Core>,
        queues: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>,
        id: String,
        mut rx: mpsc::UnboundedReceiver<Job>,
    ) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    // Senders send under the map lock, so an empty queue seen under it
                    // stays empty once the entry is gone.
                    let mut map = queues.lock().expect("not poisoned");
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            map.remove(&id);
                            return;
                        }
                    }
                }
            };
            process(&core, job.event, job.sink).await;
            let _ = job.done.send(());
        }
    }
}

impl ChatHandler for Engine {
    fn submit(&self, event: IncomingEvent, sink: Arc<dyn ReplySink>) -> Handled {
        let (done, handled) = oneshot::channel();
        let id = memory::ConversationKey::of(&event).id();
        let job = Job { event, sink, done };
        let mut map = self.queues.lock().expect("not poisoned");
        let job = match map.get(&id) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return handled,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if tx.send(job).is_err() {
            unreachable!("the receiver is alive until the task below ends");
        }
        map.insert(id.clone(), tx);
        tokio::spawn(Self::run_channel(
            self.core.clone(),
            self.queues.clone(),
            id,
            rx,
        ));
        handled
    }
}

/// Handles one event: knowledge upkeep, then an answer or a reason if the bot is addressed.
async fn process(core: &Arc<Core>, event: IncomingEvent, sink: Arc<dyn ReplySink>) {
    let addressed = event.addressing.is_addressed() && event.kind == EventKind::Posted;
    let queue_sink = &sink;
    let (permit, notice) = core
        .slot_or_queue(|position| async move {
            if !addressed {
                return None;
            }
            queue_sink
                .send(&format!("⏳ You are number {position} in the queue."))
                .await
                .ok()
        })
        .await;
    let notice = notice.flatten();
    if core.knowledge.is_enabled(&event) {
        keep_knowledge(core, &event, &sink).await;
    }
    if addressed {
        let mut out = Streamer::new(sink.clone(), notice, core.edit_interval());
        let text = match answer(core, &event, &sink, &mut out).await {
            Ok(text) => {
                core.counters.record(&event.tenant, |t| t.answered += 1);
                text
            }
            Err(e) => {
                core.counters.record(&event.tenant, |t| t.refused += 1);
                format!("⚠️ {e}")
            }
        };
        if let Err(e) = out.finish(&text).await {
            tracing::warn!(error = %e, "could not deliver a reply");
        }
    }
    drop(permit);
}

/// Ingests, replaces or removes a knowledge-channel post, and resumes an unfinished backfill.
async fn keep_knowledge(core: &Arc<Core>, event: &IncomingEvent, sink: &Arc<dyn ReplySink>) {
    if event.kind != EventKind::Posted || !event.addressing.is_addressed() {
        match knowledge::apply(core, event).await {
            Ok(_) => {
                core.counters
                    .record(&event.tenant, |t| t.ingested_posts += 1);
            }
            Err(e) => {
                tracing::warn!(message = %event.message_id, error = %e, "knowledge post not stored")
            }
        }
    }
    if core.knowledge.backfill_pending(event)
        && let Some(history) = sink.history()
    {
        tokio::spawn(knowledge::backfill(core.clone(), event.clone(), history));
    }
}

/// Rate limit, then the command; returns the reply's final text (a streaming answer shows
/// its progress through `out` first).
async fn answer(
    core: &Arc<Core>,
    event: &IncomingEvent,
    sink: &Arc<dyn ReplySink>,
    out: &mut Streamer,
) -> Result<String, BotError> {
    let key = memory::ConversationKey::of(event);
    core.admit(&event.author.id, &key)?;
    let command = commands::Command::parse(event)?;
    let ctx = commands::Ctx {
        core,
        event,
        key: &key,
        sink,
    };
    command.run(&ctx, out).await
}
