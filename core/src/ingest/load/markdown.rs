//! Markdown: one section per heading, with the heading path ("H1 > H2 > H3") as metadata.
//! The [`Outline`] builder here is shared by the HTML and DOCX loaders.

use super::LoadError;
use super::budget::Budget;
use crate::ingest::clean::{Fence, clean_markdown};
use crate::ingest::document::Section;

/// Splits Markdown at ATX headings (`#`..`######`) outside code fences. `root` (an HTML
/// page title) heads the path of every section. Setext headings are not recognised.
pub(super) fn sections(
    text: &str,
    root: Option<String>,
    budget: &mut Budget,
) -> Result<Vec<Section>, LoadError> {
    let mut outline = Outline::new(root);
    let mut fence: Option<Fence> = None;
    for line in text.lines() {
        budget.tick()?;
        match fence {
            Some(open) => {
                if open.is_closed_by(line) {
                    fence = None;
                }
            }
            None => {
                if let Some((level, title)) = atx_heading(line) {
                    outline.heading(level, title, line);
                    continue;
                }
                fence = Fence::open(line);
            }
        }
        outline.line(line);
    }
    Ok(outline.finish())
}

/// The document's title: its first level-1 ATX heading outside code fences, if any.
pub(super) fn title(text: &str) -> Option<String> {
    let mut fence: Option<Fence> = None;
    for line in text.lines() {
        match fence {
            Some(open) => {
                if open.is_closed_by(line) {
                    fence = None;
                }
            }
            None => match atx_heading(line) {
                Some((1, title)) if !title.is_empty() => return Some(title.to_owned()),
                _ => fence = Fence::open(line),
            },
        }
    }
    None
}

/// Parses an ATX heading line into its level and title.
fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|b| *b == b'#').count();
    let rest = &trimmed[level..];
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    // An optional closing run of '#' is not part of the title.
    let title = rest.trim().trim_end_matches('#').trim_end();
    Some((level, title))
}

/// Builds sections from a stream of headings and lines, tracking the heading path.
pub(super) struct Outline {
    root: Option<String>,
    /// Open headings: (level, title), outermost first.
    stack: Vec<(usize, String)>,
    sections: Vec<Section>,
    text: String,
    heading: Option<String>,
    /// Whether the current section has text besides its heading line.
    has_body: bool,
}

impl Outline {
    pub(super) fn new(root: Option<String>) -> Self {
        let root = root.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        Self {
            heading: root.clone(),
            root,
            stack: Vec::new(),
            sections: Vec::new(),
            text: String::new(),
            has_body: false,
        }
    }

