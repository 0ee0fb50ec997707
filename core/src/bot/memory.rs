//! Conversation memory: one bounded conversation per (platform, tenant, channel, thread),
//! durable in sled. sled 0.34 is unmaintained with crash-corruption reports, so it stays
//! behind [`ConversationStore`] and a directory that fails to open is moved aside.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lore_chat::IncomingEvent;
use serde::{Deserialize, Serialize};

use crate::llm::estimate_tokens;

/// Why memory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("conversation memory: {0}")]
    Sled(#[from] sled::Error),
    #[error("conversation memory: a stored turn is unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    /// Another process has the memory open (sled locks its directory), in the words of a
    /// held data dir (`store::embedded::InUse`).
    #[error(
        "conversation memory at {} is in use by another lore process; one lore process uses \
         a data dir at a time (nothing was changed): stop that one, or send the request to its \
         HTTP API",
        .0.display()
    )]
    InUse(PathBuf),
}

/// Which conversation a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub platform: String,
    pub tenant: String,
    pub channel: String,
    pub thread: Option<String>,
}

impl ConversationKey {
    /// The conversation of an event; a DM is keyed by its user, whatever the platform calls
    /// the channel.
    pub fn of(event: &IncomingEvent) -> Self {
        let channel = if event.addressing.direct {
            format!("dm:{}", event.author.id)
        } else {
            event.channel.clone()
        };
        Self {
            platform: event.platform.clone(),
            tenant: event.tenant.clone(),
            channel,
            thread: event.thread.clone(),
        }
    }

    /// A stable string id (NUL-separated, so no part can forge another).
    pub fn id(&self) -> String {
        format!(
            "{}{}\0{}",
            tenant_prefix(&self.platform, &self.tenant),
            self.channel,
            self.thread.as_deref().unwrap_or("")
        )
    }
}

/// One remembered message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Display name of the speaker, so a shared channel keeps who asked what.
    pub speaker: String,
    pub is_bot: bool,
    pub text: String,
    /// Unix seconds.
    pub at: u64,
}

impl Turn {
    /// A turn stamped now.
    pub fn now(speaker: &str, is_bot: bool, text: &str) -> Self {
        Self {
            speaker: speaker.to_owned(),
            is_bot,
            text: text.to_owned(),
            at: unix_now(),
        }
    }
}

/// How much a conversation keeps.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    pub max_turns: usize,
    pub token_budget: u32,
    pub ttl: Duration,
    /// Conversations kept per platform and tenant; the least recently used go first.
    pub max_conversations: usize,
}

/// Where conversations live.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The remembered turns, oldest first (empty for an unknown or expired conversation).
    fn load(&self, key: &ConversationKey) -> Result<Vec<Turn>, MemoryError>;
    /// Appends turns, then drops the oldest beyond the turn and token limits.
    fn append(&self, key: &ConversationKey, turns: &[Turn]) -> Result<(), MemoryError>;
    /// Forgets one conversation; true if there was one.
    fn reset(&self, key: &ConversationKey) -> Result<bool, MemoryError>;
    /// Forgets conversations idle longer than the TTL; returns how many.
    fn evict_idle(&self) -> Result<usize, MemoryError>;
    /// Conversations remembered, across platforms and tenants (the operator's figure).
    fn len(&self) -> usize;
    /// Conversations remembered for one tenant on one platform (the figure a tenant may see).
    fn len_of(&self, platform: &str, tenant: &str) -> usize;
    /// True when nothing is remembered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes every write so far durable.
    async fn flush(&self) -> Result<(), MemoryError>;
}

/// Opens the bot's sled database; a directory that fails to open is renamed to
/// `<dir>.corrupt-<unix time>` and a fresh one started, so the bot still comes up.
pub fn open_db(dir: &Path) -> Result<sled::Db, MemoryError> {
    match sled::open(dir) {
        Ok(db) => Ok(db),
        // A lock held by another process, a permission or a full disk is not corruption:
        // moving the directory aside would lose every conversation for nothing.
        Err(e) if is_held(&e) => Err(MemoryError::InUse(dir.to_owned())),
        Err(e) if !is_corruption(&e) => Err(e.into()),
        Err(e) => {
            let aside = PathBuf::from(format!("{}.corrupt-{}", dir.display(), unix_now()));
            tracing::error!(
                dir = %dir.display(),
                moved_to = %aside.display(),
                error = %e,
                "CONVERSATION MEMORY IS CORRUPT: moved it aside and starting with empty memory \
                 (the knowledge base is untouched)"
            );
            std::fs::rename(dir, &aside).map_err(sled::Error::Io)?;
            Ok(sled::open(dir)?)
        }
    }
}

