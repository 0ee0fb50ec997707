//! DOCX: paragraphs from `word/document.xml`, sectioned at heading-styled paragraphs.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::events::{BytesStart, Event};

use super::LoadError;
use super::budget::Budget;
use super::markdown::Outline;
use crate::ingest::document::Section;

/// Reads the body paragraphs; paragraphs styled as headings (Heading1.., 标题 1.., Title,
/// or with an outline level) open sections, as Markdown headings do.
pub(super) fn sections(
    source: &str,
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<Section>, LoadError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| LoadError::corrupt(source, format!("not a DOCX (zip) file: {e}")))?;
    let document = read_member(source, &mut archive, "word/document.xml", budget)?
        .ok_or_else(|| LoadError::corrupt(source, "no word/document.xml in the archive"))?;
    // Styles are optional: without them, heading levels come from the style ids alone.
    let styles = match read_member(source, &mut archive, "word/styles.xml", budget)? {
        Some(xml) => heading_styles(&xml, budget)?,
        None => HashMap::new(),
    };
    let paragraphs = paragraphs(&document, budget).map_err(|e| match e {
        XmlStop::Limit(e) => e,
        XmlStop::Xml(e) => LoadError::corrupt(source, format!("word/document.xml: {e}")),
    })?;

    let mut outline = Outline::new(None);
    for p in paragraphs {
        budget.tick()?;
        let level = p
            .outline_level
            .or_else(|| p.style.as_deref().and_then(|s| style_level(s, &styles)));
        match level {
            Some(level) if !p.text.trim().is_empty() => outline.heading(level, &p.text, &p.text),
            _ => outline.line(&p.text),
        }
        // A blank line between paragraphs, as in Markdown.
        outline.line("");
    }
    Ok(outline.finish())
}

/// Reads one archive member as UTF-8, refusing more than the decompressed-size limit.
fn read_member(
    source: &str,
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &Budget,
) -> Result<Option<String>, LoadError> {
    let max_bytes = budget.limits().max_decompressed_bytes;
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(LoadError::corrupt(source, format!("{name}: {e}"))),
    };
    let mut xml = Vec::new();
    // The header's size is attacker-controlled, so the cap applies to what is inflated.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut xml)
        .map_err(|e| LoadError::corrupt(source, format!("{name}: {e}")))?;
    if xml.len() as u64 > max_bytes {
        return Err(budget.over(format!(
            "{name} inflates past {max_bytes} bytes (zip bomb?; ingest.max_decompressed_mib)"
        )));
    }
    String::from_utf8(xml)
        .map(Some)
        .map_err(|_| LoadError::corrupt(source, format!("{name} is not UTF-8")))
}

#[derive(Debug, Default)]
struct Paragraph {
    text: String,
    style: Option<String>,
    /// Heading level (1-based) set directly on the paragraph.
    outline_level: Option<usize>,
}

/// Why reading XML stopped: a limit, or XML that does not parse.
enum XmlStop {
    Limit(LoadError),
    Xml(quick_xml::Error),
}

impl From<LoadError> for XmlStop {
    fn from(e: LoadError) -> Self {
        Self::Limit(e)
    }
}

impl From<quick_xml::Error> for XmlStop {
    fn from(e: quick_xml::Error) -> Self {
        Self::Xml(e)
    }
}

/// Counts an XML event against the budget: elements, nesting depth and time.
fn account(event: &Event, depth: &mut usize, budget: &mut Budget) -> Result<(), LoadError> {
    match event {
        Event::Start(_) => {
            *depth += 1;
            budget.depth(*depth)?;
            budget.element()
        }
        Event::End(_) => {
            *depth = depth.saturating_sub(1);
            Ok(())
        }
        Event::Empty(_) => budget.element(),
        _ => budget.tick(),
    }
}

