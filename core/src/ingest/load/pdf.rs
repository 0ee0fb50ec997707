//! PDF: one section per page with text, numbered as a viewer numbers pages (1-based).
//!
//! Text comes from walking each page's content stream with lopdf's font encodings, plus
//! Adobe-GB1 decoding for Chinese CID fonts without a ToUnicode map (see [`cid`]).
//! lopdf's own `extract_text` was not enough: it turns those fonts into mojibake and runs
//! lines of a text block together.

mod cid;

use std::collections::{BTreeMap, HashMap, HashSet};

use lopdf::content::Content;
use lopdf::{Dictionary, Document as Pdf, Encoding, LoadOptions, Object, ObjectId};

use super::LoadError;
use super::budget::Budget;
use crate::ingest::clean::clean_text;
use crate::ingest::document::Section;

/// A `TJ` adjustment wider than this (thousandths of an em, negative = move right) is
/// a word gap; TeX's inter-word space is about 333.
const TJ_SPACE: f32 = 200.0;

/// Extracts each page's text; pages without text are dropped. An encrypted or broken file
/// is `Corrupt`. lopdf can panic on malformed files: `load_bytes` catches that.
pub(super) fn sections(
    source: &str,
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<(Vec<Section>, Option<String>), LoadError> {
    let (pages, title) = pages(source, bytes, budget)?;
    let mut sections = Vec::new();
    for (page, raw) in pages {
        budget.tick()?;
        let text = clean_text(&raw);
        if !text.is_empty() {
            sections.push(Section {
                text,
                page: Some(page),
                ..Section::default()
            });
        }
    }
    Ok((sections, title))
}

/// Raw text of every page, keyed by 1-based page number, and the metadata title.
type Pages = (Vec<(u32, String)>, Option<String>);

fn pages(source: &str, bytes: &[u8], budget: &mut Budget) -> Result<Pages, LoadError> {
    let corrupt = |reason: String| LoadError::corrupt(source, reason);
    let max_stream = stream_limit(budget);
    let options = LoadOptions {
        max_decompressed_size: Some(max_stream),
        ..LoadOptions::default()
    };
    let pdf = Pdf::load_mem_with_options(bytes, options)
        .map_err(|e| corrupt(format!("not a readable PDF: {e}")))?;
    budget.check_time()?;
    if pdf.is_encrypted() {
        return Err(corrupt(
            "the PDF is encrypted and needs a password".to_string(),
        ));
    }
    let pages = pdf.get_pages();
    if pages.is_empty() {
        return Err(corrupt("the PDF has no pages".to_string()));
    }
    let mut texts = Vec::with_capacity(pages.len());
    for (n, id) in pages {
        budget.check_time()?;
        // One bad page (a broken stream) should not cost the rest of the book.
        let text = match page_text(&pdf, id, budget) {
            Ok(text) => text,
            Err(PageStop::Limit(e)) => return Err(e),
            Err(PageStop::Pdf(e)) => {
                tracing::warn!(page = n, "skipping unreadable PDF page: {e}");
                String::new()
            }
        };
        texts.push((n, text));
    }
    strip_running_lines(&mut texts);
    Ok((texts, metadata_title(&pdf)))
}

/// The `Title` of the document information dictionary, when it says something.
fn metadata_title(pdf: &Pdf) -> Option<String> {
    let info = match pdf.trailer.get(b"Info").ok()? {
        Object::Reference(id) => pdf.get_object(*id).ok()?.as_dict().ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let raw = match info.get(b"Title").ok()? {
        Object::String(bytes, _) => bytes.as_slice(),
        _ => return None,
    };
    let title = text_string(raw);
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    // Producers write placeholders ("untitled", "Microsoft Word - x.docx") or nothing.
    let useless = title.is_empty()
        || title.eq_ignore_ascii_case("untitled")
        || title.starts_with("Microsoft Word - ");
    (!useless).then(|| title.chars().take(200).collect())
}

/// A PDF text string: UTF-16 with a byte-order mark, UTF-8 with one, else PDFDocEncoding
/// (read as Latin-1, which it matches in the printable range).
fn text_string(raw: &[u8]) -> String {
    if let Some(be) = raw.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = be
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(le) = raw.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = le
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(utf8) = raw.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(utf8).into_owned();
    }
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => raw.iter().map(|&b| b as char).collect(),
    }
}

/// The decompressed-size limit for one PDF stream, as lopdf takes it.
fn stream_limit(budget: &Budget) -> usize {
    usize::try_from(budget.limits().max_decompressed_bytes).unwrap_or(usize::MAX)
}

