//! Uploads in flight: every file that reaches lore (an HTTP `/v1/ingest` upload, a Telegram
//! document, a Discord attachment) is spooled chunk by chunk to a temporary file, never held
//! whole in memory, and its bytes count against one budget shared by every request and
//! chat: `[ingest] max_inflight_mib`. An upload that cannot get budget within
//! `ingest.inflight_wait_secs` is refused with [`BotError::Busy`] (HTTP 503 `uploads_busy`).
//!
//! The budget is a semaphore of MiB permits. A [`Reservation`] holds the permits of one
//! request (or one chat attachment) until it is dropped: after the file is loaded and
//! stored, or when the upload fails.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lore_chat::{ChatError, ChunkSink};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::BotError;

/// Bytes in a MiB, the unit of the budget.
pub const MIB: u64 = 1024 * 1024;

struct Budget {
    permits: Arc<Semaphore>,
    total_mib: u32,
    wait: Duration,
}

impl Budget {
    fn in_flight_bytes(&self) -> u64 {
        let free = self.permits.available_permits() as u64;
        u64::from(self.total_mib).saturating_sub(free) * MIB
    }

    fn report(&self) {
        metrics::gauge!("lore_uploads_inflight_bytes").set(self.in_flight_bytes() as f64);
    }

    /// What a refused upload is told: try again after the wait it could not get.
    fn busy(&self) -> BotError {
        BotError::Busy {
            retry_after_secs: self.wait.as_secs().max(1),
        }
    }
}

/// The byte budget of uploads in flight, shared by the HTTP API and every chat adapter.
#[derive(Clone)]
pub struct Uploads {
    budget: Arc<Budget>,
}

impl Uploads {
    /// A budget of `max_inflight_mib` MiB; an upload waits at most `wait` for its share.
    pub fn new(max_inflight_mib: u32, wait: Duration) -> Self {
        let budget = Budget {
            permits: Arc::new(Semaphore::new(max_inflight_mib as usize)),
            total_mib: max_inflight_mib,
            wait,
        };
        budget.report();
        Self {
            budget: Arc::new(budget),
        }
    }

    /// Bytes of the budget held right now (whole MiB per upload).
    pub fn in_flight_bytes(&self) -> u64 {
        self.budget.in_flight_bytes()
    }

    /// An empty reservation; it grows as its uploads need it and gives everything back
    /// when dropped.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.budget.clone(),
            permit: None,
            mib: 0,
            used: 0,
        }
    }

    /// A new temporary file for the upload `name`, refusing it once it passes `max_bytes`;
    /// its bytes are counted in `reservation`.
    pub fn spool<'r>(
        &self,
        name: &str,
        max_bytes: u64,
        reservation: &'r mut Reservation,
    ) -> Result<Spool<'r>, BotError> {
        let file = tempfile::Builder::new()
            .prefix("lore-upload-")
            .tempfile()
            .map_err(|e| BotError::Internal(format!("a temporary file for {name}: {e}")))?;
        let (file, path) = file.into_parts();
        Ok(Spool {
            name: name.to_owned(),
            file: tokio::fs::File::from_std(file),
            path,
            len: 0,
            max_bytes,
            reservation,
            failure: None,
        })
    }
}

/// Budget held by one request or attachment: whole MiB permits, returned when dropped.
pub struct Reservation {
    budget: Arc<Budget>,
    permit: Option<OwnedSemaphorePermit>,
    mib: u32,
    /// Bytes written under this reservation so far.
    used: u64,
}

impl Reservation {
    /// Makes sure `bytes` are covered, waiting at most `inflight_wait_secs` for the rest.
    /// Use it up front when the size is known (a Content-Length, a platform's file size),
    /// so two uploads never each hold half of what both need.
    pub async fn reserve(&mut self, bytes: u64) -> Result<(), BotError> {
        let need = bytes.div_ceil(MIB);
        if need <= u64::from(self.mib) {
            return Ok(());
        }
        if need > u64::from(self.budget.total_mib) {
            // More than the whole budget can never be granted: refuse now, not after a wait.
            return Err(self.budget.busy());
        }
        let more = (need - u64::from(self.mib)) as u32;
        let permits = self.budget.permits.clone();
        let granted = match permits.clone().try_acquire_many_owned(more) {
            Ok(permit) => Some(permit),
            Err(_) if self.budget.wait.is_zero() => None,
            Err(_) => tokio::time::timeout(self.budget.wait, permits.acquire_many_owned(more))
                .await
                .ok()
                .and_then(Result::ok),
        };
        let Some(granted) = granted else {
            metrics::counter!("lore_uploads_busy_total").increment(1);
            return Err(self.budget.busy());
        };
        match &mut self.permit {
            Some(permit) => permit.merge(granted),
            None => self.permit = Some(granted),
        }
        self.mib += more;
        self.budget.report();
        Ok(())
    }

    /// Makes sure `n` bytes beyond those already written are covered (see [`Self::reserve`]).
    pub async fn reserve_more(&mut self, n: u64) -> Result<(), BotError> {
        self.reserve(self.used.saturating_add(n)).await
    }