/// Whether sled could not lock the directory: another process has it open. sled 0.34 says
/// so only in the text of an `Other` I/O error.
fn is_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// Whether sled's error means the files are unreadable (rather than unreachable).
fn is_corruption(e: &sled::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => true,
        sled::Error::Io(io) => {
            matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof)
        }
        sled::Error::CollectionNotFound(_) | sled::Error::ReportableBug(_) => false,
    }
}

/// Conversations in sled: one tree per conversation with big-endian sequence keys, and a
/// `conversations` tree of last activity per conversation: the Unix time (for the TTL) and a
/// sled sequence number (for least-recently-used order within a second), big-endian.
pub struct SledConversationStore {
    db: sled::Db,
    activity: sled::Tree,
    limits: MemoryLimits,
}

impl SledConversationStore {
    /// Conversations in `db` (see [`open_db`]).
    pub fn new(db: sled::Db, limits: MemoryLimits) -> Result<Self, MemoryError> {
        let activity = db.open_tree("conversations")?;
        Ok(Self {
            db,
            activity,
            limits,
        })
    }

    fn tree(&self, key: &ConversationKey) -> Result<sled::Tree, MemoryError> {
        Ok(self.db.open_tree(tree_name(&key.id()))?)
    }

    fn expired(&self, last: u64) -> bool {
        unix_now().saturating_sub(last) > self.limits.ttl.as_secs()
    }

    fn last_active(&self, id: &str) -> Result<Option<u64>, MemoryError> {
        Ok(self.activity.get(id.as_bytes())?.map(|v| decode_u64(&v)))
    }

    /// Makes room for one more conversation of `key`'s platform and tenant: past
    /// `max_conversations`, the least recently used ones are forgotten. Returns how many.
    fn make_room(&self, key: &ConversationKey) -> Result<usize, MemoryError> {
        let prefix = format!("{}\0{}\0", key.platform, key.tenant);
        let mut others: Vec<((u64, u64), sled::IVec)> = Vec::new();
        for item in self.activity.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            others.push((recency(&v), k));
        }
        let limit = self.limits.max_conversations.max(1);
        if others.len() < limit {
            return Ok(0);
        }
        others.sort_unstable_by_key(|(recency, _)| *recency);
        let excess = others.len() + 1 - limit;
        for (_, id) in others.iter().take(excess) {
            self.drop_conversation(&String::from_utf8_lossy(id))?;
        }
        metrics::counter!("lore_memory_evicted_total", "platform" => key.platform.clone())
            .increment(excess as u64);
        Ok(excess)
    }

    fn drop_conversation(&self, id: &str) -> Result<bool, MemoryError> {
        let existed = self.activity.remove(id.as_bytes())?.is_some();
        self.db.drop_tree(tree_name(id))?;
        Ok(existed)
    }

    /// Drops the oldest turns beyond the turn limit and the token budget (the newest turn
    /// is always kept, even if it alone is over budget).
    fn trim(&self, tree: &sled::Tree) -> Result<(), MemoryError> {
        let mut entries: Vec<(sled::IVec, u32)> = Vec::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let turn: Turn = serde_json::from_slice(&v)?;
            entries.push((k, estimate_tokens(&turn.text) + 4));
        }
        let mut tokens: u32 = entries.iter().map(|e| e.1).sum();
        let mut keep = entries.len();
        for (k, cost) in &entries {
            if keep <= 1 || (keep <= self.limits.max_turns && tokens <= self.limits.token_budget) {
                break;
            }
            tree.remove(k)?;
            tokens -= cost;
            keep -= 1;
        }
        Ok(())
    }
}

