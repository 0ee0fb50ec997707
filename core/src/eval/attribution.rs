//! `lore eval attribution`: does attribution's support threshold tell a sentence written
//! from a passage from one that is not? Each reference answer of a set is attributed
//! sentence by sentence twice, as if a model had written it: against its gold passage (the
//! gold page of a page-based set, the context of a SQuAD set), where its sentences should
//! count as supported, and against another case's gold passage, where they should not. The
//! result is the share of judged sentences supported on each side at a range of thresholds,
//! so `answer.support_threshold` is chosen by measurement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::EvalError;
use super::dataset::{self, Gold, QaCase, QaSet};
use crate::answer::{Attributor, Unsupported};
use crate::embed::bm25::Bm25Encoder;
use crate::ingest::load::{LoadLimits, load_path};

/// Thresholds reported; settings.toml's default is among them.
pub const THRESHOLDS: [f32; 7] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// `lore eval attribution`.
#[derive(Debug, Clone)]
pub struct AttributionArgs {
    pub qa: PathBuf,
    /// Documents holding the gold pages of a page-based set.
    pub corpus: Vec<PathBuf>,
    pub page_base: u32,
    pub limit: Option<usize>,
}

/// The shares of judged sentences supported at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdRow {
    pub threshold: f32,
    /// Against the passage the answer was written from: higher is better.
    pub supported_by_gold: f32,
    /// Against another case's passage: lower is better.
    pub supported_by_other: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttributionResult {
    /// Cases with a reference answer and a gold passage.
    pub cases: usize,
    pub sentences: usize,
    /// Sentences long enough to judge (two terms or more, not a heading or a refusal).
    pub judged: usize,
    pub rows: Vec<ThresholdRow>,
}

/// Runs the measurement.
pub async fn run(args: &AttributionArgs) -> Result<AttributionResult, EvalError> {
    let mut set = dataset::load(&args.qa, args.page_base)?;
    if let Some(limit) = args.limit {
        set.cases.truncate(limit);
    }
    let pages = page_texts(&args.corpus).await?;
    let bm25 = Bm25Encoder::new();
    let pairs: Vec<(String, String)> = set
        .cases
        .iter()
        .filter_map(|case| {
            let answer = case.answers.iter().find(|a| !a.trim().is_empty())?;
            Some((as_sentence(case, answer), gold_text(case, &set, &pages)?))
        })
        .collect();
    if pairs.len() < 2 {
        return Err(EvalError::Usage(format!(
            "{}: fewer than two cases have both a reference answer and a gold passage \
             (a page-based set needs --corpus with its document)",
            args.qa.display()
        )));
    }
    Ok(measure(&bm25, &pairs))
}

/// The answer as a model would write it. A span answer of a SQuAD set ("踢爆", "4分钟":
/// short, no closing punctuation) is no sentence, so it is restated with its question, as
/// models do ("生命数耗完即算为什么踢爆。").
fn as_sentence(case: &QaCase, answer: &str) -> String {
    let answer = answer.trim();
    let sentence = answer.ends_with(['。', '！', '？', '.', '!', '?']);
    if sentence || answer.chars().count() >= 20 {
        return answer.to_owned();
    }
    let question = case.query.trim().trim_end_matches(['？', '?', '。', '.']);
    format!("{question}{answer}。")
}

/// The shares over (answer, gold passage) pairs; each answer's unrelated passage is the
/// gold passage of the case half the set away (skipping one equal to its own).
pub fn measure(bm25: &Bm25Encoder, pairs: &[(String, String)]) -> AttributionResult {
    let (mut sentences, mut gold_support, mut other_support) = (0, Vec::new(), Vec::new());
    let n = pairs.len();
    for (i, (answer, gold)) in pairs.iter().enumerate() {
        let other = (1..n)
            .map(|step| &pairs[(i + n / 2 + step - 1) % n].1)
            .find(|text| *text != gold)
            .unwrap_or(gold);
        let on_gold = supports(bm25, answer, gold);
        let on_other = supports(bm25, answer, other);
        sentences += on_gold.len();
        // The same sentences are judged on both sides: judging depends on the sentence
        // alone, except for the language check, which both passages pass or fail alike
        // on these sets.
        for (g, o) in on_gold.into_iter().zip(on_other) {
            if let (Some(g), Some(o)) = (g, o) {
                gold_support.push(g);
                other_support.push(o);
            }
        }
    }
    let share = |scores: &[f32], t: f32| {
        if scores.is_empty() {
            0.0
        } else {
            scores.iter().filter(|s| **s >= t).count() as f32 / scores.len() as f32
        }
    };
    AttributionResult {
        cases: n,
        sentences,
        judged: gold_support.len(),
        rows: THRESHOLDS
            .iter()
            .map(|&threshold| ThresholdRow {
                threshold,
                supported_by_gold: share(&gold_support, threshold),
                supported_by_other: share(&other_support, threshold),
            })
            .collect(),
    }
}

