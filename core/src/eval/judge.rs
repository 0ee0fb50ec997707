//! LLM-as-judge: the tutorial's seven dimensions and the citation faithfulness check. A
//! judge reply is parsed as strict JSON (never evaluated), and a reply that does not parse
//! fails its case instead of the run.

use serde::{Deserialize, Serialize};

use crate::llm::{ChatMessage, ChatModel, ChatRequest};

/// The seven dimensions, as JSON keys; every score is in 0..=1 and 1 is best (for
/// `hallucination_ratio`, 1 means nothing in the answer is made up).
pub const DIMENSIONS: [&str; 7] = [
    "retrieval_correctness",
    "answer_consistency",
    "hallucination_ratio",
    "correctness",
    "logic",
    "fluency",
    "human_likeness",
];

/// One judged case: a score per dimension, in `DIMENSIONS` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeScores {
    pub retrieval_correctness: f64,
    pub answer_consistency: f64,
    pub hallucination_ratio: f64,
    pub correctness: f64,
    pub logic: f64,
    pub fluency: f64,
    pub human_likeness: f64,
}

impl JudgeScores {
    /// Scores in `DIMENSIONS` order.
    pub fn values(&self) -> [f64; 7] {
        [
            self.retrieval_correctness,
            self.answer_consistency,
            self.hallucination_ratio,
            self.correctness,
            self.logic,
            self.fluency,
            self.human_likeness,
        ]
    }
}

/// Why a case could not be judged; recorded on the case, never fatal to the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeFailure {
    #[error("judge reply is not the requested JSON: {reason}; reply began {start:?}")]
    Unparseable { reason: String, start: String },
    #[error("judge model failed: {0}")]
    Model(String),
}

const JUDGE_PROMPT: &str = "You grade answers of a knowledge-base assistant. Score each dimension from 0 to 1 (1 is best):\n\
retrieval_correctness: the retrieved passages contain what the question needs;\n\
answer_consistency: the answer addresses the question asked;\n\
hallucination_ratio: 1 minus the share of the answer not supported by the passages;\n\
correctness: the answer is right (compare with the reference when one is given);\n\
logic: the answer is coherent and well reasoned;\n\
fluency: the answer reads naturally;\n\
human_likeness: the answer sounds like a knowledgeable colleague.\n\
Reply with one JSON object with exactly these seven keys and numbers as values, nothing else.";

const SUPPORT_PROMPT: &str = "Decide whether the passage supports the sentence. \
Reply with exactly {\"supported\": true} or {\"supported\": false}, nothing else.";

/// Parses a reply as one strict JSON value of type `T`. A single surrounding Markdown code
/// fence is tolerated (models add them unasked); anything else is a failure.
pub fn parse_strict<T: for<'de> Deserialize<'de>>(reply: &str) -> Result<T, JudgeFailure> {
    let trimmed = reply.trim();
    let body = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|rest| rest.strip_suffix("```"))
        .unwrap_or(trimmed);
    serde_json::from_str(body.trim()).map_err(|e| JudgeFailure::Unparseable {
        reason: e.to_string(),
        start: reply.chars().take(80).collect(),
    })
}

/// Parses the seven scores and checks each is within 0..=1.
pub fn parse_scores(reply: &str) -> Result<JudgeScores, JudgeFailure> {
    let scores: JudgeScores = parse_strict(reply)?;
    for (name, value) in DIMENSIONS.iter().zip(scores.values()) {
        if !(0.0..=1.0).contains(&value) {
            return Err(JudgeFailure::Unparseable {
                reason: format!("{name} = {value} is outside 0..=1"),
                start: reply.chars().take(80).collect(),
            });
        }
    }
    Ok(scores)
}

async fn ask(judge: &dyn ChatModel, system: &str, user: String) -> Result<String, JudgeFailure> {
    let request = ChatRequest {
        messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
        temperature: Some(0.0),
        max_tokens: Some(300),
    };
    judge
        .chat(request)
        .await
        .map(|r| r.text)
        .map_err(|e| JudgeFailure::Model(e.to_string()))
}

/// Grades one answer on the seven dimensions.
pub async fn judge_answer(
    judge: &dyn ChatModel,
    question: &str,
    passages: &[String],
    answer: &str,
    reference: Option<&str>,
) -> Result<JudgeScores, JudgeFailure> {
    let mut user = format!("Question:\n{question}\n\nRetrieved passages:\n");
    for (i, p) in passages.iter().enumerate() {
        user.push_str(&format!("[{}] {p}\n", i + 1));
    }
    if let Some(reference) = reference {
        user.push_str(&format!("\nReference answer:\n{reference}\n"));
    }
    user.push_str(&format!("\nAnswer to grade:\n{answer}"));
    parse_scores(&ask(judge, JUDGE_PROMPT, user).await?)
}

/// The faithfulness of one answer's citations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    /// Sentences carrying at least one `[n]`.
    pub cited_sentences: usize,
    /// Cited numbers with no such source.
    pub dangling: Vec<usize>,
    /// (sentence, source) pairs the judge found supported / unsupported / could not judge.
    pub supported: usize,
    pub unsupported: usize,
    pub failures: usize,
}

impl Faithfulness {
    /// Share of judged citations that are supported and exist; `None` when nothing is cited.
    pub fn score(&self) -> Option<f64> {
        let total = self.supported + self.unsupported + self.dangling.len();
        (total > 0).then(|| self.supported as f64 / total as f64)
    }
}

