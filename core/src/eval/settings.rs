//! The `[eval]` settings: the judge model, configured apart from the answering model so a
//! model never grades its own answers unless you say so.

use serde::Deserialize;

use crate::llm::LlmSettings;

/// `[eval]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// The LLM-as-judge model (an `[llm]`-like table); provider "none" disables judging.
    pub judge: LlmSettings,
}
