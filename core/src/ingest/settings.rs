//! `[ingest]`: loading and splitting.

use serde::Deserialize;

use crate::setting::SettingError;

/// `[ingest]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub chunk_size: usize,
    pub chunk_overlap: usize,
    pub max_file_mib: u64,
    /// Bytes of uploads in flight across every request and chat, in MiB (one budget).
    pub max_inflight_mib: u32,
    /// Longest an upload waits for room in that budget before it is refused, in seconds.
    pub inflight_wait_secs: u64,
    pub fetch_timeout_secs: u64,
    pub allow_private_hosts: bool,
    pub embed_batch: usize,
    /// Most bytes one file may inflate to (a DOCX member, a PDF stream), in MiB.
    pub max_decompressed_mib: u64,
    /// Deepest element nesting read from HTML or DOCX XML.
    pub max_nesting_depth: usize,
    /// Most elements (HTML tags, XML elements, subtitle cues) read from one file.
    pub max_elements: usize,
    /// Time allowed to load one file, in seconds.
    pub load_timeout_secs: u64,
}

impl IngestSettings {
    /// Largest file (or download) accepted, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_mib.saturating_mul(1024 * 1024)
    }

    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = SettingError::in_section("ingest");
        if !(50..=8000).contains(&self.chunk_size) {
            return Err(bad(
                "chunk_size",
                format!("{} is outside 50..=8000 characters", self.chunk_size),
            ));
        }
        if self.chunk_overlap >= self.chunk_size {
            return Err(bad(
                "chunk_overlap",
                format!(
                    "{} must be smaller than ingest.chunk_size ({})",
                    self.chunk_overlap, self.chunk_size
                ),
            ));
        }
        if self.embed_batch == 0 {
            return Err(bad("embed_batch", "must be at least 1".into()));
        }
        if self.max_file_mib == 0 {
            return Err(bad("max_file_mib", "must be at least 1".into()));
        }
        if u64::from(self.max_inflight_mib) < self.max_file_mib {
            return Err(bad(
                "max_inflight_mib",
                format!(
                    "{} must be at least ingest.max_file_mib ({}), or a file at the limit never fits",
                    self.max_inflight_mib, self.max_file_mib
                ),
            ));
        }
        if self.fetch_timeout_secs == 0 {
            return Err(bad("fetch_timeout_secs", "must be at least 1".into()));
        }
        for (key, value) in [
            ("max_decompressed_mib", self.max_decompressed_mib),
            ("max_nesting_depth", self.max_nesting_depth as u64),
            ("max_elements", self.max_elements as u64),
            ("load_timeout_secs", self.load_timeout_secs),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        Ok(())
    }
}
