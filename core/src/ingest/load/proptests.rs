//! Property tests of every loader: arbitrary bytes and structure-aware documents (random
//! nesting of HTML tags, Markdown outlines, SRT cues, DOCX paragraphs) never panic, end
//! within the limits, and keep the text they were given.

use proptest::prelude::*;

use super::budget::Budget;
use super::{DocKind, LoadError, LoadLimits, docx, html, load_bytes_within, markdown, subtitles};
use crate::ingest::document::Section;

/// Cases per property: enough to explore, few enough for two busy cores.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn budget<'a>(source: &'a str, limits: &'a LoadLimits) -> Budget<'a> {
    Budget::new(source, limits)
}

/// All text a document shows: section texts and heading paths.
fn shown(sections: &[Section]) -> String {
    sections
        .iter()
        .flat_map(|s| [s.text.as_str(), s.heading.as_deref().unwrap_or("")])
        .collect::<Vec<_>>()
        .join("\n")
}

fn word() -> impl Strategy<Value = String> {
    "[a-z]{4,8}"
}

/// An HTML tree: text leaves under elements, some left unclosed.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Element(&'static str, Vec<Node>, bool),
}

const TAGS: &[&str] = &[
    "div",
    "p",
    "span",
    "b",
    "i",
    "a",
    "h1",
    "h2",
    "h3",
    "ul",
    "li",
    "blockquote",
    "section",
    "pre",
    "table",
    "tr",
    "td",
    "em",
    "code",
    "svg",
];

fn node() -> impl Strategy<Value = Node> {
    word()
        .prop_map(Node::Text)
        .prop_recursive(8, 96, 6, |inner| {
            (
                prop::sample::select(TAGS),
                prop::collection::vec(inner, 0..6),
                prop::bool::weighted(0.8),
            )
                .prop_map(|(tag, children, closed)| Node::Element(tag, children, closed))
        })
}

/// Writes the tree as HTML; with `sloppy`, elements drawn as unclosed lose their end tag.
fn to_html(node: &Node, sloppy: bool, out: &mut String) {
    match node {
        Node::Text(word) => {
            out.push(' ');
            out.push_str(word);
            out.push(' ');
        }
        Node::Element(tag, children, closed) => {
            out.push_str(&format!("<{tag}>"));
            for child in children {
                to_html(child, sloppy, out);
            }
            if *closed || !sloppy {
                out.push_str(&format!("</{tag}>"));
            }
        }
    }
}

fn words_of(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Text(word) => out.push(word.clone()),
        Node::Element(tag, children, _) => {
            // Text inside SVG is drawing, not prose; html2text leaves it out. A heading
            // with nothing under it is dropped by design (see `Outline`), so heading text
            // is not required to survive.
            if !matches!(*tag, "svg" | "h1" | "h2" | "h3") {
                children.iter().for_each(|c| words_of(c, out));
            }
        }
    }
}

/// One line of a Markdown outline.
fn markdown_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(word(), 1..6).prop_map(|w| w.join(" ")),
        2 => ("#{1,7}", word()).prop_map(|(h, w)| format!("{h} {w}")),
        1 => Just(String::new()),
        1 => Just("```".to_string()),
        1 => Just("~~~~".to_string()),
        1 => word().prop_map(|w| format!("- {w}")),
        1 => word().prop_map(|w| format!("    {w}")),
        1 => Just("机器 学习\n是".to_string()),
    ]
}

/// An SRT-ish cue: number, timing (sometimes broken) and text lines.
fn cue() -> impl Strategy<Value = (String, Option<Vec<String>>)> {
    (
        0u32..100,
        0u32..60,
        0u32..60,
        0u32..1000,
        prop::collection::vec(prop::collection::vec(word(), 1..4), 1..3),
        0u8..8,
    )
        .prop_map(|(n, m, s, ms, lines, shape)| {
            let lines: Vec<String> = lines.iter().map(|l| l.join(" ")).collect();
            let timing = match shape {
                0 => "00:xx --> nonsense".to_string(),
                1 => String::new(),
                2 => format!("{m:02}:{s:02}.{ms:03} --> {m:02}:{s:02}.{ms:03} align:start"),
                _ => format!("00:{m:02}:{s:02},{ms:03} --> 00:{m:02}:{s:02},{ms:03}"),
            };
            let valid = shape >= 2;
            let block = format!("{n}\n{timing}\n{}", lines.join("\n"));
            (block, valid.then_some(lines))
        })
}

/// A DOCX paragraph: a style and words, sometimes holding a text box paragraph.
fn docx_paragraph()
-> impl Strategy<Value = (Option<&'static str>, Vec<String>, Option<Vec<String>>)> {
    (
        prop::option::of(prop::sample::select(
            &["Heading1", "Heading2", "Title", "a3", "Normal"][..],
        )),
        prop::collection::vec(word(), 1..5),
        prop::option::weighted(0.2, prop::collection::vec(word(), 1..3)),
    )
}

