//! Exponential backoff with jitter for transient errors only, within a total time budget.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{LlmError, Recovery};

/// How long and how often to retry transient failures.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total time allowed for all attempts and waits; 0 disables retries.
    pub budget: Duration,
    /// The wait before the first retry; it doubles each time.
    pub base_delay: Duration,
    /// The longest wait between attempts when the vendor gives no hint.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): the vendor's hint when given (it says
    /// "not before"), otherwise exponential backoff with "equal jitter" (half fixed, half random).
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let backoff = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let jittered = backoff / 2 + backoff.mul_f64(rand::rng().random::<f64>() / 2.0);
        match hint {
            // A little jitter on top keeps many waiting clients from returning in the same instant.
            Some(h) => h + jittered / 10,
            None => jittered,
        }
    }

    /// Runs `op` until it succeeds, fails for a non-transient reason, or the budget is spent; the
    /// last error is returned unchanged so callers (and fallbacks) still see its class.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let hint = match err.recovery() {
                Recovery::Retry { after } => after,
                Recovery::NextModel | Recovery::Stop => return Err(err),
            };
            let wait = self.delay(attempt, hint);
            if started.elapsed() + wait > self.budget {
                tracing::warn!(%what, attempts = attempt + 1, error = %err, "retry budget spent");
                return Err(err);
            }
            tracing::info!(%what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %err, "transient failure; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}
