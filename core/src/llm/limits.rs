//! Rate limits of the vendors: one limiter per vendor (requests and tokens per minute) that
//! callers wait on. (Inbound questions are limited in `bot::admission`.)
//!
//! Tokens are estimated, not counted: there is no public tokenizer for GLM, ERNIE or Spark, and a
//! limiter only needs the order of magnitude. See [`estimate_tokens`].

use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::{ChatRequest, LlmError};

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Estimated tokens of a text: a CJK character counts 1/1.5 token (GLM, ERNIE and Spark pack about
/// 1.5 Chinese characters per token), anything else 1 token per 4 bytes (cl100k's English average).
pub fn estimate_tokens(text: &str) -> u32 {
    let (mut cjk, mut other_bytes) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else {
            other_bytes += c.len_utf8();
        }
    }
    (cjk as f64 / 1.5 + other_bytes as f64 / 4.0).ceil() as u32
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x2FA1F)
}

/// Estimated tokens a request spends: its messages (plus 4 per message for the role framing) and
/// the answer it may produce, since vendors count both against tokens per minute.
pub fn request_tokens(req: &ChatRequest) -> u32 {
    let prompt: u32 = req
        .messages
        .iter()
        .map(|m| estimate_tokens(&m.content) + 4)
        .sum();
    prompt + req.max_tokens.unwrap_or(0)
}

/// A quota that admits at most `per_minute` in any 60 s window: a burst of a tenth at once, the
/// rest spread evenly (GCRA alone, with a full burst, would admit almost twice the rate in one window).
fn windowed_quota(per_minute: NonZeroU32) -> (Quota, NonZeroU32) {
    let n = per_minute.get();
    let burst = NonZeroU32::new((n / 10).max(1)).expect("at least one");
    let steady = (n - burst.get()).max(1);
    let quota = Quota::with_period(Duration::from_secs(60) / steady)
        .expect("a positive period")
        .allow_burst(burst);
    (quota, burst)
}

/// A vendor's requests-per-minute and tokens-per-minute budget, shared by all calls to it.
pub struct VendorLimiter<C: Clock + Clone = DefaultClock> {
    requests: Option<Direct<C>>,
    tokens: Option<(Direct<C>, NonZeroU32)>,
    clock: C,
    max_wait: Duration,
}

impl<C: Clock + Clone> fmt::Debug for VendorLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorLimiter")
            .field("requests", &self.requests.is_some())
            .field("tokens", &self.tokens.as_ref().map(|t| t.1))
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl VendorLimiter<DefaultClock> {
    /// Limits to `rpm` requests and `tpm` tokens a minute (0 = no limit); callers wait at most `max_wait`.
    pub fn new(rpm: u32, tpm: u32, max_wait: Duration) -> Self {
        Self::with_clock(rpm, tpm, max_wait, DefaultClock::default())
    }

    /// No limits at all.
    pub fn unlimited() -> Self {
        Self::new(0, 0, Duration::ZERO)
    }
}

impl<C: Clock + Clone> VendorLimiter<C> {
    /// Like [`VendorLimiter::new`] on a given clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(rpm: u32, tpm: u32, max_wait: Duration, clock: C) -> Self {
        let direct = |n: NonZeroU32| {
            let (quota, burst) = windowed_quota(n);
            (RateLimiter::direct_with_clock(quota, clock.clone()), burst)
        };
        VendorLimiter {
            requests: NonZeroU32::new(rpm).map(|n| direct(n).0),
            tokens: NonZeroU32::new(tpm).map(direct),
            clock,
            max_wait,
        }
    }

    /// Takes one request slot now, or says how long until one is free.
    pub fn try_request(&self) -> Result<(), Duration> {
        match &self.requests {
            None => Ok(()),
            Some(l) => l
                .check()
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Takes `tokens` from the token budget now, or says how long until they are there; a request
    /// larger than the burst is charged the whole burst so it can pass at all.
    pub fn try_tokens(&self, tokens: u32) -> Result<(), Duration> {
        let Some((limiter, burst)) = &self.tokens else {
            return Ok(());
        };
        let n = NonZeroU32::new(tokens.clamp(1, burst.get())).expect("at least one");
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            Err(_) => unreachable!("n is clamped to the burst"),
        }
    }

    /// Waits for a request slot and the tokens, at most `max_wait` in all; logs any wait.
    pub async fn acquire(&self, tokens: u32, what: &str) -> Result<(), LlmError> {
        let started = Instant::now();
        self.wait_for(started, what, || self.try_request()).await?;
        self.wait_for(started, what, || self.try_tokens(tokens))
            .await?;
        let waited = started.elapsed();
        metrics::histogram!("lore_llm_rate_limit_wait_seconds").record(waited.as_secs_f64());
        if waited >= Duration::from_millis(1) {
            tracing::info!(%what, waited_ms = waited.as_millis() as u64, tokens, "waited for the vendor rate limit");
        }
        Ok(())
    }

    async fn wait_for(
        &self,
        started: Instant,
        what: &str,
        mut try_now: impl FnMut() -> Result<(), Duration>,
    ) -> Result<(), LlmError> {
        loop {
            let wait = match try_now() {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if started.elapsed() + wait > self.max_wait {
                tracing::warn!(%what, wait_ms = wait.as_millis() as u64, "vendor rate limit: giving up waiting");
                metrics::counter!("lore_llm_rate_limit_rejections_total").increment(1);
                return Err(LlmError::Transient {
                    at: what.to_string(),
                    detail: format!(
                        "the local rate limit would hold this call longer than {} s",
                        self.max_wait.as_secs_f64()
                    ),
                    retry_after: Some(wait),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}
