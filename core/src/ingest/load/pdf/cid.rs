//! CID → Unicode for CID fonts that carry no `/ToUnicode` map.
//!
//! xdvipdfmx (LaTeX/ctex) embeds Chinese fonts as `Identity-H` CID fonts whose CIDs are
//! Adobe-GB1 character IDs, without a ToUnicode map. lopdf then falls back to a one-byte
//! encoding and produces mojibake, so such fonts are decoded here through Adobe's own
//! Adobe-GB1-UCS2 CMap (BSD-3-Clause; the file carries its licence), from Debian's
//! poppler-data 0.4.12.

use std::sync::OnceLock;

use lopdf::{Dictionary, Document, Object};

const ADOBE_GB1_UCS2: &str = include_str!("Adobe-GB1-UCS2.cmap");

/// A CID-indexed table of Unicode characters; `'\0'` marks an unmapped CID.
pub(super) struct CidMap(Vec<char>);

impl CidMap {
    /// Decodes big-endian two-byte CIDs (`Identity-H`), skipping unmapped ones.
    pub(super) fn decode(&self, bytes: &[u8], out: &mut String) {
        for pair in bytes.chunks_exact(2) {
            let cid = u16::from_be_bytes([pair[0], pair[1]]) as usize;
            match self.0.get(cid) {
                // CID 0 (.notdef) maps to U+FFFD, which is noise in extracted text.
                Some(&c) if c != '\0' && c != '\u{fffd}' => out.push(c),
                _ => {}
            }
        }
    }

    /// Parses the `bfchar` and `bfrange` sections of a CID → UCS-2 CMap.
    fn parse(cmap: &str) -> CidMap {
        let mut table = Vec::new();
        let mut set = |cid: u32, c: char| {
            let cid = cid as usize;
            if table.len() <= cid {
                table.resize(cid + 1, '\0');
            }
            table[cid] = c;
        };
        let mut in_mapping = false;
        for line in cmap.lines() {
            if line.ends_with("beginbfchar") || line.ends_with("beginbfrange") {
                in_mapping = true;
                continue;
            }
            if line.starts_with("endbf") {
                in_mapping = false;
            }
            if !in_mapping {
                continue;
            }
            let hex: Vec<&str> = line
                .split(['<', '>'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            match hex[..] {
                [cid, dst] => {
                    if let (Some(cid), Some(c)) = (parse_hex(cid), utf16_char(dst)) {
                        set(cid, c);
                    }
                }
                [lo, hi, dst] => {
                    let (Some(lo), Some(hi), Some(first)) =
                        (parse_hex(lo), parse_hex(hi), utf16_char(dst))
                    else {
                        continue;
                    };
                    for (offset, cid) in (lo..=hi).enumerate() {
                        if let Some(c) = char::from_u32(first as u32 + offset as u32) {
                            set(cid, c);
                        }
                    }
                }
                _ => {}
            }
        }
        CidMap(table)
    }
}

fn parse_hex(token: &str) -> Option<u32> {
    (token.len() <= 8).then(|| u32::from_str_radix(token, 16).ok())?
}

/// The first character of a hex UTF-16BE string ("4e00", or a surrogate pair "d840dc00").
fn utf16_char(hex: &str) -> Option<char> {
    let units: Vec<u16> = (0..hex.len() / 4)
        .map(|i| u16::from_str_radix(hex.get(i * 4..i * 4 + 4)?, 16).ok())
        .collect::<Option<_>>()?;
    char::decode_utf16(units).next()?.ok()
}

/// The map for a font, if it is a two-byte `Identity` CID font without `/ToUnicode` whose
/// character collection we know (Adobe-GB1).
pub(super) fn map_for_font(pdf: &Document, font: &Dictionary) -> Option<&'static CidMap> {
    if font.has(b"ToUnicode")
        || !matches!(font.get(b"Subtype").and_then(Object::as_name), Ok(b"Type0"))
    {
        return None;
    }
    let encoding = font
        .get_deref(b"Encoding", pdf)
        .and_then(Object::as_name)
        .ok()?;
    if encoding != b"Identity-H" && encoding != b"Identity-V" {
        return None;
    }
    let descendant = font
        .get_deref(b"DescendantFonts", pdf)
        .and_then(Object::as_array)
        .ok()?
        .first()
        .and_then(|d| pdf.dereference(d).ok())
        .and_then(|(_, d)| d.as_dict().ok())?;
    let info = descendant
        .get_deref(b"CIDSystemInfo", pdf)
        .and_then(Object::as_dict)
        .ok()?;
    let field = |key: &[u8]| info.get_deref(key, pdf).and_then(Object::as_str).ok();
    match (field(b"Registry")?, field(b"Ordering")?) {
        (b"Adobe", b"GB1") => {
            static GB1: OnceLock<CidMap> = OnceLock::new();
            Some(GB1.get_or_init(|| CidMap::parse(ADOBE_GB1_UCS2)))
        }
        _ => None,
    }
}

/// Whether a font is a two-byte `Identity` CID font with no way to map codes to text, whose
/// output would only be noise.
pub(super) fn is_undecodable(pdf: &Document, font: &Dictionary) -> bool {
    let identity = matches!(
        font.get_deref(b"Encoding", pdf).and_then(Object::as_name),
        Ok(b"Identity-H" | b"Identity-V")
    );
    identity && !font.has(b"ToUnicode") && map_for_font(pdf, font).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb1_table_maps_punctuation_and_ideographs() {
        let map = CidMap::parse(ADOBE_GB1_UCS2);
        let mut out = String::new();
        // CID 0x63 is the middle dot; CID 1 the space; 0x0fc2/0x0a82 are 绪论 in the
        // pumpkin book's chapter 1 title.
        map.decode(&[0x00, 0x63, 0x00, 0x01, 0x0f, 0xc2, 0x0a, 0x82], &mut out);
        assert_eq!(out, "· 绪论");
        assert!(map.0.len() > 30_000, "{} CIDs", map.0.len());
    }

    #[test]
    fn odd_or_unmapped_codes_are_skipped() {
        let map = CidMap::parse(
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n2 beginbfchar\n<0000> <fffd>\n<0001> <0041>\nendbfchar\n1 beginbfrange\n<0002> <0004> <0061>\nendbfrange",
        );
        let mut out = String::new();
        map.decode(&[0, 0, 0, 1, 0, 3, 0x7f, 0xff, 9], &mut out);
        assert_eq!(out, "Ab");
    }

    #[test]
    fn surrogate_pairs_decode() {
        assert_eq!(utf16_char("d840dc00"), Some('\u{20000}'));
        assert_eq!(utf16_char("zz"), None);
    }
}
