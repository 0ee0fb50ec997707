//! `[http]`: the HTTP API's listener and limits.

use serde::Deserialize;

/// `[http]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. "127.0.0.1:8080"; unset = no HTTP API.
    #[serde(default)]
    pub listen: Option<String>,
    /// Largest JSON request body, in KiB.
    pub max_json_kib: usize,
    /// Time limit of one request, in seconds (an answer's whole stream included).
    pub request_timeout_secs: u64,
    /// How long a client may take to send a request's head (line and headers), in seconds;
    /// then the connection is closed (a client trickling headers holds nothing for long).
    pub header_timeout_secs: u64,
    /// After SIGTERM, how long in-flight answers may run before they end with a notice.
    pub shutdown_drain_secs: u64,
    /// Name of the environment variable holding the API tokens ("token:tenant:role,...").
    pub tokens_env: String,
}

impl HttpSettings {
    /// Range checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("http.{key}"), reason.to_owned()));
        if self.max_json_kib == 0 {
            return bad("max_json_kib", "must be at least 1");
        }
        if self.request_timeout_secs == 0 {
            return bad("request_timeout_secs", "must be at least 1");
        }
        if self.header_timeout_secs == 0 {
            return bad("header_timeout_secs", "must be at least 1");
        }
        // `lore serve` abandons surfaces 20 s after the signal; answers must end before.
        if self.shutdown_drain_secs > 15 {
            return bad("shutdown_drain_secs", "must be at most 15");
        }
        if self.tokens_env.trim().is_empty() {
            return bad("tokens_env", "must name an environment variable");
        }
        Ok(())
    }
}
