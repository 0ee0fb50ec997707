//! `lore eval answers`: ask the assistant every question of a set and score its answers:
//! CMRC exact match and character F1, smoothed BLEU on jieba words, citation faithfulness,
//! multiple choice when the reference is option letters, and the seven-dimension judge.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::judge::{self, DIMENSIONS, Faithfulness, JudgeScores};
use super::results::{AnswerCase, AnswerReport, RunResult};
use super::retrieval::Index;
use super::{EvalError, RetrievalArgs, metrics};
use crate::kb::KnowledgeBaseSettings;
use crate::llm::{ChatModel, LlmSettings, Secrets, build_chat_model};
use crate::progress::Progress;
use crate::store::TenantScope;

/// Scores the assistant's answers on the run's index and attaches them to `result`.
pub async fn run(
    settings: &KnowledgeBaseSettings,
    judge: &LlmSettings,
    args: &RetrievalArgs,
    tenant: &str,
    progress: &dyn Progress,
) -> Result<RunResult, EvalError> {
    let (mut result, index, set) =
        super::retrieval::run_keeping_index(settings, args, tenant, progress).await?;
    let secrets = Secrets::from_env()?;
    let judge = build_chat_model(judge, &secrets)?;
    result.answers = Some(score_answers(&index, &set.cases, judge, progress).await?);
    Ok(result)
}

