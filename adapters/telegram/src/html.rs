//! The core's reply text (plain text with Markdown code fences, `inline code` and **bold**)
//! rendered as Telegram HTML: every `<`, `>` and `&` escaped, and cut into messages of at
//! most `limit` visible UTF-16 units (Telegram measures a message after parsing its entities,
//! in UTF-16), never inside a tag: a code block cut in two is closed and reopened.

/// How a run of text is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Plain,
    Bold,
    Code,
    /// A fenced code block and its language, if it names one.
    Pre(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    kind: Kind,
    text: String,
}

/// One Telegram message: its HTML, and the same text without markup for the plain resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub html: String,
    /// What Telegram shows for `html`, sent as is when the HTML is refused.
    pub plain: String,
}

/// Renders `text` into messages of at most `limit` visible UTF-16 units each.
pub fn render(text: &str, limit: usize) -> Vec<Part> {
    let limit = limit.max(16);
    pack(parse(text), limit)
        .into_iter()
        .map(|runs| Part {
            html: runs.iter().map(to_html).collect(),
            plain: runs.iter().map(|r| r.text.as_str()).collect(),
        })
        .filter(|p| !p.plain.trim().is_empty())
        .collect()
}

/// Visible length as Telegram counts it.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Escapes the three characters Telegram HTML reserves.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn to_html(run: &Run) -> String {
    let body = escape(&run.text);
    match &run.kind {
        Kind::Plain => body,
        Kind::Bold => format!("<b>{body}</b>"),
        Kind::Code => format!("<code>{body}</code>"),
        Kind::Pre(Some(lang)) => {
            format!("<pre><code class=\"language-{lang}\">{body}</code></pre>")
        }
        Kind::Pre(None) => format!("<pre>{body}</pre>"),
    }
}

/// Splits the text into runs; a fence left open (a streaming preview) runs to the end.
fn parse(text: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut fence: Option<Option<String>> = None;
    let mut code = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match fence.take() {
                Some(lang) => push(&mut runs, Kind::Pre(lang), trim_newline(&code)),
                None => fence = Some(language(info)),
            }
            code.clear();
            continue;
        }
        match fence {
            Some(_) => code.push_str(line),
            None => inline(line, &mut runs),
        }
    }
    if let Some(lang) = fence {
        push(&mut runs, Kind::Pre(lang), trim_newline(&code));
    }
    runs
}

fn trim_newline(code: &str) -> &str {
    code.strip_suffix('\n').unwrap_or(code)
}

/// The fence's language when it is a plain identifier (it lands in an HTML attribute).
fn language(info: &str) -> Option<String> {
    let word = info.split_whitespace().next()?;
    let ok = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#' | '.'));
    (ok && word.len() <= 32).then(|| word.to_owned())
}

/// `code` and **bold** within one line; a delimiter without its closing twin stays literal.
fn inline(line: &str, runs: &mut Vec<Run>) {
    let (line, heading) = match heading_text(line) {
        Some(text) => (text, true),
        None => (line, false),
    };
    let base = if heading { Kind::Bold } else { Kind::Plain };
    let mut rest = line;
    while !rest.is_empty() {
        let tick = rest.find('`');
        let star = rest.find("**");
        let (at, delim, kind) = match (tick, star) {
            (Some(t), Some(s)) if s < t => (s, "**", Kind::Bold),
            (Some(t), _) => (t, "`", Kind::Code),
            (None, Some(s)) => (s, "**", Kind::Bold),
            (None, None) => break,
        };
        let after = &rest[at + delim.len()..];
        match after.find(delim) {
            Some(end) if end > 0 && !after[..end].contains('\n') => {
                push(runs, base.clone(), &rest[..at]);
                let kind = if heading && kind == Kind::Bold {
                    Kind::Bold
                } else {
                    kind
                };
                push(runs, kind, &after[..end]);
                rest = &after[end + delim.len()..];
            }
            _ => {
                push(runs, base.clone(), &rest[..at + delim.len()]);
                rest = after;
            }
        }
    }
    push(runs, base, rest);
}

/// A Markdown heading's text (with its line break), shown bold.
fn heading_text(line: &str) -> Option<&str> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    if (1..=6).contains(&hashes) {
        line[hashes..].strip_prefix(' ')
    } else {
        None
    }
}

/// Appends text, merging with the previous run of the same kind.
fn push(runs: &mut Vec<Run>, kind: Kind, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(last) = runs.last_mut()
        && last.kind == kind
        && !matches!(kind, Kind::Pre(_))
    {
        last.text.push_str(text);
        return;
    }
    runs.push(Run {
        kind,
        text: text.to_owned(),
    });
}