#[async_trait]
impl ConversationStore for SledConversationStore {
    fn load(&self, key: &ConversationKey) -> Result<Vec<Turn>, MemoryError> {
        let id = key.id();
        match self.last_active(&id)? {
            None => return Ok(Vec::new()),
            Some(last) if self.expired(last) => {
                self.drop_conversation(&id)?;
                return Ok(Vec::new());
            }
            Some(_) => {}
        }
        self.tree(key)?
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn append(&self, key: &ConversationKey, turns: &[Turn]) -> Result<(), MemoryError> {
        let id = key.id();
        if self.activity.get(id.as_bytes())?.is_none() {
            self.make_room(key)?;
        }
        let tree = self.tree(key)?;
        for turn in turns {
            let seq = self.db.generate_id()?;
            tree.insert(seq.to_be_bytes(), serde_json::to_vec(turn)?)?;
        }
        self.trim(&tree)?;
        let mut stamp = [0u8; 16];
        stamp[..8].copy_from_slice(&unix_now().to_be_bytes());
        stamp[8..].copy_from_slice(&self.db.generate_id()?.to_be_bytes());
        self.activity.insert(id.as_bytes(), &stamp)?;
        Ok(())
    }

    fn reset(&self, key: &ConversationKey) -> Result<bool, MemoryError> {
        self.drop_conversation(&key.id())
    }

    fn evict_idle(&self) -> Result<usize, MemoryError> {
        let mut idle = Vec::new();
        for item in self.activity.iter() {
            let (k, v) = item?;
            if self.expired(decode_u64(&v)) {
                idle.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        for id in &idle {
            self.drop_conversation(id)?;
        }
        Ok(idle.len())
    }

    fn len(&self) -> usize {
        self.activity.len()
    }

    fn len_of(&self, platform: &str, tenant: &str) -> usize {
        self.activity
            .scan_prefix(tenant_prefix(platform, tenant))
            .count()
    }

    async fn flush(&self) -> Result<(), MemoryError> {
        // `flush_async` was seen to never complete under many concurrent callers (the
        // bot_core bench hung), so the blocking flush runs on the blocking pool instead.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::ReportableBug(e.to_string()))??;
        Ok(())
    }
}

/// The start of every [`ConversationKey::id`] of one tenant on one platform.
fn tenant_prefix(platform: &str, tenant: &str) -> String {
    format!("{platform}\0{tenant}\0")
}

fn tree_name(id: &str) -> String {
    format!("conv\0{id}")
}

/// The Unix time of an activity stamp (its first 8 bytes).
fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The order of last use of an activity stamp: its time, then its sequence number (0 in a
/// stamp written before sequence numbers were kept).
fn recency(bytes: &[u8]) -> (u64, u64) {
    let seq = bytes
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    (decode_u64(bytes), seq)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(channel: &str) -> ConversationKey {
        ConversationKey {
            platform: "test".into(),
            tenant: "t".into(),
            channel: channel.into(),
            thread: None,
        }
    }

    fn store(dir: &Path, limits: MemoryLimits) -> SledConversationStore {
        SledConversationStore::new(open_db(dir).unwrap(), limits).unwrap()
    }

    const LIMITS: MemoryLimits = MemoryLimits {
        max_turns: 3,
        token_budget: 1000,
        ttl: Duration::from_secs(3600),
        max_conversations: 1000,
    };

    #[test]
    fn oldest_turns_are_dropped_beyond_the_turn_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir.path().join("m"), LIMITS);
        for i in 0..5 {
            s.append(&key("c"), &[Turn::now("ann", false, &format!("q{i}"))])
                .unwrap();
        }
        let texts: Vec<String> = s
            .load(&key("c"))
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(texts, ["q2", "q3", "q4"]);
        assert!(s.load(&key("other")).unwrap().is_empty());
    }

    #[test]
    fn the_token_budget_drops_old_long_turns() {
        let dir = tempfile::tempdir().unwrap();
        let limits = MemoryLimits {
            max_turns: 10,
            token_budget: 40,
            ..LIMITS
        };
        let s = store(&dir.path().join("m"), limits);
        s.append(&key("c"), &[Turn::now("ann", false, &"x".repeat(200))])
            .unwrap();
        s.append(&key("c"), &[Turn::now("bob", false, "short")])
            .unwrap();
        let turns = s.load(&key("c")).unwrap();
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].speaker, "bob");
    }

