//! A setting that is wrong, as every section's `validate` reports it.

/// A setting that is wrong, named by its full key (`ingest.chunk_size`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {reason}")]
pub struct SettingError {
    pub key: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, reason: String) -> Self {
        Self {
            key: key.into(),
            reason,
        }
    }

    /// A constructor for the keys of one section: `bad("top_k", reason)` names `retrieval.top_k`.
    pub fn in_section(section: &'static str) -> impl Fn(&str, String) -> SettingError {
        move |key, reason| SettingError::new(format!("{section}.{key}"), reason)
    }
}
