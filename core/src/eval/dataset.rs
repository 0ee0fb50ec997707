//! Validation sets in the three formats `lore eval` reads, turned into one shape: the
//! passages to index (SQuAD carries its own) and the cases with what counts as a hit.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::EvalError;
use crate::store::Chunk;

/// A validation set: passages to index (empty when the corpus comes from `--corpus`) and
/// the questions.
#[derive(Debug, Clone, Default)]
pub struct QaSet {
    pub passages: Vec<Passage>,
    pub cases: Vec<QaCase>,
}

/// A passage of a SQuAD-style set, ingested as its own source named `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub id: String,
    pub text: String,
}

/// One question and what a correct retrieval or answer looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct QaCase {
    /// Stable id: the SQuAD id, or the line/item number.
    pub id: String,
    pub query: String,
    /// Reference answers (SQuAD lists several).
    pub answers: Vec<String>,
    pub gold: Gold,
}

/// What makes a retrieved chunk relevant.
#[derive(Debug, Clone, PartialEq)]
pub enum Gold {
    /// A chunk of this source (SQuAD passage id, or a file name).
    Source(String),
    /// A chunk on one of these 1-based pages, of this source when given.
    Page {
        source: Option<String>,
        pages: Vec<u32>,
    },
    /// A chunk whose text contains one of the reference answers.
    AnswerText,
}

impl Gold {
    /// Whether `chunk` is relevant for a case with `answers`.
    pub fn matches(&self, chunk: &Chunk, answers: &[String]) -> bool {
        match self {
            Gold::Source(source) => same_source(&chunk.source, source),
            Gold::Page { source, pages } => {
                chunk.page.is_some_and(|p| pages.contains(&p))
                    && source
                        .as_deref()
                        .is_none_or(|s| same_source(&chunk.source, s))
            }
            Gold::AnswerText => answers
                .iter()
                .any(|a| !a.trim().is_empty() && chunk.text.contains(a.trim())),
        }
    }

    /// A short label for reports.
    pub fn label(&self) -> String {
        match self {
            Gold::Source(s) => s.clone(),
            Gold::Page { source, pages } => {
                let pages: Vec<String> = pages.iter().map(u32::to_string).collect();
                match source {
                    Some(s) => format!("{s} p.{}", pages.join(",")),
                    None => format!("p.{}", pages.join(",")),
                }
            }
            Gold::AnswerText => "answer text".into(),
        }
    }
}

/// A stored source name (a path as given) names `wanted` exactly, or ends in it as a path.
fn same_source(stored: &str, wanted: &str) -> bool {
    stored == wanted
        || stored
            .strip_suffix(wanted)
            .is_some_and(|rest| rest.ends_with('/') || rest.ends_with('\\'))
}

/// Reads a set, deciding the format from its content: an object with `data` is SQuAD, a
/// top-level array is the tutorial's list, anything else is JSONL. `page_base` is the
/// number the file gives the first page (the tutorial's PyMuPDF pages start at 0).
pub fn load(path: &Path, page_base: u32) -> Result<QaSet, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|err| EvalError::Io {
        path: path.to_owned(),
        err,
    })?;
    let bad = |reason: String| EvalError::Dataset {
        path: path.to_owned(),
        reason,
    };
    let set = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) if o.contains_key("data") => squad(Value::Object(o)).map_err(bad)?,
        Ok(Value::Array(items)) => tutorial(items, page_base).map_err(bad)?,
        _ => jsonl(&text, page_base).map_err(bad)?,
    };
    if set.cases.is_empty() {
        return Err(bad("no questions".into()));
    }
    Ok(set)
}

#[derive(Deserialize)]
struct Squad {
    data: Vec<SquadArticle>,
}

#[derive(Deserialize)]
struct SquadArticle {
    paragraphs: Vec<SquadParagraph>,
}

#[derive(Deserialize)]
struct SquadParagraph {
    context: String,
    qas: Vec<SquadQa>,
}

#[derive(Deserialize)]
struct SquadQa {
    id: Option<String>,
    question: String,
    #[serde(default)]
    answers: Vec<SquadAnswer>,
}

#[derive(Deserialize)]
struct SquadAnswer {
    text: String,
}

fn squad(value: Value) -> Result<QaSet, String> {
    let squad: Squad = serde_json::from_value(value).map_err(|e| format!("SQuAD format: {e}"))?;
    let mut set = QaSet::default();
    for paragraph in squad.data.into_iter().flat_map(|a| a.paragraphs) {
        // Passage ids follow file order (p0000, p0001, ...), stable across runs.
        let id = format!("p{:04}", set.passages.len());
        for qa in paragraph.qas {
            set.cases.push(QaCase {
                id: qa.id.unwrap_or_else(|| format!("q{}", set.cases.len())),
                query: qa.question.replace('\n', " "),
                answers: qa.answers.into_iter().map(|a| a.text).collect(),
                gold: Gold::Source(id.clone()),
            });
        }
        set.passages.push(Passage {
            id,
            text: paragraph.context,
        });
    }
    Ok(set)
}

