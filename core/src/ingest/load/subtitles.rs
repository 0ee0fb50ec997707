//! Subtitles (`.srt`, `.vtt`): cues grouped into sections of a few hundred characters,
//! each stamped with the time span it covers.

use super::LoadError;
use super::budget::Budget;
use crate::ingest::clean::clean_text;
use crate::ingest::document::Section;

/// Characters of cue text after which a group is closed. Groups therefore run from this
/// to this plus one cue (cues are short), about 400–800 characters of Chinese speech or
/// 1–2 minutes: enough context for a chunk, short enough for a precise timestamp.
pub const GROUP_CHARS: usize = 500;

/// One subtitle cue: its time span and cleaned text.
#[derive(Debug, PartialEq)]
struct Cue {
    start: String,
    end: String,
    text: String,
}

/// Parses SRT or WebVTT text into grouped sections; blocks without a timing line (the VTT
/// header, NOTE, STYLE, REGION) are skipped, as are cue numbers and cue settings.
pub(super) fn sections(text: &str, budget: &mut Budget) -> Result<Vec<Section>, LoadError> {
    let cues = parse(text, budget)?;
    let mut sections = Vec::new();
    let mut group: Vec<&Cue> = Vec::new();
    let mut chars = 0;
    for cue in &cues {
        chars += cue.text.chars().count();
        group.push(cue);
        if chars >= GROUP_CHARS {
            sections.push(section(&group));
            group.clear();
            chars = 0;
        }
    }
    if !group.is_empty() {
        sections.push(section(&group));
    }
    Ok(sections)
}

/// A group's text keeps one line per cue: cues are rarely punctuated, and gluing them
/// would run sentences together.
fn section(group: &[&Cue]) -> Section {
    let text: Vec<&str> = group.iter().map(|c| c.text.as_str()).collect();
    Section {
        text: text.join("\n"),
        timestamp: Some(format!(
            "{} --> {}",
            group[0].start,
            group[group.len() - 1].end
        )),
        ..Section::default()
    }
}

fn parse(text: &str, budget: &mut Budget) -> Result<Vec<Cue>, LoadError> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut cues = Vec::new();
    for block in text.split("\n\n") {
        budget.tick()?;
        let mut lines = block.lines().skip_while(|l| !l.contains("-->"));
        let Some(timing) = lines.next() else { continue };
        let Some((start, end)) = parse_timing(timing) else {
            continue;
        };
        let body: Vec<String> = lines.map(strip_tags).collect();
        let text = clean_text(&body.join("\n"));
        if !text.is_empty() {
            budget.element()?;
            cues.push(Cue { start, end, text });
        }
    }
    Ok(cues)
}

/// "00:00:01,000 --> 00:00:03,000 align:start" → ("00:00:01", "00:00:03").
fn parse_timing(line: &str) -> Option<(String, String)> {
    let (start, rest) = line.split_once("-->")?;
    let end = rest.split_whitespace().next()?;
    Some((normalize_time(start.trim())?, normalize_time(end)?))
}

/// SRT "HH:MM:SS,mmm" and VTT "MM:SS.mmm" / "HH:MM:SS.mmm" → "HH:MM:SS". Seconds are
/// precise enough to find the spot in a video, and one format reads better in citations.
fn normalize_time(t: &str) -> Option<String> {
    let whole = t.split([',', '.']).next()?;
    let parts: Vec<u64> = whole
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m, s) = match parts[..] {
        [m, s] => (0, m, s),
        [h, m, s] => (h, m, s),
        _ => return None,
    };
    Some(format!("{h:02}:{m:02}:{s:02}"))
}

