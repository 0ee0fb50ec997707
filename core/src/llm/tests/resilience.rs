//! Rate limits on governor's fake clock, retries, the concurrency cap and the fallback chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::clock::FakeRelativeClock;
use serde_json::json;

use super::fakes::{Fake, Reply, openai_gate};
use super::{llm, secrets, user};
use crate::llm::{
    ChatModel, ChatRequest, ChatResponse, FallbackChatModel, LlmError, RetryPolicy, TextStream,
    VendorLimiter, build_chat_model, estimate_tokens,
};

#[test]
fn the_vendor_limiter_holds_its_rpm_over_a_burst() {
    let clock = FakeRelativeClock::default();
    let limiter = VendorLimiter::with_clock(60, 0, Duration::ZERO, clock.clone());
    let mut admitted: Vec<Duration> = Vec::new();
    let mut now = Duration::ZERO;
    // A burst of 1,000 requests at once, then everyone keeps asking every 50 ms for five minutes.
    for _ in 0..1000 {
        if limiter.try_request().is_ok() {
            admitted.push(now);
        }
    }
    assert_eq!(
        admitted.len(),
        6,
        "the burst is a tenth of the minute's budget"
    );
    let wait = limiter.try_request().unwrap_err();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(1112),
        "{wait:?}"
    );
    let step = Duration::from_millis(50);
    while now < Duration::from_secs(300) {
        clock.advance(step);
        now += step;
        while limiter.try_request().is_ok() {
            admitted.push(now);
        }
    }
    // No 60 s window, anywhere, holds more than 60 requests.
    for (i, start) in admitted.iter().enumerate() {
        let in_window = admitted[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(60))
            .count();
        assert!(
            in_window <= 60,
            "{in_window} requests in the minute from {start:?}"
        );
    }
    // And the budget is used: 6 at once, then 54 a minute.
    assert!(
        (6 + 54 * 5 - 1..=6 + 54 * 5 + 1).contains(&admitted.len()),
        "{}",
        admitted.len()
    );
}

#[test]
fn the_token_budget_charges_estimated_tokens() {
    let clock = FakeRelativeClock::default();
    let limiter = VendorLimiter::with_clock(0, 6000, Duration::ZERO, clock.clone());
    assert!(limiter.try_tokens(400).is_ok());
    assert!(limiter.try_tokens(400).is_err(), "the burst is 600 tokens");
    // A request bigger than the burst still passes, charged the whole burst.
    clock.advance(Duration::from_secs(60));
    assert!(limiter.try_tokens(50_000).is_ok());
    assert_eq!(estimate_tokens("知识库问答"), 4);
    assert_eq!(estimate_tokens("abcdefgh"), 2);
}

