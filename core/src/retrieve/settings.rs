//! `[retrieval]`: search modes and the evidence gate.

use serde::Deserialize;

use super::SearchMode;

crate::choice! {
    /// What a search ranks and returns.
    pub enum RankUnit {
        /// Sections (a PDF page, a Markdown section, a run of subtitle cues), one hit each.
        Section = "section",
        /// Raw chunks.
        Chunk = "chunk",
    }
}

crate::choice! {
    /// How the dense and BM25 section lists become one.
    pub enum Fusion {
        /// Weighted sum of each side's z-scores.
        Standardised = "standardised",
        /// Weighted reciprocal rank fusion.
        Rrf = "rrf",
    }
}
use crate::setting::SettingError;

/// `[retrieval]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSettings {
    pub mode: SearchMode,
    pub top_k: usize,
    pub rrf_k: u32,
    pub candidate_factor: usize,
    pub mmr_lambda: f32,
    pub min_dense_score: f32,
    pub min_term_coverage: f32,
    pub near_dense_score: f32,
    pub near_term_coverage: f32,
    pub rank_by: RankUnit,
    pub fusion: Fusion,
    pub dense_weight: f32,
    pub cut_instructions: bool,
    pub reference_weight: f32,
    pub passage_chars: usize,
}

impl RetrievalSettings {
    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = SettingError::in_section("retrieval");
        if self.top_k == 0 || self.top_k > 100 {
            return Err(bad("top_k", format!("{} is outside 1..=100", self.top_k)));
        }
        if self.candidate_factor == 0 {
            return Err(bad("candidate_factor", "must be at least 1".into()));
        }
        if self.passage_chars == 0 {
            return Err(bad("passage_chars", "must be at least 1".into()));
        }
        if !(0.0..=100.0).contains(&self.reference_weight) {
            return Err(bad(
                "reference_weight",
                format!("{} is outside 0..=100", self.reference_weight),
            ));
        }
        if self.rrf_k == 0 {
            return Err(bad("rrf_k", "must be at least 1".into()));
        }
        for (key, value) in [
            ("mmr_lambda", self.mmr_lambda),
            ("min_term_coverage", self.min_term_coverage),
            ("near_term_coverage", self.near_term_coverage),
            ("dense_weight", self.dense_weight),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(key, format!("{value} is outside 0..=1")));
            }
        }
        for (key, value) in [
            ("min_dense_score", self.min_dense_score),
            ("near_dense_score", self.near_dense_score),
        ] {
            if !(-1.0..=1.0).contains(&value) {
                return Err(bad(key, format!("{value} is outside -1..=1 (a cosine)")));
            }
        }
        Ok(())
    }
}
