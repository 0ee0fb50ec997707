//! Plain text: byte decoding (UTF-8, UTF-16 with BOM, GB18030) and the one-section loader.

use encoding_rs::{Encoding, GB18030};

use crate::ingest::clean::clean_text;
use crate::ingest::document::Section;

/// Plain text is one section; the splitter cuts it later.
pub(super) fn sections(source: &str, bytes: &[u8]) -> Vec<Section> {
    let text = clean_text(&decode(source, bytes));
    if text.is_empty() {
        return Vec::new();
    }
    vec![Section {
        text,
        ..Section::default()
    }]
}

/// Decodes text bytes: a BOM wins, then strict UTF-8, then strict GB18030 (which covers GBK
/// and GB2312, common for Chinese files), and as a last resort lossy UTF-8 with a warning.
pub(super) fn decode(source: &str, bytes: &[u8]) -> String {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        return encoding
            .decode_without_bom_handling(&bytes[bom_len..])
            .0
            .into_owned();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_string();
    }
    if let Some(text) = GB18030.decode_without_bom_handling_and_without_replacement(bytes) {
        tracing::info!(source, "not UTF-8; decoded as GB18030");
        return text.into_owned();
    }
    tracing::warn!(
        source,
        "neither UTF-8 nor GB18030; undecodable bytes replaced"
    );
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_text_is_one_cleaned_section() {
        let sections = sections("a.txt", "第一段\n\n\n第二段  文字".as_bytes());
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].text, "第一段\n\n第二段文字");
        assert_eq!(sections[0].page, None);
    }

    #[test]
    fn gbk_text_is_decoded() {
        let (gbk, _, _) = GB18030.encode("机器学习是人工智能的一个分支。");
        assert!(std::str::from_utf8(&gbk).is_err());
        assert_eq!(decode("gbk.txt", &gbk), "机器学习是人工智能的一个分支。");
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xff, 0xfe];
        bytes.extend("南瓜书".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode("u16.txt", &bytes), "南瓜书");
    }

    #[test]
    fn utf8_bom_is_dropped() {
        assert_eq!(decode("bom.txt", b"\xef\xbb\xbfhello"), "hello");
    }

    #[test]
    fn undecodable_bytes_are_replaced_not_fatal() {
        let text = decode("bin.txt", b"ok \xff\x80 end");
        assert!(text.starts_with("ok ") && text.ends_with(" end"), "{text}");
    }

    #[test]
    fn empty_text_has_no_sections() {
        assert!(sections("e.txt", b" \n\n \t").is_empty());
    }
}