/// Collects `w:p` paragraphs: `w:t` text, tabs and breaks, the `w:pStyle` id and any
/// `w:outlineLvl`. Deleted text (`w:delText`) is not `w:t`, so tracked deletions stay out.
fn paragraphs(xml: &str, budget: &mut Budget) -> Result<Vec<Paragraph>, XmlStop> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    // Text boxes nest paragraphs inside paragraphs, so open ones form a stack.
    let mut open: Vec<Paragraph> = Vec::new();
    let mut in_text = false;
    let mut depth = 0;
    loop {
        let event = reader.read_event()?;
        account(&event, &mut depth, budget)?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"p" => open.push(Paragraph::default()),
            Event::End(e) if e.local_name().as_ref() == b"p" => out.extend(open.pop()),
            Event::Start(e) if e.local_name().as_ref() == b"t" => in_text = true,
            Event::End(e) if e.local_name().as_ref() == b"t" => in_text = false,
            Event::Text(t) if in_text => {
                if let Some(p) = open.last_mut() {
                    p.text.push_str(&t.unescape()?);
                }
            }
            Event::Empty(e) | Event::Start(e) => {
                if let Some(p) = open.last_mut() {
                    match e.local_name().as_ref() {
                        b"tab" => p.text.push('\t'),
                        b"br" | b"cr" => p.text.push('\n'),
                        b"pStyle" => p.style = val(&e),
                        b"outlineLvl" => p.outline_level = outline_level(&e),
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The `w:val` attribute of an element.
fn val(e: &BytesStart) -> Option<String> {
    let attr = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"val")?;
    attr.unescape_value().ok().map(|v| v.into_owned())
}

/// `w:outlineLvl w:val="0"` is a level-1 heading; 9 means body text.
fn outline_level(e: &BytesStart) -> Option<usize> {
    let level: usize = val(e)?.parse().ok()?;
    (level < 9).then_some(level + 1)
}

/// Maps style ids to heading levels from `word/styles.xml`, by style name ("heading 1",
/// "标题 1", "Title") or outline level; localised Word writes ids like "1" or "a3", so the
/// name is what identifies a heading.
/// Broken styles XML gives the styles read so far; a limit passed is an error.
fn heading_styles(xml: &str, budget: &mut Budget) -> Result<HashMap<String, usize>, LoadError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut map = HashMap::new();
    let mut current: Option<(String, Option<usize>)> = None;
    let mut depth = 0;
    while let Ok(event) = reader.read_event() {
        account(&event, &mut depth, budget)?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"style" => {
                let id = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.local_name().as_ref() == b"styleId")
                    .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()));
                current = id.map(|id| (id, None));
            }
            Event::Empty(e) | Event::Start(e) => {
                if let Some((_, level)) = current.as_mut() {
                    match e.local_name().as_ref() {
                        b"name" => *level = level.or_else(|| val(&e).and_then(|n| name_level(&n))),
                        b"outlineLvl" => *level = level.or_else(|| outline_level(&e)),
                        _ => {}
                    }
                }
            }
            Event::End(e) if e.local_name().as_ref() == b"style" => {
                if let Some((id, Some(level))) = current.take() {
                    map.insert(id, level);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(map)
}

/// The heading level of a paragraph style id, via styles.xml or the id's own name.
fn style_level(style: &str, styles: &HashMap<String, usize>) -> Option<usize> {
    styles.get(style).copied().or_else(|| name_level(style))
}

/// "Heading1", "heading 2", "标题 3", "标题3" → level; "Title" and "标题" → 1.
fn name_level(name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    let rest = lower
        .strip_prefix("heading")
        .or_else(|| lower.strip_prefix("标题"))?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Some(1);
    }
    rest.parse().ok().filter(|n| (1..=9).contains(n))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::ingest::load::LoadLimits;
    use crate::ingest::load::tests::garbage;

    fn sections(source: &str, bytes: &[u8]) -> Result<Vec<Section>, LoadError> {
        let limits = LoadLimits::default();
        super::sections(source, bytes, &mut Budget::new(source, &limits))
    }

    const NS: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    fn para(style: Option<&str>, text: &str) -> String {
        let ppr = style.map_or(String::new(), |s| {
            format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#)
        });
        format!(r#"<w:p>{ppr}<w:r><w:t xml:space="preserve">{text}</w:t></w:r></w:p>"#)
    }

    fn docx(files: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in files {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn document(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><w:document {NS}><w:body>{body}</w:body></w:document>"#
        )
    }

    #[test]
    fn heading_styles_open_sections_with_paths() {
        let body = [
            para(None, "前言 文字"),
            para(Some("Heading1"), "第一章 绪论"),
            para(None, "机器学习是&lt;什么&gt;？"),
            para(Some("Heading2"), "1.1 引言"),
            para(None, "算法与模型。"),
            para(Some("Heading1"), "第二章"),
            para(None, "模型评估。"),
        ]
        .concat();
        let s = sections("t.docx", &docx(&[("word/document.xml", &document(&body))])).unwrap();
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.heading.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (None, "前言文字"),
                // The cleaner drops spaces between Chinese characters; the path keeps the title as written.
                (Some("第一章 绪论"), "第一章绪论\n\n机器学习是<什么>？"),
                (Some("第一章 绪论 > 1.1 引言"), "1.1 引言\n\n算法与模型。"),
                (Some("第二章"), "第二章\n\n模型评估。"),
            ]
        );
    }

    #[test]
    fn localised_style_ids_are_resolved_through_styles_xml() {
        // Chinese Word names its heading styles "1", "2" and calls them "heading 1"/"标题 2".
        let styles = format!(
            r#"<w:styles {NS}><w:style w:type="paragraph" w:styleId="1"><w:name w:val="heading 1"/></w:style><w:style w:type="paragraph" w:styleId="a3"><w:name w:val="标题 2"/></w:style><w:style w:styleId="a5"><w:name w:val="Normal"/></w:style></w:styles>"#
        );
        let body = [
            para(Some("1"), "总论"),
            para(Some("a3"), "细节"),
            para(Some("a5"), "正文。"),
        ]
        .concat();
        let bytes = docx(&[
            ("word/document.xml", &document(&body)),
            ("word/styles.xml", &styles),
        ]);
        let s = sections("zh.docx", &bytes).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].heading.as_deref(), Some("总论 > 细节"));
        assert!(s[0].text.ends_with("正文。"));
    }

    #[test]
    fn tabs_and_breaks_are_kept_and_runs_joined() {
        let body = r#"<w:p><w:r><w:t>机器</w:t></w:r><w:r><w:t>学习</w:t><w:tab/><w:t>ML</w:t><w:br/><w:t>next</w:t></w:r></w:p>"#;
        let s = sections("t.docx", &docx(&[("word/document.xml", &document(body))])).unwrap();
        assert_eq!(s[0].text, "机器学习 ML\nnext");
    }

    #[test]
    fn text_box_paragraphs_do_not_swallow_their_host() {
        let body = r#"<w:p><w:r><w:t>外层开头</w:t></w:r><w:r><w:txbxContent><w:p><w:r><w:t>文本框</w:t></w:r></w:p></w:txbxContent></w:r><w:r><w:t>外层结尾</w:t></w:r></w:p>"#;
        let s = sections("box.docx", &docx(&[("word/document.xml", &document(body))])).unwrap();
        assert_eq!(s[0].text, "文本框\n\n外层开头外层结尾");
    }

    #[test]
    fn style_names_give_levels() {
        assert_eq!(name_level("Heading3"), Some(3));
        assert_eq!(name_level("heading 2"), Some(2));
        assert_eq!(name_level("标题 1"), Some(1));
        assert_eq!(name_level("标题"), Some(1));
        assert_eq!(name_level("Normal"), None);
        assert_eq!(name_level("HeadingChar"), None);
    }

    #[test]
    fn zip_without_document_xml_is_corrupt_naming_the_file() {
        let err = sections("slides.docx", &docx(&[("ppt/slide1.xml", "<x/>")])).unwrap_err();
        assert!(matches!(err, LoadError::Corrupt { .. }));
        assert!(err.to_string().contains("slides.docx"), "{err}");
    }

    #[test]
    fn non_zip_bytes_are_corrupt_naming_the_file() {
        let err = sections("fake.docx", b"this is not a zip").unwrap_err();
        assert!(matches!(err, LoadError::Corrupt { .. }));
        assert!(err.to_string().contains("fake.docx"), "{err}");
    }

    #[test]
    fn zip_bomb_is_refused() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", opts).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(LoadLimits::default().max_decompressed_bytes >> 20) + 1 {
            zip.write_all(&zeros).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        assert!(bytes.len() < 1 << 20, "{} bytes compressed", bytes.len());
        let err = sections("bomb.docx", &bytes).unwrap_err();
        assert!(err.to_string().contains("zip bomb"), "{err}");
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err:?}");
    }

    #[test]
    fn deeply_nested_xml_is_refused_naming_the_limit() {
        // Nested paragraphs (text boxes) each hold an open paragraph: without a depth
        // limit, 10 million of them would take gigabytes.
        let body = "<w:p>".repeat(100_000) + &"</w:p>".repeat(100_000);
        let bytes = docx(&[("word/document.xml", &document(&body))]);
        let err = sections("deep.docx", &bytes).unwrap_err();
        assert!(
            err.to_string().contains("ingest.max_nesting_depth"),
            "{err}"
        );
        let styles = "<w:style>".repeat(100_000);
        let bytes = docx(&[
            ("word/document.xml", &document(&para(None, "x"))),
            ("word/styles.xml", &styles),
        ]);
        let err = sections("deep.docx", &bytes).unwrap_err();
        assert!(matches!(err, LoadError::OverLimit { .. }), "{err:?}");
    }

    #[test]
    fn too_many_elements_are_refused_naming_the_limit() {
        let limits = LoadLimits {
            max_elements: 1000,
            ..LoadLimits::default()
        };
        let body = para(None, "x").repeat(400);
        let bytes = docx(&[("word/document.xml", &document(&body))]);
        let err = super::sections("many.docx", &bytes, &mut Budget::new("many.docx", &limits))
            .unwrap_err();
        assert!(err.to_string().contains("ingest.max_elements"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in garbage(300) {
            let _ = sections("garbage.docx", &bytes);
            let xml = String::from_utf8_lossy(&bytes);
            let _ = sections(
                "garbage.docx",
                &docx(&[("word/document.xml", &document(&xml))]),
            );
        }
    }
}
