//! The HTTP plumbing shared by the OpenAI-compatible, Zhipu and Qianfan clients: one client,
//! one status classification, one SSE reader, so the vendors only map their own JSON.

use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::error::Kind;
use super::{LlmError, Secret, TextStream};

/// A vendor's own reading of an error body, given the HTTP status; `None` falls back to the status.
pub(crate) type BodyClassifier = fn(StatusCode, &str) -> Option<Kind>;

/// An HTTP client for one vendor: its name for errors, its timeout and its error vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    vendor: &'static str,
    timeout: Duration,
    classify_body: BodyClassifier,
    /// Secrets to blank out of error bodies, for vendors that echo what they were sent.
    redact: Vec<Secret>,
}

impl Transport {
    /// `timeout` bounds connecting, the wait for response headers, and each gap in a stream.
    pub(crate) fn new(
        vendor: &'static str,
        timeout: Duration,
        classify_body: BodyClassifier,
        redact: Vec<Secret>,
    ) -> Result<Self, LlmError> {
        // No overall request timeout: a long answer may stream for minutes; we bound the gaps instead.
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| LlmError::config(format!("{vendor}: HTTP client: {e}")))?;
        Ok(Transport {
            client,
            vendor,
            timeout,
            classify_body,
            redact,
        })
    }

    /// A POST without a body.
    pub(crate) fn post(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.client.post(url)
    }

    /// A POST with a JSON body (reqwest's own `json` needs a feature the workspace does not enable).
    pub(crate) fn post_json(
        &self,
        url: impl reqwest::IntoUrl,
        body: &impl serde::Serialize,
    ) -> RequestBuilder {
        let bytes = serde_json::to_vec(body).expect("request bodies always serialize");
        self.client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
    }

    /// "vendor at URL" for error messages, without the query string (it may carry a token).
    pub(crate) fn at(&self, url: &str) -> String {
        format!("{} at {}", self.vendor, redact_url(url))
    }

    /// Sends a request and turns a non-2xx status into a classified error.
    pub(crate) async fn send(
        &self,
        url: &str,
        request: RequestBuilder,
    ) -> Result<Response, LlmError> {
        let at = self.at(url);
        let response = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| {
                LlmError::transient(
                    &at,
                    format!("no response within {} s", self.timeout.as_secs_f64()),
                )
            })?
            .map_err(|e| from_reqwest(&at, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = scrub(
            &self.text(url, response).await.unwrap_or_default(),
            &self.redact,
        );
        let kind = (self.classify_body)(status, &body).unwrap_or(match status.as_u16() {
            408 | 425 | 429 | 500..=599 => Kind::Transient,
            413 => Kind::ContextTooLong,
            _ => Kind::Permanent,
        });
        Err(
            LlmError::of(kind, &at, format!("HTTP {status}: {}", snippet(&body)))
                .with_retry_after(retry_after),
        )
    }

    /// Reads the whole body within the timeout.
    pub(crate) async fn text(&self, url: &str, response: Response) -> Result<String, LlmError> {
        let at = self.at(url);
        tokio::time::timeout(self.timeout, response.text())
            .await
            .map_err(|_| LlmError::transient(&at, "the response body stalled"))?
            .map_err(|e| from_reqwest(&at, e))
    }

    /// Reads and parses a JSON body; garbage is a protocol error quoting the start of the body.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        url: &str,
        response: Response,
    ) -> Result<T, LlmError> {
        let body = self.text(url, response).await?;
        parse_json(&self.at(url), &body)
    }

    /// The `data:` fields of a server-sent-event body, failing if no event arrives within the timeout.
    pub(crate) fn sse_data(
        &self,
        url: &str,
        response: Response,
    ) -> BoxStream<'static, Result<String, LlmError>> {
        let at = self.at(url);
        let idle = self.timeout;
        let events = response.bytes_stream().eventsource().boxed();
        stream::unfold(Some(events), move |events| {
            let at = at.clone();
            async move {
                let mut events = events?;
                let item = match tokio::time::timeout(idle, events.next()).await {
                    Err(_) => Err(LlmError::transient(
                        &at,
                        format!("the stream stalled: nothing for {} s", idle.as_secs_f64()),
                    )),
                    Ok(None) => return None,
                    Ok(Some(Ok(event))) => return Some((Ok(event.data), Some(events))),
                    Ok(Some(Err(EventStreamError::Transport(e)))) => Err(from_reqwest(&at, e)),
                    Ok(Some(Err(EventStreamError::Utf8(e)))) => Err(LlmError::protocol(
                        &at,
                        format!("the stream is not UTF-8: {e}"),
                    )),
                    Ok(Some(Err(EventStreamError::Parser(e)))) => Err(LlmError::protocol(
                        &at,
                        format!("malformed server-sent events: {e}"),
                    )),
                };
                // After an error the stream is over.
                Some((item, None))
            }
        })
        .boxed()
    }
}

