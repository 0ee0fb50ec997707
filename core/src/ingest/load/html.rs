//! HTML: readable text via html2text, sectioned at its headings like Markdown.

use super::budget::Budget;
use super::{LoadError, markdown, text};
use crate::ingest::document::Section;

/// Wide enough that html2text never wraps a paragraph; the splitter cuts text later.
const RENDER_WIDTH: usize = 100_000;

/// Renders the page as Markdown-like text (headings as `#`, script and style dropped) and
/// sections it at its headings, with the page `<title>` heading every path.
pub(super) fn sections(
    source: &str,
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<Section>, LoadError> {
    let html = text::decode(source, bytes);
    // html2text's time grows with the square of the nesting depth and its memory with the
    // element count, and it cannot be stopped midway: both are checked before it runs.
    check_structure(&html, budget)?;
    let rendered = render(&html).map_err(|e| LoadError::corrupt(source, e))?;
    budget.check_time()?;
    let title = title(&html)
        .and_then(|t| render(&t).ok())
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    markdown::sections(&rendered, title, budget)
}

/// Elements without content or end tag: they never nest.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements a parser closes by itself when a sibling opens or their parent ends (`<p>`,
/// `<li>`, table cells): counted as elements, not as nesting, so pages that leave their
/// end tags out are not taken for deep ones.
const CLOSED_BY_SIBLINGS: &[&str] = &[
    "body", "caption", "colgroup", "dd", "dt", "head", "html", "li", "optgroup", "option", "p",
    "rb", "rp", "rt", "rtc", "tbody", "td", "tfoot", "th", "thead", "tr",
];

/// Elements whose content is text up to their end tag, never markup.
const RAW_TEXT: &[&str] = &[
    "iframe", "noembed", "noframes", "script", "style", "textarea", "title", "xmp",
];

/// SVG and MathML elements whose content is HTML again (integration points).
const HTML_INSIDE_FOREIGN: &[&str] = &[
    "annotation-xml",
    "desc",
    "foreignobject",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "title",
];

/// HTML elements that end SVG or MathML content when they appear inside it.
const BREAK_OUT_OF_FOREIGN: &[&str] = &[
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "i",
    "img",
    "li",
    "listing",
    "menu",
    "meta",
    "nobr",
    "ol",
    "p",
    "pre",
    "ruby",
    "s",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "table",
    "tt",
    "u",
    "ul",
    "var",
];

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// One linear pass over the tags: counts elements and tracks how deeply they nest, and
/// stops at the first limit passed. A rough tokenizer is enough: it only has to see the
/// depth a real parser would build. As in HTML5, "/>" closes an element only inside SVG or
/// MathML ("<div/>" opens a div), so the open elements are kept as a stack of whether
/// each one's content is foreign.
fn check_structure(html: &str, budget: &mut Budget) -> Result<(), LoadError> {
    let mut open: Vec<bool> = Vec::new();
    let mut at = 0;
    while let Some(found) = html[at..].find('<') {
        let start = at + found;
        let rest = &html[start + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            let Some(end) = comment.find("-->") else {
                break;
            };
            at = start + 4 + end + 3;
            continue;
        }
        let closing = rest.starts_with('/');
        let name_start = start + 1 + usize::from(closing);
        let name_len = html[name_start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':'))
            .count();
        let Some(gt) = html[name_start..].find('>') else {
            break;
        };
        let tag_end = name_start + gt + 1;
        let name = &html[name_start..name_start + name_len];
        // "<!doctype>", "<?xml?>" and a bare "<" in text are not elements.
        if name_len == 0 || !name.as_bytes()[0].is_ascii_alphabetic() {
            at = if rest.starts_with(['!', '?']) {
                tag_end
            } else {
                start + 1
            };
            continue;
        }
        let mut foreign = open.last().copied().unwrap_or(false);
        if foreign && !closing && is_one_of(name, BREAK_OUT_OF_FOREIGN) {
            while open.last() == Some(&true) {
                open.pop();
            }
            foreign = false;
        }
        let nests = foreign || !(is_one_of(name, VOID) || is_one_of(name, CLOSED_BY_SIBLINGS));
        at = tag_end;
        if closing {
            if nests {
                open.pop();
            }
            continue;
        }
        budget.element()?;
        if !foreign && is_one_of(name, RAW_TEXT) {
            at = raw_text_end(html, tag_end, name);
            continue;
        }
        let enters_foreign = is_one_of(name, &["svg", "math"]);
        let self_closed = html[..tag_end - 1].ends_with('/') && (foreign || enters_foreign);
        if nests && !self_closed {
            let content_foreign = if foreign {
                !is_one_of(name, HTML_INSIDE_FOREIGN)
            } else {
                enters_foreign
            };
            open.push(content_foreign);
            budget.depth(open.len())?;
        }
    }
    Ok(())
}

/// Where the raw text opened before `from` ends: at its end tag, or at the end of the page.
fn raw_text_end(html: &str, from: usize, name: &str) -> usize {
    let mut at = from;
    while let Some(found) = html[at..].find("</") {
        let start = at + found + 2;
        let candidate = html.get(start..start + name.len());
        if candidate.is_some_and(|c| c.eq_ignore_ascii_case(name)) {
            return start;
        }
        at = start;
    }
    html.len()
}

fn render(html: &str) -> Result<String, html2text::Error> {
    html2text::config::plain_no_decorate().string_from_read(html.as_bytes(), RENDER_WIDTH)
}

