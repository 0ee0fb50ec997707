//! HTML: readable text via html2text, sectioned at its headings like Markdown.

use super::{LoadError, markdown, text};
use crate::ingest::document::Section;

/// Wide enough that html2text never wraps a paragraph; the splitter cuts text later.
const RENDER_WIDTH: usize = 100_000;

/// Renders the page as Markdown-like text (headings as `#`, script and style dropped) and
/// sections it at its headings, with the page `<title>` heading every path.
pub(super) fn sections(source: &str, bytes: &[u8]) -> Result<Vec<Section>, LoadError> {
    let html = text::decode(source, bytes);
    let rendered = render(&html).map_err(|e| LoadError::corrupt(source, e))?;
    let title = title(&html)
        .and_then(|t| render(&t).ok())
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    Ok(markdown::sections(&rendered, title))
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
    use crate::ingest::load::tests::garbage;

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
    fn garbage_never_panics() {
        for bytes in garbage(200) {
            let _ = sections("garbage.html", &bytes);
            let mut tagged = b"<html><title>".to_vec();
            tagged.extend_from_slice(&bytes);
            let _ = sections("garbage.html", &tagged);
        }
    }
}