    #[test]
    fn idle_conversations_expire() {
        let dir = tempfile::tempdir().unwrap();
        let limits = MemoryLimits {
            ttl: Duration::ZERO,
            ..LIMITS
        };
        let s = store(&dir.path().join("m"), limits);
        s.append(&key("c"), &[Turn::now("ann", false, "hi")])
            .unwrap();
        // Stamp the conversation as two seconds old.
        s.activity
            .insert(key("c").id().as_bytes(), &(unix_now() - 2).to_be_bytes())
            .unwrap();
        assert_eq!(s.evict_idle().unwrap(), 1);
        assert!(s.load(&key("c")).unwrap().is_empty());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn conversations_are_capped_per_platform_and_tenant_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let limits = MemoryLimits {
            max_conversations: 3,
            ..LIMITS
        };
        let s = store(&dir.path().join("m"), limits);
        let in_tenant = |tenant: &str, channel: &str| ConversationKey {
            tenant: tenant.into(),
            ..key(channel)
        };
        // Another tenant's conversation is not counted against this tenant's cap.
        s.append(&in_tenant("other", "x"), &[Turn::now("zed", false, "x")])
            .unwrap();
        for i in 0..5 {
            s.append(&key(&format!("c{i}")), &[Turn::now("ann", false, "hi")])
                .unwrap();
        }
        assert_eq!(s.len(), 4);
        for gone in ["c0", "c1"] {
            assert!(s.load(&key(gone)).unwrap().is_empty(), "{gone} was evicted");
        }
        for kept in ["c2", "c3", "c4"] {
            assert_eq!(s.load(&key(kept)).unwrap().len(), 1, "{kept} is kept");
        }
        assert_eq!(s.load(&in_tenant("other", "x")).unwrap().len(), 1);
        // Using a conversation makes it the most recent: c2 stays, c3 goes next.
        s.append(&key("c2"), &[Turn::now("ann", false, "again")])
            .unwrap();
        s.append(&key("c5"), &[Turn::now("ann", false, "new")])
            .unwrap();
        assert!(s.load(&key("c3")).unwrap().is_empty());
        for kept in ["c2", "c4", "c5"] {
            assert!(!s.load(&key(kept)).unwrap().is_empty(), "{kept} is kept");
        }
    }

    #[test]
    fn reset_forgets_one_conversation_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir.path().join("m"), LIMITS);
        s.append(&key("a"), &[Turn::now("ann", false, "a")])
            .unwrap();
        s.append(&key("b"), &[Turn::now("ann", false, "b")])
            .unwrap();
        assert!(s.reset(&key("a")).unwrap());
        assert!(!s.reset(&key("a")).unwrap());
        assert!(s.load(&key("a")).unwrap().is_empty());
        assert_eq!(s.load(&key("b")).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn memory_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        {
            let s = store(&path, LIMITS);
            s.append(&key("c"), &[Turn::now("ann", false, "remember me")])
                .unwrap();
            s.flush().await.unwrap();
        }
        let s = store(&path, LIMITS);
        assert_eq!(s.load(&key("c")).unwrap()[0].text, "remember me");
    }

    #[test]
    fn a_corrupt_directory_is_moved_aside_and_memory_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("conf"), b"\xff\xfe not a sled config").unwrap();
        std::fs::write(path.join("db"), b"garbage").unwrap();
        let s = store(&path, LIMITS);
        assert!(s.is_empty());
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("m.corrupt-"));
        assert!(moved, "the corrupt directory is kept for inspection");
    }

    #[test]
    fn a_directory_in_use_is_an_error_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let first = open_db(&path).unwrap();
        first.insert(b"k", b"kept").unwrap();
        let err = open_db(&path).expect_err("a second open of a held directory fails");
        assert!(matches!(err, MemoryError::InUse(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("conversation memory") && text.contains("in use by another lore process"),
            "{text}"
        );
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(!moved, "a held directory is never moved aside");
        assert_eq!(first.get(b"k").unwrap().as_deref(), Some(&b"kept"[..]));
    }
}