/// Sentences of `text` with the `[n]` numbers each cites, in order.
pub fn cited_sentences(text: &str) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut sentence = String::new();
    let mut chars = text.chars().peekable();
    // After a full stop, citations that follow it still belong to the sentence before.
    let mut closing = false;
    while let Some(ch) = chars.next() {
        sentence.push(ch);
        let next = chars.peek().copied();
        if closing {
            if ch == ']' && next != Some('[') {
                push_sentence(&mut out, std::mem::take(&mut sentence));
                closing = false;
            }
            continue;
        }
        let ends = matches!(ch, '。' | '！' | '？' | '!' | '?' | '\n')
            || (ch == '.' && next.is_none_or(char::is_whitespace));
        if ends && next == Some('[') {
            closing = true;
        } else if ends {
            push_sentence(&mut out, std::mem::take(&mut sentence));
        }
    }
    push_sentence(&mut out, sentence);
    out
}

fn push_sentence(out: &mut Vec<(String, Vec<usize>)>, sentence: String) {
    let mut numbers = Vec::new();
    let mut rest = sentence.as_str();
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find(']')
            && let Ok(n) = rest[..close].trim().parse::<usize>()
        {
            numbers.push(n);
        }
    }
    if !numbers.is_empty() {
        numbers.dedup();
        out.push((sentence.trim().to_owned(), numbers));
    }
}

/// Checks that every `[n]` in `answer` names one of `passages` (1-based), and asks the
/// judge whether each cited passage supports its sentence.
pub async fn faithfulness(
    judge: Option<&dyn ChatModel>,
    answer: &str,
    passages: &[String],
) -> Faithfulness {
    let mut f = Faithfulness::default();
    for (sentence, numbers) in cited_sentences(answer) {
        f.cited_sentences += 1;
        for n in numbers {
            let Some(passage) = n.checked_sub(1).and_then(|i| passages.get(i)) else {
                f.dangling.push(n);
                continue;
            };
            let Some(judge) = judge else { continue };
            let user = format!("Passage:\n{passage}\n\nSentence:\n{sentence}");
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Verdict {
                supported: bool,
            }
            match ask(judge, SUPPORT_PROMPT, user)
                .await
                .and_then(|r| parse_strict::<Verdict>(&r))
            {
                Ok(Verdict { supported: true }) => f.supported += 1,
                Ok(Verdict { supported: false }) => f.unsupported += 1,
                Err(_) => f.failures += 1,
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::fake_llm::scripted_model;

    const GOOD: &str = r#"{"retrieval_correctness":1,"answer_consistency":0.9,"hallucination_ratio":1,"correctness":0.5,"logic":1,"fluency":1,"human_likeness":0.8}"#;

    #[test]
    fn scores_parse_strictly_and_tolerate_one_fence() {
        assert_eq!(parse_scores(GOOD).unwrap().correctness, 0.5);
        assert!(parse_scores(&format!("```json\n{GOOD}\n```")).is_ok());
        assert!(parse_scores(&format!("Sure! {GOOD}")).is_err());
        let missing = r#"{"correctness":1}"#;
        assert!(parse_scores(missing).is_err());
        let out_of_range = GOOD.replace("\"logic\":1", "\"logic\":7");
        let err = parse_scores(&out_of_range).unwrap_err().to_string();
        assert!(err.contains("logic = 7"), "{err}");
    }

    #[test]
    fn sentences_keep_their_citations() {
        let s = cited_sentences("甲是乙[1]。丙是丁。[2] Then x [1][3]. No cite.");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].1, [1]);
        assert_eq!(s[1].1, [2]);
        assert_eq!(s[2].1, [1, 3]);
    }

    #[tokio::test]
    async fn a_garbage_judge_reply_fails_the_case_not_the_run() {
        let judge = scripted_model(&["I think it's about 8/10 :)", "__import__('os')"]).await;
        let result = judge_answer(judge.as_ref(), "q", &["p".into()], "a", None).await;
        assert!(
            matches!(result, Err(JudgeFailure::Unparseable { .. })),
            "{result:?}"
        );
        // A code-looking reply is text to reject, never something to run.
        let result = judge_answer(judge.as_ref(), "q", &[], "a", Some("r")).await;
        assert!(
            matches!(result, Err(JudgeFailure::Unparseable { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_good_judge_reply_scores_the_case() {
        let judge = scripted_model(&[GOOD]).await;
        let scores = judge_answer(judge.as_ref(), "q", &[], "a", None)
            .await
            .unwrap();
        assert_eq!(scores.values()[1], 0.9);
    }

    #[tokio::test]
    async fn faithfulness_counts_dangling_supported_and_unjudgeable_citations() {
        let judge =
            scripted_model(&[r#"{"supported": true}"#, r#"{"supported": false}"#, "yes"]).await;
        let passages = vec!["甲是乙".to_string(), "丙".to_string(), "戊".to_string()];
        let f = faithfulness(
            Some(judge.as_ref()),
            "甲是乙[1]。丙是丁[2][9]。戊[3]。",
            &passages,
        )
        .await;
        assert_eq!(f.dangling, [9]);
        assert_eq!((f.supported, f.unsupported, f.failures), (1, 1, 1));
        assert_eq!(f.cited_sentences, 3);
        assert_eq!(f.score(), Some(1.0 / 3.0));
        // Without a judge, existence is still checked.
        let f = faithfulness(None, "x [4].", &passages).await;
        assert_eq!(f.dangling, [4]);
    }
}
