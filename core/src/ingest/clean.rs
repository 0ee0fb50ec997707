//! CJK-aware text cleaning applied by every loader to every section.
//!
//! Rules, in order: line endings become `\n`; control characters go (tabs become spaces);
//! each line is trimmed and runs of spaces collapse to one; spaces between two CJK
//! characters go ("机 器 学 习" → "机器学习"); a single line break between two CJK characters is
//! removed, except after a sentence end (。！？), which PDFs use as their only paragraph
//! mark; an English word hyphenated across lines is joined ("learn-\ning" → "learning");
//! blank lines (paragraph breaks) are kept, at most one in a row.
//!
//! Between CJK and Latin text, spaces are kept exactly as written, never added or removed:
//! "深度 learning" and "深度learning" both stay as they are.

/// Cleans prose text (PDF pages, plain text, subtitles, DOCX paragraphs).
pub fn clean_text(text: &str) -> String {
    clean_block(text, Mode::Prose)
}

/// Cleans Markdown: like [`clean_text`], but fenced code blocks are left byte-for-byte
/// (bar line endings), and line indentation is kept because it carries list nesting.
pub fn clean_markdown(text: &str) -> String {
    let text = normalize_line_endings(text);
    let mut out = String::with_capacity(text.len());
    let mut prose = String::new();
    let mut fence: Option<Fence> = None;
    for line in text.split('\n') {
        match fence {
            Some(open) => {
                push_line(&mut out, &strip_controls(line, true));
                if open.is_closed_by(line) {
                    fence = None;
                }
            }
            None => match Fence::open(line) {
                Some(open) => {
                    flush_prose(&mut out, &mut prose);
                    push_line(&mut out, &strip_controls(line, true));
                    fence = Some(open);
                }
                None => {
                    prose.push_str(line);
                    prose.push('\n');
                }
            },
        }
    }
    flush_prose(&mut out, &mut prose);
    out.trim_matches('\n').to_string()
}

/// An opening code fence: its character and length, so only a matching line closes it.
#[derive(Clone, Copy)]
pub(crate) struct Fence {
    ch: char,
    len: usize,
}

impl Fence {
    /// Recognises a fence opening line: up to three spaces, then ``` or ~~~ (or longer).
    pub(crate) fn open(line: &str) -> Option<Fence> {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > 3 {
            return None;
        }
        let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let len = trimmed.chars().take_while(|c| *c == ch).count();
        // A backtick fence's info string may not contain backticks (CommonMark), which is
        // how "``` 和 ``` 做分隔符" in running text is told apart from a fence.
        let info = &trimmed[len * ch.len_utf8()..];
        (len >= 3 && !(ch == '`' && info.contains('`'))).then_some(Fence { ch, len })
    }

    /// Whether `line` closes this fence.
    pub(crate) fn is_closed_by(self, line: &str) -> bool {
        let trimmed = line.trim_start_matches(' ');
        let run = trimmed.chars().take_while(|c| *c == self.ch).count();
        line.len() - trimmed.len() <= 3
            && run >= self.len
            && trimmed[run * self.ch.len_utf8()..].trim().is_empty()
    }
}

fn flush_prose(out: &mut String, prose: &mut String) {
    let lines: Vec<&str> = prose.split_terminator('\n').collect();
    // Blank lines at the edges separate the prose from neighbouring fences; keep them.
    let leading_blank = lines.first().is_some_and(|l| l.trim().is_empty());
    let trailing_blank = lines.last().is_some_and(|l| l.trim().is_empty());
    let cleaned = clean_block(prose, Mode::Markdown);
    if !out.is_empty() && leading_blank {
        out.push('\n');
    }
    if !cleaned.is_empty() {
        out.push_str(&cleaned);
        out.push('\n');
        if trailing_blank {
            out.push('\n');
        }
    }
    prose.clear();
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Prose,
    Markdown,
}