/// Answers every case and scores it; one failing case never stops the run.
pub async fn score_answers(
    index: &Index,
    cases: &[super::dataset::QaCase],
    judge: Option<Arc<dyn ChatModel>>,
    progress: &dyn Progress,
) -> Result<AnswerReport, EvalError> {
    let kb = &index.kb;
    let scope = TenantScope::only(&index.tenant);
    let jieba = jieba_rs::Jieba::new();
    let words = |text: &str| -> Vec<String> {
        jieba
            .cut(text, false)
            .into_iter()
            .filter(|w| !metrics::cmrc_tokens(w).is_empty())
            .map(str::to_owned)
            .collect()
    };
    let k = kb.settings.retrieval.top_k;
    progress.begin(cases.len() as u64, "answers");
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        progress.advance(1);
        let answer = match kb.assistant.answer(&scope, &case.query, &[], None).await {
            Ok(answer) => answer,
            Err(e) => {
                out.push(AnswerCase {
                    id: case.id.clone(),
                    answer: String::new(),
                    grounded: false,
                    exact_match: None,
                    f1: None,
                    bleu: None,
                    choice: None,
                    faithfulness: Faithfulness::default(),
                    judge: None,
                    judge_error: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        // The assistant's numbering is the rank in this same search (no history, same mode).
        let passages: Vec<String> = kb
            .retriever
            .search(&scope, &case.query, None, k)
            .await?
            .hits
            .into_iter()
            .map(|h| h.chunk.text)
            .collect();
        let refs = &case.answers;
        let has_refs = !refs.is_empty();
        let is_choice = is_multiple_choice(&case.query, refs);
        let bleu = refs
            .iter()
            .map(|r| metrics::smoothed_bleu(&words(&answer.text), &words(r)))
            .fold(None, |best: Option<f64>, b| {
                Some(best.map_or(b, |x| x.max(b)))
            });
        let faithfulness = judge::faithfulness(judge.as_deref(), &answer.text, &passages).await;
        let (scores, judge_error) = match &judge {
            None => (None, None),
            Some(j) => {
                match judge::judge_answer(
                    j.as_ref(),
                    &case.query,
                    &passages,
                    &answer.text,
                    refs.first().map(String::as_str),
                )
                .await
                {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
        };
        out.push(AnswerCase {
            id: case.id.clone(),
            grounded: answer.grounded,
            exact_match: has_refs.then(|| metrics::exact_match(&answer.text, refs)),
            f1: has_refs.then(|| metrics::char_f1(&answer.text, refs)),
            bleu,
            choice: is_choice.then(|| metrics::multiple_choice(&refs[0], &answer.text)),
            faithfulness,
            judge: scores,
            judge_error,
            error: None,
            answer: answer.text,
        });
    }
    progress.end();
    Ok(summarise(
        kb.llm.as_ref().map(|m| m.id().to_owned()),
        judge.as_ref().map(|m| m.id().to_owned()),
        out,
    ))
}

/// A multiple-choice case: the reference is option letters (A–H) and the question lists at
/// least options A and B ("A." "A、" "A)" ...), so an acronym answer such as "GTK" is not one.
pub fn is_multiple_choice(query: &str, refs: &[String]) -> bool {
    let letters = |r: &String| !r.is_empty() && r.chars().all(|c| ('A'..='H').contains(&c));
    let listed = |option: char| {
        [".", "、", ")", "）", "．", ":", "："]
            .iter()
            .any(|sep| query.contains(&format!("{option}{sep}")))
    };
    !refs.is_empty() && refs.iter().all(letters) && listed('A') && listed('B')
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let values: Vec<f64> = values.flatten().collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Means over the cases; a case without a metric does not count towards it.
pub fn summarise(
    model: Option<String>,
    judge_model: Option<String>,
    cases: Vec<AnswerCase>,
) -> AnswerReport {
    let judged: Vec<[f64; 7]> = cases
        .iter()
        .filter_map(|c| c.judge.as_ref().map(JudgeScores::values))
        .collect();
    let judge = if judged.is_empty() {
        BTreeMap::new()
    } else {
        DIMENSIONS
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    d.to_string(),
                    judged.iter().map(|v| v[i]).sum::<f64>() / judged.len() as f64,
                )
            })
            .collect()
    };
    AnswerReport {
        model,
        judge_model,
        exact_match: mean(cases.iter().map(|c| c.exact_match)),
        f1: mean(cases.iter().map(|c| c.f1)),
        bleu: mean(cases.iter().map(|c| c.bleu)),
        choice: mean(cases.iter().map(|c| c.choice)),
        faithfulness: mean(cases.iter().map(|c| c.faithfulness.score())),
        dangling_citations: cases.iter().map(|c| c.faithfulness.dangling.len()).sum(),
        judge,
        judge_failures: cases.iter().filter(|c| c.judge_error.is_some()).count(),
        answer_failures: cases.iter().filter(|c| c.error.is_some()).count(),
        cases,
    }
}

/// Per-dimension score lists for the distribution chart: EM, F1, BLEU, then the judge's.
pub fn distributions(report: &AnswerReport) -> Vec<(String, Vec<f64>)> {
    let mut dims: Vec<(String, Vec<f64>)> = vec![
        (
            "exact_match".into(),
            report.cases.iter().filter_map(|c| c.exact_match).collect(),
        ),
        (
            "f1".into(),
            report.cases.iter().filter_map(|c| c.f1).collect(),
        ),
        (
            "bleu".into(),
            report.cases.iter().filter_map(|c| c.bleu).collect(),
        ),
    ];
    for (i, d) in DIMENSIONS.iter().enumerate() {
        dims.push((
            d.to_string(),
            report
                .cases
                .iter()
                .filter_map(|c| c.judge.as_ref().map(|j| j.values()[i]))
                .collect(),
        ));
    }
    dims.retain(|(_, v)| !v.is_empty());
    dims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_questions_listing_options_are_multiple_choice() {
        let refs = |r: &str| vec![r.to_string()];
        assert!(is_multiple_choice(
            "哪些正确？A. 甲 B. 乙 C. 丙",
            &refs("AC")
        ));
        assert!(!is_multiple_choice("这个工具包叫什么？", &refs("GTK")));
        assert!(!is_multiple_choice("缩写是什么？", &refs("ABC")));
        assert!(!is_multiple_choice("A. 甲 B. 乙", &[]));
    }
}