/// Removes markup from cue text: `<v Name>` becomes "Name: ", other tags (`<i>`, `<c.x>`,
/// `<00:01.000>`) and SSA overrides (`{\an8}`) go.
fn strip_tags(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(['<', '{']) {
        out.push_str(&rest[..i]);
        let close = if rest[i..].starts_with('<') { '>' } else { '}' };
        let Some(j) = rest[i..].find(close) else {
            out.push_str(&rest[i..]);
            return out;
        };
        let tag = &rest[i + 1..i + j];
        if close == '>'
            && let Some(voice) = tag.strip_prefix('v')
            && voice.starts_with([' ', '.'])
        {
            // "<v Bob>" or "<v.loud Bob>": the name follows the first space.
            let name = voice.split_once(' ').map_or("", |(_, n)| n).trim();
            if !name.is_empty() {
                out.push_str(name);
                out.push_str(": ");
            }
        } else if close == '}' && !tag.starts_with('\\') {
            // A brace that is not an SSA override is text.
            out.push_str(&rest[i..=i + j]);
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::load::LoadLimits;
    use crate::ingest::load::tests::garbage;

    fn sections(text: &str) -> Vec<Section> {
        let limits = LoadLimits::default();
        super::sections(text, &mut Budget::new("test.srt", &limits)).unwrap()
    }

    #[test]
    fn srt_cues_lose_numbers_and_timings() {
        let srt = "1\n00:00:01,000 --> 00:00:03,000\nB站的小伙伴们好\n\n2\n00:00:03,000 --> 00:00:07,500\n我是 作者之一\n<i>王奇</i>\n";
        let s = sections(srt);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].text, "B站的小伙伴们好\n我是作者之一王奇");
        assert_eq!(s[0].timestamp.as_deref(), Some("00:00:01 --> 00:00:07"));
    }

    #[test]
    fn vtt_header_notes_and_styles_are_skipped() {
        let vtt = "WEBVTT - lecture\nKind: captions\n\nNOTE written by hand\nspans lines\n\nSTYLE\n::cue { color: red }\n\nintro\n00:01.000 --> 00:03.000 align:start position:10%\n<v Roger Bingham>We are in New York City\n\n01:02:03.250 --> 01:02:04.000\n<v.loud Neil>And <c.yellow>stars</c>\n";
        let s = sections(vtt);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].text,
            "Roger Bingham: We are in New York City\nNeil: And stars"
        );
        assert_eq!(s[0].timestamp.as_deref(), Some("00:00:01 --> 01:02:04"));
    }

    #[test]
    fn cues_are_grouped_into_sections_of_a_few_hundred_characters() {
        let cue = "这是一句大约二十个字的字幕文字内容而已";
        let srt: String = (0..100)
            .map(|i| {
                format!(
                    "{}\n00:{:02}:{:02},000 --> 00:{:02}:{:02},500\n{cue}\n\n",
                    i + 1,
                    i / 60,
                    i % 60,
                    i / 60,
                    i % 60
                )
            })
            .collect();
        let s = sections(&srt);
        assert!(s.len() >= 3, "{} sections", s.len());
        for section in &s[..s.len() - 1] {
            let n = section.text.chars().count();
            assert!((GROUP_CHARS..GROUP_CHARS + 60).contains(&n), "{n} chars");
        }
        // 19-character cues: the first group closes with cue 27 (index 26), at 500 characters.
        assert_eq!(s[0].timestamp.as_deref(), Some("00:00:00 --> 00:00:26"));
    }

    #[test]
    fn srt_and_vtt_of_one_lecture_agree() {
        // tests/fixtures/make_subtitles.py writes the same cues in both formats.
        let read = |ext: &str| {
            std::fs::read_to_string(lore_testkit::fixture(&format!("lecture.{ext}"))).unwrap()
        };
        let srt = sections(&read("srt"));
        let vtt = sections(&read("vtt"));
        assert_eq!(srt, vtt);
        assert!(srt.len() >= 2, "{} sections", srt.len());
        assert!(
            srt[0]
                .text
                .starts_with("各位同学大家好\n我是这门强化学习入门课的助教小林"),
            "{}",
            srt[0].text
        );
        assert_eq!(
            srt[0].timestamp.as_deref().map(|t| &t[..12]),
            Some("00:57:54 -->")
        );
        // The lecture runs past the hour, and both formats say so.
        assert_eq!(
            srt.last().unwrap().timestamp.as_deref().map(|t| &t[13..]),
            Some("01:00:17")
        );
        let all: String = srt.iter().map(|s| s.text.as_str()).collect();
        assert!(!all.contains("-->") && !all.contains("WEBVTT"));
        assert!(
            !all.lines().any(|l| l.trim().parse::<u32>().is_ok()),
            "cue numbers leaked"
        );
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in garbage(300) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = sections(&text);
            let _ = sections(&format!(
                "1\n00:00:01,000 --> {text}\n<v {text}\n{{\\{text}"
            ));
        }
    }
}