/// A page given as a number, a numeric string, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum PageField {
    One(u32),
    Text(String),
    Many(Vec<u32>),
}

impl PageField {
    fn pages(self, base: u32) -> Result<Vec<u32>, String> {
        let raw = match self {
            PageField::One(p) => vec![p],
            PageField::Many(p) => p,
            PageField::Text(t) => vec![t.trim().parse().map_err(|_| format!("page {t:?}"))?],
        };
        raw.into_iter()
            .map(|p| {
                p.checked_sub(base)
                    .map(|p| p + 1)
                    .ok_or_else(|| format!("page {p} is below the first page {base}"))
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct TutorialItem {
    query: String,
    #[serde(default)]
    answer: Option<String>,
    page_num: PageField,
    #[serde(default)]
    source: Option<String>,
}

fn tutorial(items: Vec<Value>, page_base: u32) -> Result<QaSet, String> {
    let mut set = QaSet::default();
    for (i, item) in items.into_iter().enumerate() {
        let item: TutorialItem =
            serde_json::from_value(item).map_err(|e| format!("item {i}: {e}"))?;
        set.cases.push(QaCase {
            id: format!("q{i}"),
            query: item.query,
            answers: item.answer.into_iter().collect(),
            gold: Gold::Page {
                source: item.source,
                pages: item
                    .page_num
                    .pages(page_base)
                    .map_err(|e| format!("item {i}: {e}"))?,
            },
        });
    }
    Ok(set)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlItem {
    #[serde(default)]
    id: Option<String>,
    query: String,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    page: Option<PageField>,
}

fn jsonl(text: &str, page_base: u32) -> Result<QaSet, String> {
    let mut set = QaSet::default();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let item: JsonlItem =
            serde_json::from_str(line).map_err(|e| format!("line {line_no}: {e}"))?;
        let gold = match (item.page, item.source, &item.answer) {
            (Some(page), source, _) => Gold::Page {
                source,
                pages: page
                    .pages(page_base)
                    .map_err(|e| format!("line {line_no}: {e}"))?,
            },
            (None, Some(source), _) => Gold::Source(source),
            (None, None, Some(_)) => Gold::AnswerText,
            (None, None, None) => {
                return Err(format!(
                    "line {line_no}: needs a source, a page or an answer to judge a hit by"
                ));
            }
        };
        set.cases.push(QaCase {
            id: item.id.unwrap_or_else(|| format!("line{line_no}")),
            query: item.query,
            answers: item.answer.into_iter().collect(),
            gold,
        });
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn chunk(source: &str, page: Option<u32>, text: &str) -> Chunk {
        Chunk {
            tenant: "t".into(),
            source: source.into(),
            index: 0,
            text: text.into(),
            page,
            heading: None,
            timestamp: None,
            title: None,
            start: 0,
            end: 0,
            source_hash: String::new(),
        }
    }

    #[test]
    fn squad_passages_become_sources() {
        let (_d, path) = write(
            r#"{"data":[{"paragraphs":[{"context":"甲乙","qas":[{"id":"a","question":"甲?","answers":[{"text":"甲","answer_start":0}]}]},{"context":"丙","qas":[{"question":"丙?"}]}]}]}"#,
            "s.json",
        );
        let set = load(&path, 1).unwrap();
        assert_eq!(set.passages.len(), 2);
        assert_eq!(set.cases[1].gold, Gold::Source("p0001".into()));
        assert_eq!(set.cases[0].answers, ["甲"]);
    }

    #[test]
    fn tutorial_list_pages_are_shifted_by_the_base() {
        let (_d, path) = write(r#"[{"query":"q","answer":"a","page_num":13}]"#, "t.json");
        let set = load(&path, 0).unwrap();
        let gold = &set.cases[0].gold;
        assert!(gold.matches(&chunk("book.pdf", Some(14), ""), &[]));
        assert!(!gold.matches(&chunk("book.pdf", Some(13), ""), &[]));
    }

    #[test]
    fn jsonl_gold_by_source_page_or_answer() {
        let (_d, path) = write(
            "{\"query\":\"a\",\"source\":\"b.md\"}\n\n{\"query\":\"c\",\"answer\":\"xyz\"}\n",
            "j.jsonl",
        );
        let set = load(&path, 1).unwrap();
        assert!(
            set.cases[0]
                .gold
                .matches(&chunk("docs/b.md", None, ""), &[])
        );
        assert!(
            !set.cases[0]
                .gold
                .matches(&chunk("docs/ab.md", None, ""), &[])
        );
        let c = &set.cases[1];
        assert!(c.gold.matches(&chunk("x", None, "..xyz.."), &c.answers));
    }

    #[test]
    fn a_bad_line_is_named_with_the_file() {
        let (_d, path) = write("{\"query\":\"a\"}\n", "bad.jsonl");
        let err = load(&path, 1).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl") && err.contains("line 1"), "{err}");
    }
}