/// Why reading a page stopped: a limit of the whole file, or a broken page.
enum PageStop {
    Limit(LoadError),
    Pdf(lopdf::Error),
}

impl From<lopdf::Error> for PageStop {
    fn from(e: lopdf::Error) -> Self {
        Self::Pdf(e)
    }
}

/// Lines this close to a page's top or bottom may be running headers or footers.
const EDGE_LINES: usize = 3;

/// Removes running headers and footers: lines found at the top or bottom edge of at least
/// half the pages (digits ignored, so page numbers match). Repeated on every page, they
/// would otherwise dominate retrieval.
fn strip_running_lines(pages: &mut [(u32, String)]) {
    if pages.len() < 4 {
        return;
    }
    let key = |line: &str| -> String {
        let line = line.trim();
        line.chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect()
    };
    let edges = |text: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut keys: Vec<String> = lines.iter().take(EDGE_LINES).map(|l| key(l)).collect();
        let tail = lines
            .len()
            .saturating_sub(EDGE_LINES)
            .max(EDGE_LINES.min(lines.len()));
        keys.extend(lines[tail..].iter().map(|l| key(l)));
        keys.sort();
        keys.dedup();
        keys
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (_, text) in pages.iter() {
        for k in edges(text) {
            *counts.entry(k).or_default() += 1;
        }
    }
    let running: HashSet<String> = counts
        .into_iter()
        .filter(|(_, n)| *n * 2 >= pages.len())
        .map(|(k, _)| k)
        .collect();
    if running.is_empty() {
        return;
    }
    for (_, text) in pages.iter_mut() {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let n = lines.len();
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                !((*i < EDGE_LINES || *i + EDGE_LINES >= n) && running.contains(&key(l)))
            })
            .map(|(_, l)| *l)
            .collect();
        *text = kept.join("\n");
    }
}

/// How to turn a font's string bytes into text.
enum Decoder<'a> {
    Lopdf(Encoding<'a>),
    Cid(&'static cid::CidMap),
    /// Codes are glyph ids with no map to characters: emit nothing rather than noise.
    Unknown,
}

impl Decoder<'_> {
    fn for_font<'a>(pdf: &'a Pdf, font: &'a Dictionary, max_stream: usize) -> Decoder<'a> {
        if let Some(map) = cid::map_for_font(pdf, font) {
            return Decoder::Cid(map);
        }
        if cid::is_undecodable(pdf, font) {
            return Decoder::Unknown;
        }
        match font.get_font_encoding_with_limit(pdf, max_stream) {
            Ok(encoding) => Decoder::Lopdf(encoding),
            Err(_) => Decoder::Unknown,
        }
    }

    fn decode(&self, bytes: &[u8], out: &mut String) {
        match self {
            Decoder::Lopdf(encoding) => {
                if let Ok(text) = encoding.bytes_to_string(bytes) {
                    out.push_str(&text);
                }
            }
            Decoder::Cid(map) => map.decode(bytes, out),
            Decoder::Unknown => {}
        }
    }
}

/// Walks a page's content stream: text-showing operators give text; moves to a new line
/// give line breaks; horizontal moves and wide `TJ` gaps give spaces (the cleaner removes
/// those that fall between Chinese characters).
fn page_text(pdf: &Pdf, page_id: ObjectId, budget: &mut Budget) -> Result<String, PageStop> {
    let max_stream = stream_limit(budget);
    let decoders: BTreeMap<Vec<u8>, Decoder> = pdf
        .get_page_fonts(page_id)?
        .into_iter()
        .map(|(name, font)| (name, Decoder::for_font(pdf, font, max_stream)))
        .collect();
    let content = pdf.get_page_content_with_limit(page_id, max_stream)?;
    budget.check_time().map_err(PageStop::Limit)?;
    let content = Content::decode(&content)?;
    budget.check_time().map_err(PageStop::Limit)?;

    let mut out = String::new();
    let mut font: Option<&Decoder> = None;
    let mut line_y: Option<f32> = None;
    for op in &content.operations {
        budget.tick().map_err(PageStop::Limit)?;
        let operands = &op.operands;
        match op.operator.as_str() {
            "Tf" => {
                font = operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .and_then(|name| decoders.get(name));
            }
            "Tj" => show(font, operands.first(), &mut out),
            "'" => {
                newline(&mut out);
                show(font, operands.first(), &mut out);
            }
            "\"" => {
                newline(&mut out);
                show(font, operands.get(2), &mut out);
            }
            "TJ" => {
                for item in operands
                    .first()
                    .and_then(|o| o.as_array().ok())
                    .into_iter()
                    .flatten()
                {
                    match number(item) {
                        Some(n) if -n > TJ_SPACE => space(&mut out),
                        Some(_) => {}
                        None => show(font, Some(item), &mut out),
                    }
                }
            }
            "Td" | "TD" => {
                let (tx, ty) = (operand(operands, 0), operand(operands, 1));
                if ty != 0.0 {
                    newline(&mut out);
                } else if tx != 0.0 {
                    space(&mut out);
                }
            }
            "Tm" => {
                // A new text matrix on the same baseline continues the line.
                let y = operand(operands, 5);
                if line_y.is_some_and(|prev| (prev - y).abs() < 0.5) {
                    space(&mut out);
                } else {
                    newline(&mut out);
                }
                line_y = Some(y);
            }
            "T*" | "ET" => newline(&mut out),
            "BT" => line_y = None,
            _ => {}
        }
    }
    Ok(out)
}

