//! Zhipu GLM through its native v4 API: OpenAI's JSON, authenticated with a short-lived HS256 JWT
//! signed from an `id.secret` key (or a plain bearer key when the key has no dot).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::Serialize;

use super::error::Kind;
use super::http::Transport;
use super::openai::{BearerAuth, OpenAiChat, OpenAiEmbeddings, classify_openai_body};
use super::{LlmError, ModelOptions, Secret};

/// Zhipu's public v4 endpoint.
pub const DEFAULT_BASE_URL: &str = "https://open.bigmodel.cn/api/paas/v4";
/// Inputs per `/embeddings` call that `embedding-3` accepts.
pub const EMBEDDING_BATCH_LIMIT: usize = 64;
/// How long each signed token is valid; it is reused until a minute before that.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The claims Zhipu expects, all times in milliseconds.
#[derive(Serialize, serde::Deserialize, Debug)]
pub(crate) struct ZhipuClaims {
    pub api_key: String,
    pub exp: u64,
    pub timestamp: u64,
}

enum KeyForm {
    /// `id.secret`: sign a JWT with the secret.
    Signed { id: String, secret: Secret },
    /// No dot: send as is.
    Plain(Secret),
}

/// Bearer tokens for Zhipu, signed and cached.
pub(crate) struct ZhipuAuth {
    full_key: Secret,
    key: KeyForm,
    cache: Mutex<Option<(Secret, Instant)>>,
}

impl fmt::Debug for ZhipuAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = match self.key {
            KeyForm::Signed { .. } => "signed JWT",
            KeyForm::Plain(_) => "plain key",
        };
        write!(f, "ZhipuAuth({form})")
    }
}

impl ZhipuAuth {
    /// Splits the key at its first dot; without one it is used as a plain bearer key.
    pub(crate) fn new(key: Secret) -> Self {
        let form = match key.expose().split_once('.') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => KeyForm::Signed {
                id: id.to_string(),
                secret: Secret::new(secret),
            },
            _ => KeyForm::Plain(key.clone()),
        };
        ZhipuAuth {
            full_key: key,
            key: form,
            cache: Mutex::new(None),
        }
    }

    /// Signs a token valid for `ttl` from `now` (milliseconds since the epoch).
    pub(crate) fn sign(
        id: &str,
        secret: &Secret,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Secret, LlmError> {
        let claims = ZhipuClaims {
            api_key: id.to_string(),
            exp: now_ms + ttl.as_millis() as u64,
            timestamp: now_ms,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.extras.insert("sign_type", "SIGN");
        let key = EncodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| LlmError::config(format!("zhipu: unusable API key secret: {e}")))?;
        jsonwebtoken::encode(&header, &claims, &key)
            .map(Secret::new)
            .map_err(|e| LlmError::config(format!("zhipu: could not sign the token: {e}")))
    }
}

impl BearerAuth for ZhipuAuth {
    fn bearer(&self) -> Result<Option<Secret>, LlmError> {
        let (id, secret) = match &self.key {
            KeyForm::Plain(key) => return Ok(Some(key.clone())),
            KeyForm::Signed { id, secret } => (id, secret),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, expires)) = cache.as_ref()
            && Instant::now() + TOKEN_MARGIN < *expires
        {
            return Ok(Some(token.clone()));
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let token = Self::sign(id, secret, now_ms, TOKEN_TTL)?;
        *cache = Some((token.clone(), Instant::now() + TOKEN_TTL));
        Ok(Some(token))
    }

    fn secrets(&self) -> Vec<Secret> {
        let mut all = vec![self.full_key.clone()];
        if let KeyForm::Signed { secret, .. } = &self.key {
            all.push(secret.clone());
        }
        all
    }
}

/// Zhipu's error codes (`{"error":{"code":"1261",...}}`), falling back to OpenAI's vocabulary.
pub(crate) fn classify_zhipu_body(status: StatusCode, body: &str) -> Option<Kind> {
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/code").map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| c.to_string())
            })
        });
    match code.as_deref() {
        Some("1261") => Some(Kind::ContextTooLong),
        // Concurrency, frequency and "too many requests" limits pass; the daily limit (1304) does not.
        Some("1302" | "1303" | "1305") => Some(Kind::Transient),
        Some("1230" | "1234" | "500") => Some(Kind::Transient),
        Some(_) if status.is_server_error() => Some(Kind::Transient),
        // Auth (1000-1004), arrears (1113), content safety (1301), parameters (12xx), daily limit (1304).
        Some(_) => Some(Kind::Permanent),
        None => classify_openai_body(status, body),
    }
}

/// A GLM chat model.
pub(crate) fn chat(
    base_url: &str,
    key: Secret,
    opts: ModelOptions,
) -> Result<OpenAiChat, LlmError> {
    OpenAiChat::with_auth(
        "zhipu",
        base_url,
        Arc::new(ZhipuAuth::new(key)),
        opts,
        classify_zhipu_body,
    )
}

/// Zhipu's `/embeddings` (`embedding-3`, `embedding-2`).
pub(crate) fn embeddings(
    base_url: &str,
    key: Secret,
    model: &str,
    dimensions: Option<usize>,
    timeout: Duration,
) -> Result<OpenAiEmbeddings, LlmError> {
    let auth = Arc::new(ZhipuAuth::new(key));
    let http = Transport::new("zhipu", timeout, classify_zhipu_body, auth.secrets())?;
    Ok(OpenAiEmbeddings::new(
        "zhipu",
        base_url,
        model,
        auth,
        http,
        dimensions,
        EMBEDDING_BATCH_LIMIT,
    ))
}