fn normalize_line_endings(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Drops control characters (keeping `\n`); tabs become spaces unless `keep_tabs`.
fn strip_controls(text: &str, keep_tabs: bool) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' if keep_tabs => Some('\t'),
            '\t' => Some(' '),
            '\u{feff}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn clean_block(text: &str, mode: Mode) -> String {
    let text = strip_controls(&normalize_line_endings(text), false);
    let lines: Vec<String> = text.split('\n').map(|l| tidy_line(l, mode)).collect();

    let mut out = String::with_capacity(text.len());
    // Where the last output line starts: joined CJK lines make one long output line, and
    // searching back for its start at every join would be quadratic.
    let mut line_start = 0;
    let mut blank_run = 0;
    for line in &lines {
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            if blank_run > 0 {
                out.push_str("\n\n");
            } else {
                join_lines(&mut out, line_start, line, mode);
            }
            if out.ends_with('\n') {
                line_start = out.len();
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// Ends `out` (whose last line starts at `line_start`) so that `next` can be appended:
/// either a line break, nothing (CJK continuation), or a dropped hyphen.
fn join_lines(out: &mut String, line_start: usize, next: &str, mode: Mode) {
    let prev = out.chars().next_back();
    let first = next.chars().next();
    // A Markdown heading is a line of its own, whatever follows it.
    let prev_line = &out[line_start..];
    let after_heading = mode == Mode::Markdown && prev_line.trim_start().starts_with('#');
    if let (Some(p), Some(f)) = (prev, first)
        && !after_heading
    {
        if cjk_pair(p, f) && !is_sentence_end(p) {
            return;
        }
        if mode == Mode::Prose && p == '-' && f.is_ascii_lowercase() {
            let before_hyphen = out[..out.len() - 1].chars().next_back();
            if before_hyphen.is_some_and(|c| c.is_ascii_alphabetic()) {
                out.pop();
                return;
            }
        }
    }
    out.push('\n');
}

/// Trims a line, collapses space runs and removes spaces between CJK characters.
/// Markdown keeps leading indentation, and indented code lines are left alone.
fn tidy_line(line: &str, mode: Mode) -> String {
    let body = line.trim_start_matches([' ', '\u{3000}', '\u{a0}']);
    let indent = line.len() - body.len();
    let mut out = String::with_capacity(line.len());
    if mode == Mode::Markdown {
        if indent >= 4 && line[..indent].chars().all(|c| c == ' ') {
            return line.trim_end().to_string();
        }
        out.push_str(&" ".repeat(line[..indent].chars().count()));
    }
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            let start = i;
            while i < chars.len() && is_space(chars[i]) {
                i += 1;
            }
            let before = (start > 0).then(|| chars[start - 1]);
            let after = chars.get(i).copied();
            let between_cjk = matches!((before, after), (Some(b), Some(a)) if cjk_pair(b, a));
            if after.is_some() && !between_cjk {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{3000}' | '\u{2002}'..='\u{200a}')
}

/// Han ideographs, kana and CJK/full-width punctuation: scripts written without spaces.
/// Hangul is left out on purpose, because Korean separates words with spaces.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3000}'..='\u{303f}'   // CJK symbols and punctuation: 、。「」
        | '\u{3040}'..='\u{30ff}' // hiragana, katakana
        | '\u{3400}'..='\u{4dbf}' // extension A
        | '\u{4e00}'..='\u{9fff}' // unified ideographs
        | '\u{f900}'..='\u{faff}' // compatibility ideographs
        | '\u{fe30}'..='\u{fe4f}' // CJK compatibility forms
        | '\u{ff01}'..='\u{ff60}' // full-width forms: ，！？：；（）
        | '\u{ff61}'..='\u{ff9f}' // half-width katakana and punctuation
        | '\u{20000}'..='\u{3134f}' // extensions B..G
    )
}

/// Whether two neighbours belong to one run of CJK text. Curly quotes are shared with
/// English, so they count only next to a CJK character: “数学” in Chinese is full-width.
fn cjk_pair(before: char, after: char) -> bool {
    let quote = |c: char| matches!(c, '“' | '”' | '‘' | '’');
    (is_cjk(before) || quote(before))
        && (is_cjk(after) || quote(after))
        && (is_cjk(before) || is_cjk(after))
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '．')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_normalised() {
        assert_eq!(clean_text("a\r\nb\rc"), "a\nb\nc");
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(clean_text("ab\u{0}c\u{7}d\u{feff}"), "abcd");
        assert_eq!(clean_text("a\tb"), "a b");
    }

    #[test]
    fn cjk_line_breaks_are_joined() {
        assert_eq!(
            clean_text("本章作为开篇，主要讲解什么是机\n器学习"),
            "本章作为开篇，主要讲解什么是机器学习"
        );
        assert_eq!(clean_text("例如\n，线性回归"), "例如，线性回归");
        assert_eq!(
            clean_text("线性回归、\n对数几率回归"),
            "线性回归、对数几率回归"
        );
    }

    #[test]
    fn curly_quotes_join_chinese_but_not_english() {
        assert_eq!(clean_text("不够\n“数学” ，因此"), "不够“数学”，因此");
        assert_eq!(clean_text("He said “yes” “no”"), "He said “yes” “no”");
        assert_eq!(clean_text("“yes”\n“no”"), "“yes”\n“no”");
    }

    #[test]
    fn line_break_after_a_chinese_sentence_end_is_kept() {
        assert_eq!(clean_text("即可。\n本章也作为"), "即可。\n本章也作为");
    }

    #[test]
    fn line_break_next_to_latin_text_is_kept() {
        assert_eq!(clean_text("machine\nlearning"), "machine\nlearning");
        assert_eq!(clean_text("学习\nGitHub"), "学习\nGitHub");
    }

    #[test]
    fn spaces_between_cjk_characters_are_removed() {
        assert_eq!(clean_text("机 器 学 习"), "机器学习");
        assert_eq!(clean_text("机器  学习 ，很好"), "机器学习，很好");
        assert_eq!(clean_text("机器\u{3000}学习"), "机器学习");
    }

    #[test]
    fn english_words_keep_their_spaces() {
        assert_eq!(
            clean_text("machine   learning  is fun"),
            "machine learning is fun"
        );
    }

    #[test]
    fn spaces_between_cjk_and_latin_are_kept_as_written() {
        assert_eq!(clean_text("深度 learning"), "深度 learning");
        assert_eq!(clean_text("深度learning"), "深度learning");
        assert_eq!(clean_text("用 GPT 总结"), "用 GPT 总结");
    }

    #[test]
    fn korean_word_spaces_are_kept() {
        assert_eq!(clean_text("기계 학습"), "기계 학습");
    }

    #[test]
    fn lines_are_trimmed_and_space_runs_collapsed() {
        assert_eq!(clean_text("  a   b  \n   c "), "a b\nc");
    }

    #[test]
    fn paragraph_breaks_are_kept_but_not_stacked() {
        assert_eq!(clean_text("第一段\n\n\n\n第二段"), "第一段\n\n第二段");
        assert_eq!(clean_text("one\n  \n\ntwo"), "one\n\ntwo");
    }

    #[test]
    fn hyphenated_english_line_breaks_are_joined() {
        assert_eq!(clean_text("machine learn-\ning"), "machine learning");
        // A dash before a capital or a number is not hyphenation.
        assert_eq!(clean_text("GPT-\n4"), "GPT-\n4");
    }

    #[test]
    fn markdown_code_fences_are_left_alone() {
        let md = "# 标题\n\n中文\n段落\n\n```python\nx  =  1\n\n\n# 注释 行\n```\n之后\n文字";
        assert_eq!(
            clean_markdown(md),
            "# 标题\n\n中文段落\n\n```python\nx  =  1\n\n\n# 注释 行\n```\n之后文字"
        );
    }

    #[test]
    fn markdown_heading_is_not_joined_to_its_text() {
        assert_eq!(clean_markdown("## 标题\n正文\n续行"), "## 标题\n正文续行");
    }

    #[test]
    fn markdown_keeps_list_indentation() {
        assert_eq!(clean_markdown("- a\n  - b  c"), "- a\n  - b c");
    }

    #[test]
    fn markdown_inline_triple_backticks_do_not_open_a_fence() {
        let md = "```和``` 都是分隔符\n\n中  文";
        assert_eq!(clean_markdown(md), "```和``` 都是分隔符\n\n中文");
    }

    #[test]
    fn markdown_unclosed_fence_runs_to_the_end() {
        assert_eq!(clean_markdown("a\n```\nx  y"), "a\n```\nx  y");
    }
}