fn show(font: Option<&Decoder>, operand: Option<&Object>, out: &mut String) {
    if let (Some(font), Some(Object::String(bytes, _))) = (font, operand) {
        font.decode(bytes, out);
    }
}

fn number(o: &Object) -> Option<f32> {
    match *o {
        Object::Integer(i) => Some(i as f32),
        Object::Real(r) => Some(r),
        _ => None,
    }
}

fn operand(operands: &[Object], i: usize) -> f32 {
    operands.get(i).and_then(number).unwrap_or(0.0)
}

fn newline(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with([' ', '\n']) {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::ingest::load::LoadLimits;
    use crate::ingest::load::tests::garbage;

    fn sections(source: &str, bytes: &[u8]) -> Result<Vec<Section>, LoadError> {
        let limits = LoadLimits::default();
        super::sections(source, bytes, &mut Budget::new(source, &limits)).map(|(s, _)| s)
    }

    /// The fixture booklet (tests/fixtures/make_cjk_book.py): Chinese in an Identity-H
    /// Adobe-GB1 font without a ToUnicode map, a blank page 2, a running header and footer
    /// with page numbers on pages 3-7.
    fn book_bytes() -> Vec<u8> {
        std::fs::read(lore_testkit::fixture("cjk_book.pdf")).unwrap()
    }

    /// The booklet, extracted once for all tests.
    fn book() -> &'static [Section] {
        static SECTIONS: OnceLock<Vec<Section>> = OnceLock::new();
        SECTIONS.get_or_init(|| sections("cjk_book.pdf", &book_bytes()).unwrap())
    }

    fn page(n: u32) -> &'static str {
        let section = book().iter().find(|s| s.page == Some(n));
        &section
            .unwrap_or_else(|| panic!("no section for page {n}"))
            .text
    }

    #[test]
    fn chinese_text_comes_out_readable() {
        // Page 3 opens chapter 1; its font has no ToUnicode map.
        let text = page(3);
        assert!(text.contains("绪论"), "{text}");
        assert!(
            text.contains("本章作为全书的开篇，主要介绍什么是机器学习以及本书使用的数学符号"),
            "{text}"
        );
        assert!(page(6).contains("F1 是两者的调和平均"), "{}", page(6));
    }

    #[test]
    fn page_numbers_match_the_viewer() {
        // Page 2 is blank: it is dropped, and the pages after it keep the viewer's numbers.
        assert!(page(5).contains("第 2 章模型评估与选择"), "{}", page(5));
        assert!(!page(4).contains("模型评估与选择"), "{}", page(4));
        let pages: Vec<u32> = book().iter().filter_map(|s| s.page).collect();
        assert_eq!(pages, [1, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn lines_of_a_paragraph_are_joined_and_no_mojibake_remains() {
        let text = page(3);
        // In the PDF this sentence breaks after "作"; the cleaner rejoins it.
        assert!(text.contains("为后续内容作铺垫"), "{text}");
        assert!(text.contains("学习规律，并用学到的规律"), "{text}");
        // After a sentence end the line break stays: PDFs mark paragraphs no other way.
        assert!(text.contains("作出预测。\n读者只需"), "{text}");
        assert!(!text.contains('\u{fffd}') && !text.contains('ˇ'), "{text}");
    }

    #[test]
    fn every_page_of_the_book_is_extracted_quickly() {
        // The real 196-page pumpkin book, when the shared corpus is beside the repository.
        let Some(path) = lore_testkit::shared_corpus("knowledge_db/pumpkin_book/pumpkin_book.pdf")
        else {
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let start = std::time::Instant::now();
        let s = sections("pumpkin_book.pdf", &bytes).unwrap();
        let elapsed = start.elapsed();
        eprintln!(
            "pumpkin_book.pdf: {} pages with text in {elapsed:?}",
            s.len()
        );
        assert!(s.len() > 180, "{} pages with text", s.len());
        // Debug builds are far slower; the budget is for --release.
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_secs() < 10, "{elapsed:?}");
        }
    }

    #[test]
    fn running_headers_and_footers_are_removed() {
        for n in [3, 5, 7] {
            let text = page(n);
            assert!(!text.contains("测试样书"), "page {n}: {text}");
            assert!(!text.contains("配套习题见项目仓库"), "page {n}: {text}");
            assert!(!text.contains(&format!("— {n} —")), "page {n}: {text}");
        }
        // The cover has no running lines and keeps its own text.
        assert!(page(1).contains("测试用样书"), "{}", page(1));
    }

    #[test]
    fn only_lines_repeated_at_page_edges_are_running_lines() {
        let mut pages: Vec<(u32, String)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .zip(1..)
            .map(|(w, n)| {
                (
                    n,
                    format!("Header\n{w}1\n{w}2\nx\n{w}3\n{w}4\n{w}5\n- {n} -"),
                )
            })
            .collect();
        strip_running_lines(&mut pages);
        // "x" repeats on every page but away from the edges, so it stays.
        assert_eq!(pages[1].1, "b1\nb2\nx\nb3\nb4\nb5");
    }

    /// A small Helvetica PDF with one page per text, optionally encrypted for a user password.
    fn synthetic_pdf(texts: &[&str], user_password: Option<&str>) -> Vec<u8> {
        use lopdf::{Stream, dictionary};
        let mut doc = Pdf::with_version("1.5");
        // Encryption needs a file /ID.
        let id = Object::string_literal(b"0123456789abcdef");
        doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let kids: Vec<Object> = texts
            .iter()
            .map(|text| {
                let content = format!("BT /F1 12 Tf 72 700 Td ({text}) Tj ET");
                let contents = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
                doc.add_object(dictionary! {
                    "Type" => "Page",
                    "Parent" => pages_id,
                    "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                    "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
                    "Contents" => contents,
                })
                .into()
            })
            .collect();
        let count = texts.len() as i64;
        doc.objects.insert(
            pages_id,
            dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }.into(),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        if let Some(user_password) = user_password {
            let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
                document: &doc,
                owner_password: "owner",
                user_password,
                key_length: 128,
                permissions: lopdf::Permissions::all(),
            })
            .unwrap();
            doc.encrypt(&state).unwrap();
        }
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn empty_pages_are_dropped_and_the_rest_keep_their_numbers() {
        let bytes = synthetic_pdf(&["first page", "", "third page"], None);
        let s = sections("three.pdf", &bytes).unwrap();
        let got: Vec<_> = s.iter().map(|s| (s.page, s.text.as_str())).collect();
        assert_eq!(got, [(Some(1), "first page"), (Some(3), "third page")]);
    }

    #[test]
    fn password_protected_pdf_is_corrupt_naming_the_file() {
        let bytes = synthetic_pdf(&["secret plans"], Some("hunter2"));
        let err = sections("locked.pdf", &bytes).unwrap_err();
        assert!(matches!(err, LoadError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("locked.pdf") && msg.contains("encrypted"),
            "{msg}"
        );
    }

    #[test]
    fn pdf_encrypted_with_an_empty_user_password_is_read() {
        let bytes = synthetic_pdf(&["open to all"], Some(""));
        let s = sections("open.pdf", &bytes).unwrap();
        assert_eq!(s[0].text, "open to all");
    }

    #[test]
    fn corrupt_pdf_is_an_error_naming_the_file() {
        let err = sections("broken.pdf", b"%PDF-1.5\n this is not a pdf").unwrap_err();
        assert!(matches!(err, LoadError::Corrupt { .. }));
        assert!(err.to_string().contains("broken.pdf"), "{err}");
    }

    #[test]
    fn truncated_pdf_is_an_error_or_partial_never_a_panic() {
        let bytes = book_bytes();
        for cut in [10, 1000, bytes.len() / 2, bytes.len() - 100] {
            let _ = sections("cut.pdf", &bytes[..cut]);
        }
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in garbage(300) {
            let _ = sections("garbage.pdf", &bytes);
            let mut pdfish = b"%PDF-1.4\n1 0 obj <<>> stream\n".to_vec();
            pdfish.extend_from_slice(&bytes);
            pdfish.extend_from_slice(b"\nendstream endobj\ntrailer <</Root 1 0 R>>\n%%EOF");
            let _ = sections("garbage.pdf", &pdfish);
        }
    }
}