fn docx(body: &str) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let ns = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;
    let xml =
        format!(r#"<?xml version="1.0"?><w:document {ns}><w:body>{body}</w:body></w:document>"#);
    zip.write_all(xml.as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

fn is_heading_style(style: Option<&str>) -> bool {
    matches!(style, Some("Heading1" | "Heading2" | "Title"))
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn no_loader_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let limits = LoadLimits::default();
        let text = String::from_utf8_lossy(&bytes);
        // Called directly, so a panic fails the test instead of becoming `Corrupt`.
        let _ = html::sections("x.html", &bytes, &mut budget("x.html", &limits));
        let _ = docx::sections("x.docx", &bytes, &mut budget("x.docx", &limits));
        let _ = markdown::sections(&text, None, &mut budget("x.md", &limits));
        let _ = subtitles::sections(&text, &mut budget("x.srt", &limits));
        let _ = super::text::sections("x.txt", &bytes);
        // lopdf may panic on hostile files; `load_bytes_within` turns that into an error.
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.extend_from_slice(&bytes);
        let _ = load_bytes_within("x.pdf", DocKind::Pdf, &pdf, &limits);
        let _ = load_bytes_within("x.pdf", DocKind::Pdf, &bytes, &limits);
    }

    #[test]
    fn text_comes_out_clean(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for section in super::text::sections("x.txt", &bytes) {
            prop_assert!(!section.text.is_empty());
            prop_assert!(
                !section.text.chars().any(|c| c.is_control() && c != '\n'),
                "{:?}", section.text
            );
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn html_of_random_nesting_keeps_its_text(nodes in prop::collection::vec(node(), 1..6)) {
        let mut page = String::from("<html><body>");
        let mut words = Vec::new();
        for node in &nodes {
            to_html(node, false, &mut page);
            words_of(node, &mut words);
        }
        let limits = LoadLimits::default();
        match html::sections("t.html", page.as_bytes(), &mut budget("t.html", &limits)) {
            Ok(sections) => {
                let all = shown(&sections);
                for word in &words {
                    prop_assert!(all.contains(word.as_str()), "{word} lost from {page}: {all}");
                }
            }
            // Random trees stay far below the default limits.
            Err(e) => prop_assert!(false, "{e}: {page}"),
        }
    }

    #[test]
    fn html_with_missing_end_tags_loads(nodes in prop::collection::vec(node(), 1..6)) {
        // Where text lands in such a page is the HTML parser's business; it must load.
        let mut page = String::new();
        for node in &nodes {
            to_html(node, true, &mut page);
        }
        let limits = LoadLimits::default();
        let loaded = html::sections("t.html", page.as_bytes(), &mut budget("t.html", &limits));
        prop_assert!(loaded.is_ok(), "{loaded:?}: {page}");
    }

    #[test]
    fn html_deeper_than_the_limit_is_refused_quickly(depth in 1usize..400, tag in prop::sample::select(TAGS)) {
        let limits = LoadLimits { max_depth: 64, ..LoadLimits::default() };
        let page = format!("<{tag}>").repeat(depth) + "x";
        match html::sections("d.html", page.as_bytes(), &mut budget("d.html", &limits)) {
            Ok(_) => {}
            Err(LoadError::OverLimit { .. }) => prop_assert!(depth > 64),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn markdown_keeps_every_body_line(lines in prop::collection::vec(markdown_line(), 0..40)) {
        let text = lines.join("\n");
        let limits = LoadLimits::default();
        let sections = markdown::sections(&text, None, &mut budget("t.md", &limits)).unwrap();
        let all = shown(&sections);
        for section in &sections {
            prop_assert!(!section.text.trim().is_empty());
        }
        for line in &lines {
            let heading = line.starts_with('#') && line.split(' ').next().is_some_and(|h| h.len() <= 6);
            if heading {
                continue;
            }
            for word in line.split_whitespace().filter(|w| w.len() >= 4 && w.is_ascii()) {
                prop_assert!(all.contains(word), "{word} lost: {text:?} -> {all:?}");
            }
        }
    }

    #[test]
    fn subtitles_keep_every_timed_cue(cues in prop::collection::vec(cue(), 0..30)) {
        let text = cues.iter().map(|(block, _)| block.as_str()).collect::<Vec<_>>().join("\n\n");
        let limits = LoadLimits::default();
        let sections = subtitles::sections(&text, &mut budget("t.srt", &limits)).unwrap();
        let all = shown(&sections);
        for (_, lines) in &cues {
            for word in lines.iter().flatten().flat_map(|l| l.split(' ')) {
                prop_assert!(all.contains(word), "{word} lost: {text:?}");
            }
        }
        for section in &sections {
            let stamp = section.timestamp.as_deref().unwrap_or("");
            let (start, end) = stamp.split_once(" --> ").unwrap_or(("", ""));
            for time in [start, end] {
                let parts: Vec<&str> = time.split(':').collect();
                prop_assert!(parts.len() == 3 && parts.iter().all(|p| p.len() >= 2 && p.bytes().all(|b| b.is_ascii_digit())), "{stamp}");
            }
        }
    }

    #[test]
    fn docx_keeps_every_paragraph(paragraphs in prop::collection::vec(docx_paragraph(), 0..20)) {
        let mut body = String::new();
        for (style, words, text_box) in &paragraphs {
            let ppr = style.map_or(String::new(), |s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#));
            let boxed = text_box.as_ref().map_or(String::new(), |w| {
                format!("<w:r><w:txbxContent><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:txbxContent></w:r>", w.join(" "))
            });
            body.push_str(&format!("<w:p>{ppr}<w:r><w:t>{}</w:t></w:r>{boxed}</w:p>", words.join(" ")));
        }
        let limits = LoadLimits::default();
        let sections = docx::sections("t.docx", &docx(&body), &mut budget("t.docx", &limits)).unwrap();
        let all = shown(&sections);
        for (style, words, text_box) in &paragraphs {
            let kept = words.iter().chain(text_box.iter().flatten());
            for word in kept {
                // A heading's words live on at least in the heading paths below it, unless
                // nothing follows it at all.
                if is_heading_style(*style) && !all.contains(word.as_str()) {
                    continue;
                }
                prop_assert!(all.contains(word.as_str()), "{word} lost: {body}");
            }
        }
    }
}
