//! `[answer]`: prompts and budgets for LLM answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::setting::SettingError;

/// `[answer]` in settings.toml; every key is documented there with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSettings {
    pub system_prompt_en: String,
    pub system_prompt_zh: String,
    pub condense_prompt_en: String,
    pub condense_prompt_zh: String,
    /// Replaces both system prompts when set: a file holding one template.
    pub system_prompt_file: Option<PathBuf>,
    /// Tokens reserved for the answer when `llm.max_tokens` is unset.
    pub answer_tokens: usize,
    /// History turns sent to the model at most (older ones are dropped first).
    pub history_turns: usize,
    /// Share of a sentence's terms a passage must hold to support it.
    pub support_threshold: f32,
    /// What happens to a sentence no source supports: "mark" or "drop".
    pub unsupported: super::Unsupported,
    /// Answers whose grounding is below this are replaced by "not in the knowledge base"
    /// (0 keeps every answer; above 0 an answer is held until it is complete).
    pub min_grounding: f32,
    /// When the model says the sources hold no answer but a passage holds at least this
    /// share of the question's terms, the best passages are offered, quoted (above 1: never).
    pub offer_passages_coverage: f32,
    /// Source name prefixes and the URLs they are published under, so citations link.
    #[serde(default)]
    pub source_links: BTreeMap<String, String>,
}

impl AnswerSettings {
    /// `source_links` as the citations use them.
    pub fn links(&self) -> super::SourceLinks {
        super::SourceLinks::new(self.source_links.clone())
    }

    /// Reads `system_prompt_file`, when set, into both system prompts.
    pub fn load_prompt_file(&mut self) -> Result<(), SettingError> {
        if let Some(path) = &self.system_prompt_file {
            let template = std::fs::read_to_string(path).map_err(|e| {
                SettingError::new(
                    "answer.system_prompt_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            self.system_prompt_en = template.clone();
            self.system_prompt_zh = template;
        }
        Ok(())
    }

    /// Checks serde cannot express, each naming its key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = SettingError::in_section("answer");
        for (key, template) in [
            ("system_prompt_en", &self.system_prompt_en),
            ("system_prompt_zh", &self.system_prompt_zh),
        ] {
            if !template.contains("{context}") {
                return Err(bad(key, "must contain the {context} placeholder".into()));
            }
        }
        for (key, value) in [
            ("support_threshold", self.support_threshold),
            ("min_grounding", self.min_grounding),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(key, format!("must be between 0 and 1, not {value}")));
            }
        }
        if self.answer_tokens == 0 {
            return Err(bad("answer_tokens", "must be at least 1".into()));
        }
        Ok(())
    }
}