/// Each sentence's support by `passage` (None when not judged). A threshold of 0 makes
/// the attributor report every judged sentence's best share, whatever it is.
fn supports(bm25: &Bm25Encoder, answer: &str, passage: &str) -> Vec<Option<f32>> {
    let mut attributor = Attributor::new(bm25, &[passage], 0.0, Unsupported::Mark);
    attributor.push(answer);
    attributor.finish();
    attributor
        .sentences()
        .iter()
        .map(|s| s.supported.map(|_| s.support))
        .collect()
}

/// The text of the case's gold passage, when the set or the corpus has it.
fn gold_text(case: &QaCase, set: &QaSet, pages: &BTreeMap<u32, String>) -> Option<String> {
    match &case.gold {
        Gold::Source(id) => set
            .passages
            .iter()
            .find(|p| &p.id == id)
            .map(|p| p.text.clone()),
        Gold::Page { pages: wanted, .. } => {
            let text: Vec<&str> = wanted
                .iter()
                .filter_map(|p| pages.get(p).map(String::as_str))
                .collect();
            (!text.is_empty()).then(|| text.join("\n"))
        }
        Gold::AnswerText => None,
    }
}

/// Every page's text (1-based) of the corpus documents; pages of several documents with
/// the same number are joined.
async fn page_texts(corpus: &[PathBuf]) -> Result<BTreeMap<u32, String>, EvalError> {
    let mut pages: BTreeMap<u32, String> = BTreeMap::new();
    for path in corpus {
        let document = load_path(path, &LoadLimits::default())
            .await
            .map_err(|e| unreadable(path, e))?;
        for section in document.sections {
            if let Some(page) = section.page {
                let text = pages.entry(page).or_default();
                text.push_str(&section.text);
                text.push('\n');
            }
        }
    }
    Ok(pages)
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Dataset {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The result as a Markdown table.
pub fn summary_markdown(result: &AttributionResult) -> String {
    let mut out = format!(
        "{} answers, {} sentences, {} judged\n\n| support_threshold | supported by the gold passage | supported by another passage |\n|---|---|---|\n",
        result.cases, result.sentences, result.judged
    );
    for row in &result.rows {
        out.push_str(&format!(
            "| {:.1} | {:.3} | {:.3} |\n",
            row.threshold, row.supported_by_gold, row.supported_by_other
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_supported_by_their_own_passage_and_not_by_another() {
        let tea =
            "乌龙茶是一种半发酵茶，主要产自福建和台湾。绿茶不发酵，龙井和碧螺春都是有名的绿茶。";
        let svm = "支持向量机在样本空间中找到一个划分超平面，使两类样本之间的间隔最大。";
        let pairs = [
            ("乌龙茶主要产自福建和台湾。龙井是有名的绿茶。", tea),
            ("支持向量机使两类样本之间的间隔最大。", svm),
        ]
        .map(|(a, p)| (a.to_owned(), p.to_owned()));
        let result = measure(&Bm25Encoder::new(), &pairs);
        assert_eq!((result.cases, result.sentences, result.judged), (2, 3, 3));
        let at = |t: f32| {
            result
                .rows
                .iter()
                .find(|r| (r.threshold - t).abs() < 1e-6)
                .unwrap()
        };
        assert_eq!(at(0.6).supported_by_gold, 1.0);
        assert_eq!(at(0.6).supported_by_other, 0.0);
        // Shares never grow with the threshold.
        for pair in result.rows.windows(2) {
            assert!(pair[1].supported_by_gold <= pair[0].supported_by_gold);
        }
        assert!(summary_markdown(&result).contains("| 0.6 | 1.000 | 0.000 |"));
    }

    #[test]
    fn a_span_answer_is_restated_with_its_question() {
        let case = QaCase {
            id: "q".into(),
            query: "生命数耗完即算为什么？".into(),
            answers: vec!["踢爆".into()],
            gold: Gold::AnswerText,
        };
        assert_eq!(as_sentence(&case, "踢爆"), "生命数耗完即算为什么踢爆。");
        let long = "乌龙茶主要产自福建和台湾。";
        assert_eq!(as_sentence(&case, long), long);
    }
}