#[tokio::test]
async fn waiting_for_the_vendor_limiter_is_bounded() {
    let limiter = VendorLimiter::new(1, 0, Duration::from_millis(200));
    limiter.acquire(10, "test").await.unwrap();
    let started = Instant::now();
    let err = limiter.acquire(10, "test").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    match err {
        LlmError::Transient {
            retry_after,
            detail,
            ..
        } => {
            assert!(retry_after.unwrap() > Duration::from_secs(50));
            assert!(detail.contains("local rate limit"), "{detail}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn retries_stop_at_the_budget_and_never_repeat_permanent_errors() {
    let policy = RetryPolicy {
        budget: Duration::from_millis(300),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
    };
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    let err = policy
        .run("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(LlmError::transient("fake", "busy"))
        })
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "{}",
        calls.load(Ordering::SeqCst)
    );
    // The budget bounds the retries; the slack is for a loaded machine's late timers.
    assert!(started.elapsed() < Duration::from_secs(1));

    let calls = AtomicUsize::new(0);
    let err = policy
        .run("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(LlmError::permanent("fake", "no"))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Permanent { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_concurrency_cap_limits_calls_in_flight() {
    let fake = Fake::start(openai_gate("k")).await;
    let ok = Reply::ok(json!({"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}]}));
    fake.push(Reply::After(Duration::from_millis(50), Box::new(ok)));
    let mut s = llm("openai", &fake.url, "m");
    s.max_concurrency = 2;
    let model = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", "k")]))
        .unwrap()
        .unwrap();
    let calls = (0..8).map(|_| model.chat(user("hi")));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(fake.max_in_flight(), 2);
}

#[tokio::test]
async fn the_fallback_answers_when_the_primary_is_refused() {
    let (primary, backup) = (
        Fake::start(openai_gate("right")).await,
        Fake::start(openai_gate("k2")).await,
    );
    let ok =
        |t: &str| Reply::ok(json!({"choices":[{"message":{"content":t},"finish_reason":"stop"}]}));
    primary.push(ok("primary"));
    backup.push(ok("backup"));
    backup.push(Reply::openai_stream(&["back", "up"]));
    let mut s = llm("openai", &primary.url, "big");
    s.context_window = Some(128_000);
    s.api_key_env = Some("PRIMARY_KEY".into());
    let mut b = llm("openai", &backup.url, "small");
    b.context_window = Some(8_000);
    b.api_key_env = Some("BACKUP_KEY".into());
    s.fallback = vec![b];
    let model = build_chat_model(
        &s,
        &secrets(&[("PRIMARY_KEY", "wrong"), ("BACKUP_KEY", "k2")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!(model.chat(user("hi")).await.unwrap().text, "backup");
    assert_eq!(model.id(), "openai:big -> openai:small");
    assert_eq!(model.context_window(), 8_000);
    // A stream falls back the same way.
    let stream = model.chat_stream(user("hi")).await.unwrap();
    assert_eq!(super::collect(stream).await.unwrap(), "backup");
}

struct Broken(LlmError);

#[async_trait]
impl ChatModel for Broken {
    fn id(&self) -> &str {
        "broken"
    }
    fn context_window(&self) -> usize {
        1
    }
    async fn chat(&self, _: ChatRequest) -> Result<ChatResponse, LlmError> {
        Err(match &self.0 {
            LlmError::Config(m) => LlmError::Config(m.clone()),
            _ => LlmError::permanent("broken", "no"),
        })
    }
    async fn chat_stream(&self, _: ChatRequest) -> Result<TextStream, LlmError> {
        Err(LlmError::permanent("broken", "no"))
    }
}

#[tokio::test]
async fn a_configuration_error_stops_the_fallback_chain() {
    let calls = Arc::new(AtomicUsize::new(0));
    struct Counting(Arc<AtomicUsize>);
    #[async_trait]
    impl ChatModel for Counting {
        fn id(&self) -> &str {
            "counting"
        }
        fn context_window(&self) -> usize {
            1
        }
        async fn chat(&self, _: ChatRequest) -> Result<ChatResponse, LlmError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(ChatResponse {
                text: "x".into(),
                usage: None,
            })
        }
        async fn chat_stream(&self, _: ChatRequest) -> Result<TextStream, LlmError> {
            unreachable!()
        }
    }
    let chain = FallbackChatModel::new(vec![
        Arc::new(Broken(LlmError::Config("bad".into()))),
        Arc::new(Counting(calls.clone())),
    ])
    .unwrap();
    assert!(matches!(
        chain.chat(user("hi")).await,
        Err(LlmError::Config(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let chain = FallbackChatModel::new(vec![
        Arc::new(Broken(LlmError::permanent("x", "y"))),
        Arc::new(Counting(calls.clone())),
    ])
    .unwrap();
    assert_eq!(chain.chat(user("hi")).await.unwrap().text, "x");
}

#[tokio::test]
async fn a_failing_vendor_is_paused_and_the_fallback_answers_meanwhile() {
    let (primary, backup) = (
        Fake::start(openai_gate("k")).await,
        Fake::start(openai_gate("k")).await,
    );
    primary.push(Reply::status(
        503,
        json!({"error": {"message": "overloaded"}}),
    ));
    backup.push(Reply::ok(
        json!({"choices":[{"message":{"content":"backup"},"finish_reason":"stop"}]}),
    ));
    let mut s = llm("openai", &primary.url, "m");
    s.breaker_failures = 3;
    s.breaker_pause_secs = 120;
    let alone = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", "k")]))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let err = alone.chat(user("hi")).await.unwrap_err();
        assert!(matches!(err, LlmError::Transient { .. }), "{err}");
    }
    // The fourth call never reaches the vendor, and says when to try again.
    let err = alone.chat(user("hi")).await.unwrap_err();
    assert_eq!(primary.count("/chat/completions"), 3);
    let wait = err.retry_later().flatten().expect("a time to try again");
    assert!(wait > Duration::from_secs(100), "{wait:?}");
    assert!(err.to_string().contains("try again in"), "{err}");

    // In a chain, the paused vendor is skipped without a request and the next model answers.
    let mut b = llm("openai", &backup.url, "b");
    b.breaker_failures = 3;
    s.fallback = vec![b];
    let chain = build_chat_model(&s, &secrets(&[("OPENAI_API_KEY", "k")]))
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(chain.chat(user("hi")).await.unwrap().text, "backup");
    }
    assert_eq!(primary.count("/chat/completions"), 3 + 3);
}