    /// Counts `n` more bytes written, covering them first.
    async fn take(&mut self, n: u64) -> Result<(), BotError> {
        self.reserve(self.used + n).await?;
        self.used += n;
        Ok(())
    }

    /// Bytes of the budget this reservation holds.
    pub fn held_bytes(&self) -> u64 {
        u64::from(self.mib) * MIB
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.budget.report();
        }
    }
}

/// An upload being written to its temporary file.
pub struct Spool<'r> {
    name: String,
    file: tokio::fs::File,
    path: tempfile::TempPath,
    len: u64,
    max_bytes: u64,
    reservation: &'r mut Reservation,
    /// Why the last write failed, kept for the caller of a download through [`ChunkSink`].
    failure: Option<BotError>,
}

impl Spool<'_> {
    /// Appends one chunk: refused past the size limit, or when the budget has no room.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BotError> {
        let len = self.len + chunk.len() as u64;
        if len > self.max_bytes {
            return Err(BotError::TooLarge {
                name: self.name.clone(),
                limit_mib: self.max_bytes / MIB,
            });
        }
        self.reservation.take(chunk.len() as u64).await?;
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| BotError::Internal(format!("spooling {}: {e}", self.name)))?;
        self.len = len;
        Ok(())
    }

    /// Makes sure the reservation covers `bytes` in all (see [`Reservation::reserve`]).
    pub async fn reserve(&mut self, bytes: u64) -> Result<(), BotError> {
        self.reservation.reserve(bytes).await
    }

    /// The reason the last write failed (a refused download reports it as a [`ChatError`]).
    pub fn take_failure(&mut self) -> Option<BotError> {
        self.failure.take()
    }

    /// The whole upload, on disk.
    pub async fn finish(mut self) -> Result<Spooled, BotError> {
        self.file
            .flush()
            .await
            .map_err(|e| BotError::Internal(format!("spooling {}: {e}", self.name)))?;
        Ok(Spooled {
            name: self.name,
            path: self.path,
            len: self.len,
        })
    }
}

#[async_trait]
impl ChunkSink for Spool<'_> {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), ChatError> {
        Spool::write(self, chunk).await.map_err(|e| {
            let message = e.to_string();
            self.failure = Some(e);
            ChatError::other(message)
        })
    }
}

/// A whole upload in its temporary file (deleted when dropped).
pub struct Spooled {
    pub name: String,
    path: tempfile::TempPath,
    len: u64,
}

impl Spooled {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty upload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the bytes back for a loader (the one copy in memory, under the reservation).
    pub async fn read(&self) -> Result<Vec<u8>, BotError> {
        tokio::fs::read(&self.path)
            .await
            .map_err(|e| BotError::Internal(format!("reading back {}: {e}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_refuses_and_everything_returns_when_dropped() {
        let uploads = Uploads::new(2, Duration::ZERO);
        let mut first = uploads.reservation();
        first.reserve(2 * MIB).await.unwrap();
        assert_eq!(uploads.in_flight_bytes(), 2 * MIB);
        let mut second = uploads.reservation();
        let err = second.reserve(1).await.unwrap_err();
        assert!(
            matches!(
                err,
                BotError::Busy {
                    retry_after_secs: 1
                }
            ),
            "{err}"
        );
        drop(first);
        assert_eq!(uploads.in_flight_bytes(), 0);
        second.reserve(1).await.unwrap();
        assert_eq!(uploads.in_flight_bytes(), MIB);
    }

    #[tokio::test]
    async fn a_spool_stops_at_the_size_limit_and_keeps_nothing_in_memory() {
        let uploads = Uploads::new(4, Duration::ZERO);
        let mut reservation = uploads.reservation();
        let mut spool = uploads
            .spool("big.txt", MIB + 10, &mut reservation)
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            spool.write(&chunk).await.unwrap();
        }
        let err = spool.write(&chunk).await.unwrap_err();
        assert!(matches!(err, BotError::TooLarge { .. }), "{err}");
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.len(), MIB);
        assert_eq!(std::fs::metadata(spooled.path()).unwrap().len(), MIB);
        let path = spooled.path().to_owned();
        drop(spooled);
        assert!(!path.exists(), "the temporary file is removed");
        drop(reservation);
        assert_eq!(uploads.in_flight_bytes(), 0);
    }

    #[tokio::test]
    async fn a_waiting_upload_gets_the_budget_when_it_is_returned() {
        let uploads = Uploads::new(1, Duration::from_secs(600));
        let mut first = uploads.reservation();
        first.reserve(MIB).await.unwrap();
        let waiting = {
            let uploads = uploads.clone();
            tokio::spawn(async move {
                let mut r = uploads.reservation();
                r.reserve(MIB).await.map(|()| r.held_bytes())
            })
        };
        tokio::task::yield_now().await;
        drop(first);
        assert_eq!(waiting.await.unwrap().unwrap(), MIB);
    }
}
