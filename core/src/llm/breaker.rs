//! A circuit breaker per vendor: after repeated failures the vendor is paused for a while,
//! and calls fail at once with the time to try again instead of hammering a vendor that is
//! down. After the pause one trial call goes through; its outcome closes the breaker or
//! pauses the vendor again for twice as long (up to [`MAX_PAUSE`]).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
#[cfg(not(test))]
use std::time::Instant;

use super::LlmError;

/// The longest pause, however often trials fail.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// How long a caller is told to wait while another call is the trial.
const TRIAL_WAIT: Duration = Duration::from_secs(1);

/// Counts a vendor's consecutive failures and pauses it after `threshold` of them.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Consecutive failures that pause the vendor; 0 never pauses it.
    threshold: u32,
    pause: Duration,
    state: Mutex<State>,
    /// Times are measured from here.
    #[cfg(not(test))]
    epoch: Instant,
    /// Tests hold the clock and move it by hand.
    #[cfg(test)]
    clock: Mutex<Duration>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// Set while the breaker is open or half-open.
    paused: Option<Pause>,
}

#[derive(Debug)]
struct Pause {
    /// Since the breaker's epoch.
    until: Duration,
    /// The length of this pause; the next one after a failed trial is twice as long.
    length: Duration,
    /// A trial call is under way (the breaker is half-open).
    trial: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, pause: Duration) -> Self {
        CircuitBreaker {
            threshold,
            pause: pause.min(MAX_PAUSE),
            state: Mutex::new(State::default()),
            #[cfg(not(test))]
            epoch: Instant::now(),
            #[cfg(test)]
            clock: Mutex::new(Duration::ZERO),
        }
    }

    /// Time since the breaker was made.
    #[cfg(not(test))]
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    #[cfg(test)]
    fn now(&self) -> Duration {
        *self.clock.lock().unwrap()
    }

    #[cfg(test)]
    fn advance(&self, by: Duration) {
        *self.clock.lock().unwrap() += by;
    }

    /// A breaker that never opens.
    pub fn disabled() -> Self {
        Self::new(0, Duration::ZERO)
    }

    /// Runs one real request to the vendor `what`, unless the vendor is paused.
    pub async fn call<T, Fut>(
        &self,
        what: &str,
        request: impl FnOnce() -> Fut,
    ) -> Result<T, LlmError>
    where
        Fut: Future<Output = Result<T, LlmError>>,
    {
        if self.threshold == 0 {
            return request().await;
        }
        let mut attempt = Attempt {
            breaker: self,
            trial: self.admit(what)?,
            settled: false,
        };
        let result = request().await;
        attempt.settle(what, result.as_ref().err());
        result
    }

    /// Lets a call through, or says how long the vendor stays paused. Returns whether the
    /// call is the trial of a half-open breaker.
    fn admit(&self, what: &str) -> Result<bool, LlmError> {
        let mut state = self.lock();
        let Some(pause) = &mut state.paused else {
            return Ok(false);
        };
        let now = self.now();
        let wait = if now < pause.until {
            pause.until - now
        } else if pause.trial {
            TRIAL_WAIT
        } else {
            pause.trial = true;
            tracing::info!(%what, "vendor pause over; trying one call");
            return Ok(true);
        };
        metrics::counter!("lore_llm_breaker_rejections_total").increment(1);
        Err(LlmError::Paused {
            at: what.to_owned(),
            retry_after: wait,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters, valid after any panic; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted call. Dropped unsettled (the caller gave up waiting), a trial hands its
/// place to the next call, so the breaker never stays half-open forever.
struct Attempt<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
    settled: bool,
}

impl Attempt<'_> {
    fn settle(&mut self, what: &str, error: Option<&LlmError>) {
        self.settled = true;
        let breaker = self.breaker;
        let mut state = breaker.lock();
        // Only signs that the vendor itself is unwell count: a 400 or a bad key says it is up.
        let failed = matches!(
            error,
            Some(LlmError::Transient { .. } | LlmError::Protocol { .. })
        );
        if !failed {
            if state.paused.is_some() {
                tracing::info!(%what, "vendor answers again; pause lifted");
            }
            *state = State::default();
            return;
        }
        state.failures += 1;
        let hint = match error {
            Some(LlmError::Transient { retry_after, .. }) => *retry_after,
            _ => None,
        };
        let length = if self.trial {
            let last = state.paused.as_ref().map_or(breaker.pause, |p| p.length);
            Some((last * 2).min(MAX_PAUSE))
        } else if state.paused.is_none() && state.failures >= breaker.threshold {
            Some(breaker.pause)
        } else {
            None
        };
        if let Some(length) = length {
            // The vendor's own "not before" wins when it is longer.
            let wait = hint.map_or(length, |h| h.min(MAX_PAUSE).max(length));
            tracing::warn!(
                %what,
                failures = state.failures,
                pause_secs = wait.as_secs_f64(),
                "vendor paused after repeated failures"
            );
            metrics::counter!("lore_llm_breaker_opened_total").increment(1);
            state.paused = Some(Pause {
                until: breaker.now() + wait,
                length,
                trial: false,
            });
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            let mut state = self.breaker.lock();
            if let Some(pause) = &mut state.paused {
                pause.trial = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn busy() -> LlmError {
        LlmError::transient("fake", "503")
    }

    async fn fail(breaker: &CircuitBreaker, calls: &AtomicUsize) -> LlmError {
        breaker
            .call("fake", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(busy())
            })
            .await
            .unwrap_err()
    }

    async fn succeed(breaker: &CircuitBreaker, calls: &AtomicUsize) -> Result<(), LlmError> {
        breaker
            .call("fake", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
    }

    fn paused_for(err: &LlmError) -> Duration {
        match err {
            LlmError::Paused { retry_after, .. } => *retry_after,
            other => panic!("expected a pause, got {other}"),
        }
    }

    #[tokio::test]
    async fn repeated_failures_pause_the_vendor_and_a_trial_lifts_the_pause() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            assert!(matches!(
                fail(&breaker, &calls).await,
                LlmError::Transient { .. }
            ));
        }
        // Paused: the vendor is not called, and the caller learns when to try again.
        let err = fail(&breaker, &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(paused_for(&err), Duration::from_secs(30));
        assert_eq!(err.retry_later(), Some(Some(Duration::from_secs(30))));
        breaker.advance(Duration::from_secs(10));
        assert_eq!(
            paused_for(&fail(&breaker, &calls).await),
            Duration::from_secs(20)
        );
        // After the pause, one trial; it fails, so the next pause is twice as long.
        breaker.advance(Duration::from_secs(20));
        fail(&breaker, &calls).await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(
            paused_for(&fail(&breaker, &calls).await),
            Duration::from_secs(60)
        );
        // The next trial succeeds: the breaker closes and counts from zero again.
        breaker.advance(Duration::from_secs(60));
        succeed(&breaker, &calls).await.unwrap();
        succeed(&breaker, &calls).await.unwrap();
        fail(&breaker, &calls).await;
        fail(&breaker, &calls).await;
        succeed(&breaker, &calls).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test]
    async fn a_longer_retry_after_from_the_vendor_sets_the_pause() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
        breaker
            .call("fake", || async {
                Err::<(), _>(busy().with_retry_after(Some(Duration::from_secs(40))))
            })
            .await
            .unwrap_err();
        let calls = AtomicUsize::new(0);
        assert_eq!(
            paused_for(&fail(&breaker, &calls).await),
            Duration::from_secs(40)
        );
    }

    #[tokio::test]
    async fn rejected_requests_do_not_count_and_a_disabled_breaker_never_pauses() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(5));
        for _ in 0..5 {
            breaker
                .call("fake", || async {
                    Err::<(), _>(LlmError::permanent("fake", "401"))
                })
                .await
                .unwrap_err();
        }
        let calls = AtomicUsize::new(0);
        succeed(&breaker, &calls).await.unwrap();
        let off = CircuitBreaker::disabled();
        for _ in 0..10 {
            fail(&off, &calls).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn an_abandoned_trial_lets_the_next_call_try() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(5));
        let calls = AtomicUsize::new(0);
        fail(&breaker, &calls).await;
        breaker.advance(Duration::from_secs(5));
        // The trial's caller gives up before the vendor answers.
        let trial = breaker.call("fake", std::future::pending::<Result<(), LlmError>>);
        assert!(futures::FutureExt::now_or_never(trial).is_none());
        succeed(&breaker, &calls).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
