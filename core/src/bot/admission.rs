//! Admission of inbound questions, shared by every surface (chat platforms and the HTTP
//! API): keyed limiters per user and per channel that refuse with "try again in N s".

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// "Too many questions": the wait before the next one is admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many questions; try again in {} s", seconds_up(*.0))]
pub struct RetryIn(pub Duration);

fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RetryIn {
    /// Whole seconds to wait, rounded up, for showing to a person.
    pub fn seconds(&self) -> u64 {
        seconds_up(self.0).max(1)
    }
}

/// Checks between two prunings of a keyed limiter's map: often enough that keys seen once
/// (every user, every channel) do not pile up, rarely enough that pruning costs little.
const PRUNE_EVERY: u32 = 1024;

/// Separate budgets per key (a user id, a channel id) for inbound questions. The map of
/// keys forgets, every [`PRUNE_EVERY`] checks, the keys whose budget is full again, so it
/// holds only the keys of the last minute or so, however many have ever been seen.
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock + Clone = DefaultClock> {
    limiter: Keyed<K, C>,
    clock: C,
    checks: AtomicU32,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K, DefaultClock> {
    /// `per_minute` questions per key, with bursts of up to `burst`.
    pub fn per_minute(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    /// Like [`KeyedLimiter::per_minute`] on a given clock.
    pub fn with_clock(per_minute: NonZeroU32, burst: NonZeroU32, clock: C) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        KeyedLimiter {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            checks: AtomicU32::new(0),
        }
    }

    /// Admits one question for `key`, or says how long until one would be.
    pub fn check(&self, key: &K) -> Result<(), RetryIn> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| RetryIn(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets keys whose budget is full again, and gives back the room they took.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// Per-user and per-channel limits for inbound questions.
pub struct InboundLimiter {
    /// Budget of each user.
    pub per_user: KeyedLimiter<String>,
    /// Budget of each channel, shared by everyone in it.
    pub per_channel: KeyedLimiter<String>,
}

impl InboundLimiter {
    /// `per_user` and `per_channel` questions a minute, each with bursts of up to that many.
    pub fn new(per_user: NonZeroU32, per_channel: NonZeroU32) -> Self {
        InboundLimiter {
            per_user: KeyedLimiter::per_minute(per_user, per_user),
            per_channel: KeyedLimiter::per_minute(per_channel, per_channel),
        }
    }

    /// Users and channels remembered now.
    pub fn keys(&self) -> usize {
        self.per_user.len() + self.per_channel.len()
    }

    /// Checks the user first, so one user's refused flood does not spend the channel's budget.
    pub fn check(&self, user: &str, channel: &str) -> Result<(), RetryIn> {
        self.per_user.check(&user.to_string())?;
        self.per_channel.check(&channel.to_string())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn keyed_limiters_say_when_to_try_again_and_forget_idle_keys() {
        let clock = FakeRelativeClock::default();
        let two = NonZeroU32::new(2).unwrap();
        let users: KeyedLimiter<String, _> = KeyedLimiter::with_clock(two, two, clock.clone());
        let alice = "alice".to_string();
        assert!(users.check(&alice).is_ok());
        assert!(users.check(&alice).is_ok());
        let refused = users.check(&alice).unwrap_err();
        assert_eq!(refused, RetryIn(Duration::from_secs(30)));
        assert_eq!(refused.to_string(), "too many questions; try again in 30 s");
        assert!(
            users.check(&"bob".to_string()).is_ok(),
            "each user has a budget of their own"
        );
        clock.advance(Duration::from_secs(30));
        assert!(users.check(&alice).is_ok());
        assert_eq!(users.len(), 2);
        clock.advance(Duration::from_secs(120));
        users.retain_recent();
        assert_eq!(users.len(), 0);
    }

    #[test]
    fn inbound_questions_are_limited_per_user_and_per_channel() {
        let one = NonZeroU32::new(1).unwrap();
        let inbound = InboundLimiter::new(one, NonZeroU32::new(2).unwrap());
        assert!(inbound.check("alice", "#general").is_ok());
        let wait = inbound.check("alice", "#general").unwrap_err();
        assert!((59..=60).contains(&wait.seconds()), "{wait}");
        assert!(inbound.check("bob", "#general").is_ok());
        assert!(
            inbound.check("carol", "#general").is_err(),
            "the channel's budget is spent"
        );
    }

    #[test]
    fn keys_seen_once_do_not_pile_up() {
        // One question in each of 20,000 fresh channels, a second apart: before pruning
        // every few checks, the map held all 20,000 keys for as long as lore ran.
        let clock = FakeRelativeClock::default();
        let channels: KeyedLimiter<String, _> = KeyedLimiter::with_clock(
            NonZeroU32::new(30).unwrap(),
            NonZeroU32::new(30).unwrap(),
            clock.clone(),
        );
        for i in 0..20_000 {
            assert!(channels.check(&format!("channel-{i}")).is_ok());
            clock.advance(Duration::from_secs(1));
        }
        assert!(
            channels.len() <= PRUNE_EVERY as usize,
            "{} keys remembered",
            channels.len()
        );
    }
}