/// Packs runs into messages of at most `limit` visible units, cutting a run at a line
/// break, then a space or sentence end, and only then anywhere.
fn pack(runs: Vec<Run>, limit: usize) -> Vec<Vec<Run>> {
    let mut parts: Vec<Vec<Run>> = Vec::new();
    let mut current: Vec<Run> = Vec::new();
    let mut used = 0;
    for run in runs {
        let mut rest: &str = &run.text;
        while !rest.is_empty() {
            let room = limit - used;
            let len = utf16_len(rest);
            if len <= room {
                current.push(Run {
                    kind: run.kind.clone(),
                    text: rest.to_owned(),
                });
                used += len;
                break;
            }
            let cut = match soft_cut(rest, room) {
                Some(cut) => cut,
                // Better to start a new message than to cut a word.
                None if !current.is_empty() => {
                    parts.push(std::mem::take(&mut current));
                    used = 0;
                    continue;
                }
                None => hard_cut(rest, room),
            };
            let (head, tail) = rest.split_at(cut);
            current.push(Run {
                kind: run.kind.clone(),
                text: head.to_owned(),
            });
            parts.push(std::mem::take(&mut current));
            used = 0;
            rest = match run.kind {
                // Inside a code block every character counts, indentation included.
                Kind::Pre(_) => tail.strip_prefix('\n').unwrap_or(tail),
                _ => tail.trim_start(),
            };
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// Byte index of the prefix of `text` that fits in `room` units.
fn fitting(text: &str, room: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > room {
            return i;
        }
    }
    text.len()
}

/// The last good place to cut within `room` units: after a line break, else after a
/// sentence end or a space. None when the window has none (or it would leave nothing).
fn soft_cut(text: &str, room: usize) -> Option<usize> {
    let window = &text[..fitting(text, room)];
    if let Some(i) = window.rfind('\n').filter(|&i| i > 0) {
        return Some(i);
    }
    window
        .char_indices()
        .filter(|&(_, c)| c == ' ' || matches!(c, '。' | '！' | '？' | '；' | '，'))
        .map(|(i, c)| if c == ' ' { i } else { i + c.len_utf8() })
        .rfind(|&i| i > 0)
}

/// Cuts at the limit itself, keeping at least one character so every message progresses.
fn hard_cut(text: &str, room: usize) -> usize {
    let cut = fitting(text, room);
    if cut > 0 {
        cut
    } else {
        text.chars().next().map_or(text.len(), char::len_utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_characters_are_escaped_everywhere() {
        let parts = render(
            "a < b && c > d\n```rust\nif a<b && c>d {}\n```\n`x<y>`",
            4096,
        );
        assert_eq!(parts.len(), 1);
        let html = &parts[0].html;
        assert!(html.starts_with("a &lt; b &amp;&amp; c &gt; d\n"), "{html}");
        assert!(
            html.contains(
                "<pre><code class=\"language-rust\">if a&lt;b &amp;&amp; c&gt;d {}</code></pre>"
            ),
            "{html}"
        );
        assert!(html.ends_with("<code>x&lt;y&gt;</code>"), "{html}");
        assert_eq!(parts[0].plain, "a < b && c > d\nif a<b && c>d {}x<y>");
    }

    #[test]
    fn bold_headings_and_unpaired_delimiters() {
        let parts = render("# Title\n**bold** and a lone ` tick and 2**3", 4096);
        assert_eq!(
            parts[0].html,
            "<b>Title\nbold</b> and a lone ` tick and 2**3"
        );
    }

    #[test]
    fn an_open_fence_of_a_preview_is_closed() {
        let parts = render("Look:\n```python\nprint(1)\nprin…", 4096);
        assert_eq!(
            parts[0].html,
            "Look:\n<pre><code class=\"language-python\">print(1)\nprin…</code></pre>"
        );
    }

    #[test]
    fn a_hostile_language_never_reaches_the_attribute() {
        let parts = render("```\"><script>\nx\n```", 4096);
        assert_eq!(parts[0].html, "<pre>x</pre>");
    }

    #[test]
    fn long_code_is_cut_between_lines_and_reopened() {
        let code: String = (0..400).map(|i| format!("let x{i} = a < b;\n")).collect();
        let text = format!("中文说明。\n```rust\n{code}```\n结束。");
        let parts = render(&text, 1000);
        assert!(parts.len() > 5);
        for p in &parts {
            assert!(utf16_len(&p.plain) <= 1000, "{}", utf16_len(&p.plain));
            assert_eq!(
                p.html.matches("<pre>").count(),
                p.html.matches("</pre>").count()
            );
        }
        assert!(
            parts[1]
                .html
                .starts_with("<pre><code class=\"language-rust\">let x")
        );
        // Every line survives whole (the block's last line runs into the text after it,
        // which Telegram shows below the block).
        let lines: Vec<String> = parts
            .iter()
            .flat_map(|p| p.plain.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        for i in 0..400 {
            let line = format!("let x{i} = a < b;");
            assert!(
                lines
                    .iter()
                    .any(|l| *l == line || *l == format!("{line}结束。")),
                "line {i} cut"
            );
        }
    }

    #[test]
    fn astral_characters_count_twice() {
        let text = "😀".repeat(3000);
        let parts = render(&text, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| utf16_len(&p.plain) <= 4096));
        assert_eq!(parts.concat_plain(), text);
    }

    #[test]
    fn chinese_without_spaces_cuts_after_punctuation() {
        let text = "这是一个很长的句子，用来测试切分。".repeat(300);
        let parts = render(&text, 4096);
        assert!(parts.len() >= 2);
        assert!(
            parts[0].plain.ends_with(['。', '，']),
            "{}",
            &parts[0].plain
        );
        assert_eq!(parts.concat_plain(), text);
    }

    trait ConcatPlain {
        fn concat_plain(&self) -> String;
    }
    impl ConcatPlain for Vec<Part> {
        fn concat_plain(&self) -> String {
            self.iter().map(|p| p.plain.as_str()).collect()
        }
    }

    /// Reads Telegram HTML as the Bot API does for what lore writes: `<b>`, `<code>` (with a
    /// `language-…` class) and `<pre>`, balanced, and the three entities. Returns the
    /// visible text, or why Telegram would refuse the message.
    fn visible_text(html: &str) -> Result<String, String> {
        let mut open: Vec<&str> = Vec::new();
        let mut text = String::new();
        let mut rest = html;
        while let Some(c) = rest.chars().next() {
            match c {
                '<' => {
                    let end = rest.find('>').ok_or("a tag is not closed")?;
                    let tag = &rest[1..end];
                    if let Some(name) = tag.strip_prefix('/') {
                        if open.pop() != Some(name) {
                            return Err(format!("</{name}> closes nothing open"));
                        }
                    } else {
                        let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                        if !["b", "code", "pre"].contains(&name) {
                            return Err(format!("unknown tag <{tag}>"));
                        }
                        let class_ok = attrs.is_empty()
                            || (name == "code"
                                && attrs
                                    .strip_prefix("class=\"language-")
                                    .and_then(|a| a.strip_suffix('"'))
                                    .is_some_and(|lang| !lang.contains(['"', '<', '&'])));
                        if !class_ok {
                            return Err(format!("bad attributes in <{tag}>"));
                        }
                        open.push(name);
                    }
                    rest = &rest[end + 1..];
                }
                '&' => {
                    let (entity, ch) = [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>')]
                        .into_iter()
                        .find(|(e, _)| rest.starts_with(e))
                        .ok_or_else(|| format!("a bare & at {rest:?}"))?;
                    text.push(ch);
                    rest = &rest[entity.len()..];
                }
                '>' => return Err("a bare >".to_string()),
                c => {
                    text.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if let Some(name) = open.pop() {
            return Err(format!("<{name}> is never closed"));
        }
        Ok(text)
    }

    fn reply_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            4 => "[a-z ]{1,12}",
            2 => "[<>&\"']{1,3}",
            1 => Just("`".to_string()),
            1 => Just("**".to_string()),
            1 => Just("\n```rust\n".to_string()),
            1 => Just("\n```\n".to_string()),
            1 => Just("\n```a\"<b\n".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("\n# ".to_string()),
            1 => "[机器学习。，]{1,8}",
            1 => Just("🦀".to_string()),
        ];
        prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn escaped_text_parses_back_to_itself(text in proptest::prelude::any::<String>()) {
            proptest::prop_assert_eq!(visible_text(&escape(&text)), Ok(text));
        }

        /// Every message is HTML Telegram accepts, shows exactly its plain twin, and fits.
        #[test]
        fn every_rendered_message_parses_and_fits(text in reply_text(), limit in 0usize..300) {
            for part in render(&text, limit) {
                proptest::prop_assert_eq!(visible_text(&part.html), Ok(part.plain.clone()), "{}", part.html);
                proptest::prop_assert!(utf16_len(&part.plain) <= limit.max(16), "{:?}", part.plain);
            }
        }
    }
}