    /// Starts a new section under a heading of `level` (1 = top); `line` is the heading as
    /// written, which opens the section's text.
    pub(super) fn heading(&mut self, level: usize, title: &str, line: &str) {
        self.flush();
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        let title = title.trim();
        if !title.is_empty() {
            self.stack.push((level, title.to_string()));
        }
        let mut path: Vec<&str> = self.root.iter().map(String::as_str).collect();
        for (_, t) in &self.stack {
            // A page's <h1> usually repeats its <title>; say it once.
            if path.last() != Some(&t.as_str()) {
                path.push(t);
            }
        }
        self.heading = (!path.is_empty()).then(|| path.join(" > "));
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Adds a line of Markdown to the current section.
    pub(super) fn line(&mut self, line: &str) {
        self.has_body |= !line.trim().is_empty();
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Closes the last section and returns them all, empty ones dropped.
    pub(super) fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }

    fn flush(&mut self) {
        let text = clean_markdown(&std::mem::take(&mut self.text));
        // A heading directly followed by a subheading carries no text of its own; its
        // title lives on in the subsections' paths.
        if std::mem::take(&mut self.has_body) && !text.is_empty() {
            self.sections.push(Section {
                text,
                heading: self.heading.clone(),
                ..Section::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::load::LoadLimits;

    fn sections(text: &str, root: Option<String>) -> Vec<Section> {
        let limits = LoadLimits::default();
        super::sections(text, root, &mut Budget::new("test.md", &limits)).unwrap()
    }

    #[test]
    fn headings_become_section_paths() {
        let md = "intro\n# A\ntext a\n## B\ntext b\n### C\ntext c\n## D\ntext d\n# E\ntext e";
        let s = sections(md, None);
        let got: Vec<(Option<&str>, &str)> = s
            .iter()
            .map(|s| (s.heading.as_deref(), s.text.lines().last().unwrap()))
            .collect();
        let want = [
            (None, "intro"),
            (Some("A"), "text a"),
            (Some("A > B"), "text b"),
            (Some("A > B > C"), "text c"),
            (Some("A > D"), "text d"),
            (Some("E"), "text e"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn section_text_starts_with_its_heading_line() {
        let s = sections("# 标题\n正文", None);
        assert_eq!(s[0].text, "# 标题\n正文");
    }

    #[test]
    fn hashes_inside_code_fences_are_not_headings() {
        let md = "# Top\n```python\n# a comment\nx = 1\n```\nafter";
        let s = sections(md, None);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].heading.as_deref(), Some("Top"));
        assert!(s[0].text.contains("# a comment\nx = 1"), "{}", s[0].text);
    }

    #[test]
    fn heading_without_body_is_dropped() {
        let s = sections("# A\n\n## B\nbody", None);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].heading.as_deref(), Some("A > B"));
    }

    #[test]
    fn not_headings() {
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("    # indented code"), None);
        assert_eq!(atx_heading("## closed ##"), Some((2, "closed")));
    }

    #[test]
    fn root_title_heads_every_path_once() {
        let s = sections("lead\n# Page\nx\n## Part\ny", Some("Page".to_string()));
        let paths: Vec<_> = s.iter().map(|s| s.heading.clone().unwrap()).collect();
        assert_eq!(paths, ["Page", "Page", "Page > Part"]);
    }

    #[test]
    fn guidelines_chapter_has_nested_paths_and_intact_code() {
        let path = lore_testkit::fixture("prompt_guidelines.md");
        let text = std::fs::read_to_string(path).unwrap();
        let s = sections(&text, None);
        let find = |h: &str| s.iter().find(|s| s.heading.as_deref() == Some(h));
        let tactic = find(
            "第一章 写好提示 Writing prompts > 一、原则一 说清楚要做什么 > 1.1 用分隔符隔开指令和输入",
        )
        .expect("tactic 1.1 section");
        // The code fence, its comment lines and its line breaks survive.
        assert!(
            tactic
                .text
                .contains("```python\nfrom helpers import ask_model\n\n# 待处理的输入文本\n"),
            "{}",
            tactic.text
        );
        assert!(tactic.text.contains("# 指令部分：用三个反引号包住输入"));
        assert!(
            find(
                "第一章 写好提示 Writing prompts > 二、原则二 给模型思考的时间 > 2.1 先列步骤再作答"
            )
            .is_some_and(|s| s.text.contains("   - 找出已知条件")),
            "nested list indentation is kept"
        );
        assert!(find("第一章 写好提示 Writing prompts > 三、局限性").is_some());
        // Comments inside fences never became headings.
        assert!(
            s.iter()
                .all(|s| !s.heading.as_deref().unwrap_or("").contains("待处理"))
        );
        // Every section but the lead has a heading path.
        assert!(s.iter().all(|s| s.heading.is_some()), "{s:?}");
    }

    #[test]
    fn every_prompt_engineering_chapter_loads() {
        // The nine chapters of the shared corpus, when it is beside the repository.
        let Some(dir) = lore_testkit::shared_corpus("knowledge_db/prompt_engineering") else {
            return;
        };
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let s = sections(&text, None);
            assert!(!s.is_empty(), "{}", path.display());
            assert!(
                s.iter().skip(1).all(|s| s.heading.is_some()),
                "{}",
                path.display()
            );
            files += 1;
        }
        assert_eq!(files, 9);
    }
}
