//! `lore eval generate`: an LLM writes question/answer/source triples from each page or
//! section of the documents (the tutorial's QA-generation step). Replies are parsed
//! strictly; items that do not parse, or whose quote is not in the page, are counted.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::judge::parse_strict;
use crate::ingest::document::Document;
use crate::ingest::load;
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmSettings, Secrets, build_chat_model};

/// `lore eval generate`.
#[derive(Debug, Clone)]
pub struct GenerateArgs {
    /// Files or directories to write questions about.
    pub corpus: Vec<PathBuf>,
    /// Questions asked of the model per page or section.
    pub per_page: usize,
    /// Pages or sections used at most (the first ones).
    pub max_pages: Option<usize>,
    /// JSONL file to write, in the format `lore eval retrieval --qa` reads.
    pub out: PathBuf,
}

/// A generated case, one JSONL line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedQa {
    pub query: String,
    pub answer: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// What generation produced and what it had to reject.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerateStats {
    pub pages: usize,
    pub generated: usize,
    /// Items that were not a {question, answer, quote} object.
    pub unparseable_items: usize,
    /// Replies that were not a JSON array at all (or model failures).
    pub unparseable_replies: usize,
    /// Items whose quote does not occur in the page.
    pub unsupported: usize,
}

/// Pages shorter than this (a title page, a blank page) get no questions.
const MIN_PAGE_CHARS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    question: String,
    answer: String,
    quote: String,
}

const PROMPT: &str = "Write {n} question-answer pairs that a reader could answer from the text below only. \
Reply with a JSON array of objects with exactly the keys \"question\", \"answer\" and \"quote\" \
(a short exact quotation from the text that holds the answer), and nothing else. \
Write in the language of the text.";

/// Asks `model` for `per_page` cases per section of each document.
pub async fn generate(
    model: &dyn ChatModel,
    documents: &[Document],
    per_page: usize,
    max_pages: Option<usize>,
) -> (Vec<GeneratedQa>, GenerateStats) {
    let mut stats = GenerateStats::default();
    let mut out = Vec::new();
    let sections = documents
        .iter()
        .flat_map(|d| d.sections.iter().map(move |s| (d, s)))
        .filter(|(_, s)| s.text.trim().chars().count() >= MIN_PAGE_CHARS)
        .take(max_pages.unwrap_or(usize::MAX));
    for (doc, section) in sections {
        stats.pages += 1;
        let request = ChatRequest {
            messages: vec![
                ChatMessage::system(PROMPT.replace("{n}", &per_page.to_string())),
                ChatMessage::user(section.text.clone()),
            ],
            temperature: Some(0.3),
            max_tokens: None,
        };
        let items: Vec<serde_json::Value> = match model.chat(request).await {
            Ok(reply) => match parse_strict(&reply.text) {
                Ok(items) => items,
                Err(_) => {
                    stats.unparseable_replies += 1;
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(source = %doc.source, error = %e, "generation failed");
                stats.unparseable_replies += 1;
                continue;
            }
        };
        for item in items {
            let Ok(item) = serde_json::from_value::<Item>(item) else {
                stats.unparseable_items += 1;
                continue;
            };
            if item.quote.trim().is_empty() || !section.text.contains(item.quote.trim()) {
                stats.unsupported += 1;
                continue;
            }
            stats.generated += 1;
            out.push(GeneratedQa {
                query: item.question,
                answer: item.answer,
                source: doc.source.clone(),
                page: section.page,
            });
        }
    }
    (out, stats)
}

/// `lore eval generate`: loads the corpus, generates, writes JSONL and prints the counts.
pub async fn run(llm: &LlmSettings, args: &GenerateArgs) -> Result<GenerateStats, EvalError> {
    let model = build_chat_model(llm, &Secrets::from_env()?)?.ok_or_else(|| {
        EvalError::Usage("lore eval generate needs a language model: set [llm] provider".into())
    })?;
    let mut documents = Vec::new();
    for root in &args.corpus {
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.map_err(|e| EvalError::Usage(format!("{}: {e}", root.display())))?;
            let path = entry.path();
            let Some(kind) = load::kind_for_path(path).filter(|_| path.is_file()) else {
                continue;
            };
            let bytes = std::fs::read(path).map_err(EvalError::io(path))?;
            let name = path.display().to_string();
            let document =
                load::load_bytes(&name, kind, &bytes).map_err(|e| EvalError::Ingest {
                    name,
                    reason: e.to_string(),
                })?;
            documents.push(document);
        }
    }
    let (cases, stats) = generate(model.as_ref(), &documents, args.per_page, args.max_pages).await;
    let mut jsonl = String::new();
    for case in &cases {
        jsonl.push_str(&serde_json::to_string(case).expect("serialises"));
        jsonl.push('\n');
    }
    super::report::write(&args.out, &jsonl)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::fake_llm::scripted_model;
    use crate::ingest::document::{DocKind, Section};

    #[tokio::test]
    async fn bad_items_and_replies_are_counted_not_dropped() {
        let text =
            "支持向量机是一种二分类模型，它的基本模型是定义在特征空间上的间隔最大的线性分类器。";
        let doc = Document {
            source: "svm.pdf".into(),
            kind: DocKind::Pdf,
            title: None,
            sections: vec![
                Section {
                    text: text.into(),
                    page: Some(3),
                    ..Section::default()
                },
                Section {
                    text: text.into(),
                    page: Some(4),
                    ..Section::default()
                },
            ],
        };
        let model = scripted_model(&[
            r#"[{"question":"支持向量机是什么？","answer":"二分类模型","quote":"一种二分类模型"},
                {"question":"缺答案"},
                {"question":"q","answer":"a","quote":"不在原文"}]"#,
            "Here are your questions: 1. ...",
        ])
        .await;
        let (cases, stats) = generate(model.as_ref(), &[doc], 3, None).await;
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].page, Some(3));
        assert_eq!(cases[0].source, "svm.pdf");
        assert_eq!(
            stats,
            GenerateStats {
                pages: 2,
                generated: 1,
                unparseable_items: 1,
                unparseable_replies: 1,
                unsupported: 1,
            }
        );
    }
}
