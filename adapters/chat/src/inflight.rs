//! Work under way (answers being delivered), counted so an adapter can wait for it, within
//! a bound, when it shuts down.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct Counter {
    running: AtomicUsize,
    idle: Notify,
}

/// Counts the work under way; cloned handles share one count.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Counter>);

/// One piece of work under way; dropping it marks the work done.
#[must_use = "the work counts as under way only while the guard lives"]
pub struct InFlightGuard(Arc<Counter>);

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more piece of work until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    /// How much work is under way now.
    pub fn count(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }

    /// Waits until no work is under way, or `timeout` passed; true when everything finished.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let idle = async {
            loop {
                let notified = self.0.idle.notified();
                tokio::pin!(notified);
                // Registered before the check, so a guard dropped in between still wakes us.
                notified.as_mut().enable();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_guard_and_gives_up_at_the_bound() {
        let inflight = InFlight::new();
        assert!(
            inflight.drain(Duration::from_secs(1)).await,
            "nothing under way"
        );
        let first = inflight.enter();
        let second = inflight.enter();
        assert_eq!(inflight.count(), 2);
        // A guard still held: the drain ends at its bound, reporting failure.
        assert!(!inflight.drain(Duration::from_millis(10)).await);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(async move {
            let _ = released.await;
            drop(first);
            drop(second);
        });
        let drained = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.drain(Duration::from_secs(60)).await })
        };
        release.send(()).unwrap();
        assert!(drained.await.unwrap());
        worker.await.unwrap();
        assert_eq!(inflight.count(), 0);
    }
}
