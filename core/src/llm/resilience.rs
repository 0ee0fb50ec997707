//! The decorators every vendor is wrapped in: [`ResilientChatModel`] (concurrency cap, vendor rate
//! limit, circuit breaker, retries) and [`FallbackChatModel`] (the next model when one cannot answer).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::breaker::CircuitBreaker;
use super::limits::request_tokens;
use super::{
    ChatModel, ChatRequest, ChatResponse, LlmError, Recovery, RetryPolicy, TextStream,
    VendorLimiter,
};

/// A chat model behind a concurrency cap, the vendor's rate limiter, its circuit breaker and
/// retries of transient errors.
///
/// A stream is retried only until it is established: once deltas flow, a failure reaches the
/// caller, because repeating the request would repeat text already shown.
pub struct ResilientChatModel {
    inner: Arc<dyn ChatModel>,
    limiter: Arc<VendorLimiter>,
    breaker: Arc<CircuitBreaker>,
    permits: Arc<Semaphore>,
    retry: RetryPolicy,
}

impl ResilientChatModel {
    /// Wraps `inner`; `limiter` and `breaker` may be shared by every model of the same vendor
    /// account.
    pub fn new(
        inner: Arc<dyn ChatModel>,
        limiter: Arc<VendorLimiter>,
        breaker: Arc<CircuitBreaker>,
        max_concurrency: usize,
        retry: RetryPolicy,
    ) -> Self {
        ResilientChatModel {
            inner,
            limiter,
            breaker,
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            retry,
        }
    }
}

#[async_trait]
impl ChatModel for ResilientChatModel {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn context_window(&self) -> usize {
        self.inner.context_window()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let tokens = request_tokens(&req);
        let id = self.inner.id();
        self.retry
            .run(id, || async {
                // Every attempt is a real request and takes its own place in the vendor's budget.
                self.limiter.acquire(tokens, id).await?;
                self.breaker.call(id, || self.inner.chat(req.clone())).await
            })
            .await
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError> {
        // The permit lives as long as the stream: a slow reader still counts as a call in flight.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let tokens = request_tokens(&req);
        let id = self.inner.id();
        let stream = self
            .retry
            .run(id, || async {
                self.limiter.acquire(tokens, id).await?;
                self.breaker
                    .call(id, || self.inner.chat_stream(req.clone()))
                    .await
            })
            .await?;
        Ok(stream
            .map(move |item| {
                let _held = &permit;
                item
            })
            .boxed())
    }
}

/// Tries each model in turn until one answers; only configuration errors stop the chain early.
pub struct FallbackChatModel {
    models: Vec<Arc<dyn ChatModel>>,
    id: String,
}

impl FallbackChatModel {
    /// The first model is the primary; `models` must not be empty.
    pub fn new(models: Vec<Arc<dyn ChatModel>>) -> Result<Self, LlmError> {
        if models.is_empty() {
            return Err(LlmError::config(
                "a fallback chain needs at least one model",
            ));
        }
        let id = models
            .iter()
            .map(|m| m.id())
            .collect::<Vec<_>>()
            .join(" -> ");
        Ok(FallbackChatModel { models, id })
    }

    /// Decides whether to go on after `model` failed with `err`.
    fn next_or_stop(
        model: &dyn ChatModel,
        err: LlmError,
        remaining: usize,
    ) -> Result<LlmError, LlmError> {
        match err.recovery() {
            Recovery::Stop => Err(err),
            Recovery::Retry { .. } | Recovery::NextModel => {
                if remaining > 0 {
                    tracing::warn!(model = model.id(), error = %err, "model failed; trying the next in the fallback chain");
                }
                Ok(err)
            }
        }
    }
}

#[async_trait]
impl ChatModel for FallbackChatModel {
    fn id(&self) -> &str {
        &self.id
    }

    /// The smallest window of the chain, so a prompt built for it fits whichever model answers.
    fn context_window(&self) -> usize {
        self.models
            .iter()
            .map(|m| m.context_window())
            .min()
            .unwrap_or(0)
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.first_success(|model| model.chat(req.clone())).await
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<TextStream, LlmError> {
        self.first_success(|model| model.chat_stream(req.clone()))
            .await
    }
}

impl FallbackChatModel {
    /// Tries each model in order until one succeeds, or an error says to stop.
    async fn first_success<T>(
        &self,
        call: impl for<'a> Fn(&'a dyn ChatModel) -> futures::future::BoxFuture<'a, Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        let mut last = None;
        for (i, model) in self.models.iter().enumerate() {
            match call(model.as_ref()).await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    last = Some(Self::next_or_stop(
                        model.as_ref(),
                        e,
                        self.models.len() - i - 1,
                    )?)
                }
            }
        }
        Err(last.expect("at least one model"))
    }
}