/// True when the vendor answered a streaming request with a plain JSON body (usually an error).
pub(crate) fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// What one decoded stream item means to the shared delta stream.
pub(crate) enum Step {
    /// Text to hand to the caller.
    Delta(String),
    /// Nothing to hand on (role markers, keep-alives, usage-only frames).
    Skip,
    /// The vendor's end-of-answer marker, optionally with a last piece of text.
    Done(Option<String>),
}

/// Turns vendor stream items into text deltas: stops at `Done` or the first error, and reports a
/// stream that ends without the vendor's end marker as a transient failure rather than a short answer.
pub(crate) fn deltas<F>(
    at: String,
    items: BoxStream<'static, Result<String, LlmError>>,
    decode: F,
) -> TextStream
where
    F: FnMut(&str) -> Result<Step, LlmError> + Send + 'static,
{
    struct State<F> {
        at: String,
        items: BoxStream<'static, Result<String, LlmError>>,
        decode: F,
    }
    stream::unfold(Some(State { at, items, decode }), |state| async move {
        let mut st = state?;
        loop {
            let failure = match st.items.next().await {
                None => {
                    LlmError::transient(&st.at, "the stream ended before the answer was complete")
                }
                Some(Err(e)) => e,
                Some(Ok(data)) => match (st.decode)(&data) {
                    Ok(Step::Skip) => continue,
                    Ok(Step::Delta(text)) if text.is_empty() => continue,
                    Ok(Step::Delta(text)) => return Some((Ok(text), Some(st))),
                    Ok(Step::Done(Some(text))) if !text.is_empty() => {
                        return Some((Ok(text), None));
                    }
                    Ok(Step::Done(_)) => return None,
                    Err(e) => e,
                },
            };
            return Some((Err(failure), None));
        }
    })
    .boxed()
}

/// Parses JSON, reporting garbage as a protocol error with the start of the text.
pub(crate) fn parse_json<T: DeserializeOwned>(at: &str, body: &str) -> Result<T, LlmError> {
    serde_json::from_str(body)
        .map_err(|e| LlmError::protocol(at, format!("{e} in {:?}", snippet(body))))
}

/// Maps a transport error; the URL is dropped because a query string may carry a token.
pub(crate) fn from_reqwest(at: &str, e: reqwest::Error) -> LlmError {
    let kind = if e.is_decode() {
        Kind::Protocol
    } else {
        Kind::Transient
    };
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() {
        "the connection broke while reading"
    } else {
        "request failed"
    };
    // reqwest's own message is generic ("error sending request"); the cause says what happened.
    let e = e.without_url();
    let mut detail = format!("{what}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        detail.push_str(&format!(": {c}"));
        cause = c.source();
    }
    LlmError::of(kind, at, snippet(&detail))
}

/// The vendor's wait hint: `retry-after-ms`, then `retry-after` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let value = text(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.max(0.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The URL without its query string.
pub(crate) fn redact_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The first 300 characters of a body, on one line, for error messages.
pub(crate) fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// `text` with every secret (of a plausible key length) replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[Secret]) -> String {
    secrets
        .iter()
        .filter(|s| s.expose().len() >= 6)
        .fold(text.to_string(), |t, s| t.replace(s.expose(), "***"))
}