/// The raw contents of the first `<title>` element; html2text skips `<head>`, so it is
/// found here and then rendered on its own to decode entities.
fn title(html: &str) -> Option<String> {
    // ASCII lowercasing keeps byte offsets aligned with the original.
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    Some(html[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::load::LoadLimits;
    use crate::ingest::load::tests::garbage;

    fn sections(source: &str, bytes: &[u8]) -> Result<Vec<Section>, LoadError> {
        let limits = LoadLimits::default();
        super::sections(source, bytes, &mut Budget::new(source, &limits))
    }

    fn depth_error(html: &str) -> Option<String> {
        let limits = LoadLimits {
            max_depth: 50,
            ..LoadLimits::default()
        };
        check_structure(html, &mut Budget::new("t.html", &limits))
            .err()
            .map(|e| e.to_string())
    }

    const PAGE: &str = r#"<!doctype html>
<html><head><title>Prompt &amp; 提示 指南</title>
<style>body { color: red }</style>
<script>var secret = "tracking";</script></head>
<body>
<p>开篇的 一段 文字，介绍本页内容。</p>
<h1>提示原则</h1>
<p>编写清晰、具体的指令。This sentence is long enough that a narrow renderer would wrap it somewhere in the middle of the line.</p>
<h2>使用分隔符</h2>
<p>用 <b>三引号</b> 分隔输入。</p>
<script>document.write("hidden")</script>
</body></html>"#;

    #[test]
    fn page_is_sectioned_by_headings_under_its_title() {
        let s = sections("page.html", PAGE.as_bytes()).unwrap();
        let paths: Vec<_> = s.iter().map(|s| s.heading.as_deref().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "Prompt & 提示 指南",
                "Prompt & 提示 指南 > 提示原则",
                "Prompt & 提示 指南 > 提示原则 > 使用分隔符"
            ]
        );
        assert_eq!(s[0].text, "开篇的一段文字，介绍本页内容。");
        assert!(s[2].text.contains("用三引号分隔输入。"), "{}", s[2].text);
    }

    #[test]
    fn script_and_style_are_dropped() {
        let all: String = sections("page.html", PAGE.as_bytes())
            .unwrap()
            .iter()
            .map(|s| s.text.clone())
            .collect();
        for hidden in ["tracking", "hidden", "color"] {
            assert!(!all.contains(hidden), "{hidden} leaked: {all}");
        }
    }

    #[test]
    fn long_paragraphs_are_not_wrapped() {
        let s = sections("page.html", PAGE.as_bytes()).unwrap();
        let para = s[1]
            .text
            .lines()
            .find(|l| l.contains("narrow renderer"))
            .unwrap();
        assert!(para.ends_with("middle of the line."), "{para}");
    }

    #[test]
    fn page_without_title_or_headings_is_one_untitled_section() {
        let s = sections("bare.html", b"<p>just text</p>").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].heading.as_deref(), s[0].text.as_str()),
            (None, "just text")
        );
    }

    #[test]
    fn deeply_nested_markup_does_not_crash() {
        let html = "<div>".repeat(20_000) + "deep" + &"</div>".repeat(20_000);
        let _ = sections("deep.html", html.as_bytes());
    }

    #[test]
    fn a_million_nested_elements_are_refused_naming_the_limit() {
        // Before the depth check, html2text took over 10 minutes on this page.
        let html = "<div>".repeat(1_000_000) + "deep" + &"</div>".repeat(1_000_000);
        let err = sections("deep.html", html.as_bytes()).unwrap_err();
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("deep.html") && msg.contains("ingest.max_nesting_depth"),
            "{msg}"
        );
    }

    #[test]
    fn nesting_is_counted_as_a_parser_would_build_it() {
        let deep = |n: usize| "<section>".repeat(n) + &"</section>".repeat(n);
        assert_eq!(depth_error(&deep(50)), None);
        assert!(depth_error(&deep(51)).is_some());
        // Siblings that close each other, void and self-closed elements, and closed
        // elements do not nest.
        let flat = [
            "<p>para".repeat(200),
            "<li>item".repeat(200),
            "<br><img src=x>".repeat(200),
            "<svg><path d=\"M0 0\"/><rect/></svg>".repeat(200),
            "<math><mi>x</mi><mo/></math>".repeat(200),
            "<div>a</div>".repeat(200),
            "<!-- <div> -->".repeat(200),
            "<script>if (a<b) { x = '<div>'.repeat(9) }</script>".repeat(200),
            "<STYLE><div></div></style>".repeat(200),
        ];
        for html in flat {
            assert_eq!(depth_error(&html), None, "{}", &html[..40]);
        }
        // "/>" does not close an HTML element, nor one an SVG breaks out of.
        for deep in [
            "<DIV class=\"a\">".repeat(51),
            "<div/>".repeat(51),
            "<foo/>".repeat(51),
            "<svg>".to_string() + &"<div/>".repeat(51),
            "<svg><foreignObject>".to_string() + &"<foo/>".repeat(51),
        ] {
            assert!(depth_error(&deep).is_some(), "{}", &deep[..30]);
        }
    }

    #[test]
    fn too_many_elements_are_refused_naming_the_limit() {
        let limits = LoadLimits {
            max_elements: 1000,
            ..LoadLimits::default()
        };
        let html = "<p>x</p>".repeat(1001);
        let err = super::sections(
            "many.html",
            html.as_bytes(),
            &mut Budget::new("many.html", &limits),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ingest.max_elements"), "{err}");
        let fine = "<p>x</p>".repeat(1000);
        assert!(
            super::sections(
                "ok.html",
                fine.as_bytes(),
                &mut Budget::new("ok.html", &limits)
            )
            .is_ok()
        );
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in garbage(200) {
            let _ = sections("garbage.html", &bytes);
            let mut tagged = b"<html><title>".to_vec();
            tagged.extend_from_slice(&bytes);
            let _ = sections("garbage.html", &tagged);
        }
    }
}
