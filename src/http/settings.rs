//! `[http]`: the HTTP API's listener and limits.

use serde::Deserialize;

/// `[http]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. "127.0.0.1:8080"; unset = no HTTP API.
    #[serde(default)]
    pub listen: Option<String>,
}
