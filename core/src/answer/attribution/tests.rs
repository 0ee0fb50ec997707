use super::*;

const OOLONG: &str = "乌龙茶是一种半发酵茶，主要产自福建和台湾。";
const GREEN: &str = "绿茶不发酵，龙井和碧螺春都是有名的绿茶。";
const OOLONG_EN: &str = "Oolong tea is partly oxidised and comes mostly from Fujian and Taiwan.";
const GREEN_EN: &str = "Green tea is not oxidised; Longjing is a famous green tea from Zhejiang.";

/// settings.toml's `support_threshold`.
const THRESHOLD: f32 = 0.6;

fn bm25() -> &'static Bm25Encoder {
    static BM25: std::sync::OnceLock<Bm25Encoder> = std::sync::OnceLock::new();
    BM25.get_or_init(Bm25Encoder::new)
}

/// The whole answer attributed at once: the text shown and the attributor, for its
/// figures.
fn attribute<'a>(
    text: &str,
    passages: &[&str],
    unsupported: Unsupported,
) -> (String, Attributor<'a>) {
    let mut a = Attributor::new(bm25(), passages, THRESHOLD, unsupported);
    let mut out = a.push(text);
    out.push_str(&a.finish());
    (out, a)
}

#[test]
fn an_answer_without_markers_gets_the_passage_that_supports_each_sentence() {
    let (shown, a) = attribute(
        "乌龙茶主要产自福建和台湾。",
        &[GREEN, OOLONG],
        Unsupported::Mark,
    );
    assert_eq!(shown, "乌龙茶主要产自福建和台湾[1]。");
    // Only the oolong passage (given as [2]) is a source, and it is shown as [1].
    assert_eq!(a.order(), [2]);
    assert_eq!(a.sentences()[0].citations, [1]);
    assert_eq!(a.sentences()[0].supported, Some(true));
    assert!((a.grounding() - 1.0).abs() < 1e-6);
}

#[test]
fn a_marker_naming_the_wrong_passage_is_corrected() {
    let (shown, a) = attribute(
        "乌龙茶主要产自福建和台湾 [1]。龙井是有名的绿茶 [2]。",
        &[GREEN, OOLONG],
        Unsupported::Mark,
    );
    assert_eq!(shown, "乌龙茶主要产自福建和台湾[1]。龙井是有名的绿茶[2]。");
    assert_eq!(a.order(), [2, 1]);
    let (shown, _) = attribute(
        "Oolong comes mostly from Fujian and Taiwan [2].",
        &[OOLONG_EN, GREEN_EN],
        Unsupported::Mark,
    );
    assert_eq!(shown, "Oolong comes mostly from Fujian and Taiwan [1].");
}

#[test]
fn right_markers_stay_as_written_and_are_renumbered_by_first_use() {
    let (shown, a) = attribute(
        "Longjing is a famous green tea [2]. Oolong comes from Fujian and Taiwan [1].",
        &[OOLONG_EN, GREEN_EN],
        Unsupported::Mark,
    );
    assert_eq!(
        shown,
        "Longjing is a famous green tea [1]. Oolong comes from Fujian and Taiwan [2]."
    );
    assert_eq!(a.order(), [2, 1]);
}

#[test]
fn a_sentence_no_passage_supports_is_marked_or_dropped() {
    let text = "Oolong comes from Fujian and Taiwan. The moon is made of basalt rock.";
    let (shown, a) = attribute(text, &[OOLONG_EN, GREEN_EN], Unsupported::Mark);
    assert_eq!(
        shown,
        format!(
            "Oolong comes from Fujian and Taiwan [1]. The moon is made of basalt rock. {NOT_FOUND_MARK}"
        )
    );
    assert_eq!(a.sentences()[1].supported, Some(false));
    assert!(a.sentences()[1].citations.is_empty());
    assert!(
        a.grounding() > 0.3 && a.grounding() < 0.7,
        "{}",
        a.grounding()
    );
    let (shown, _) = attribute(text, &[OOLONG_EN, GREEN_EN], Unsupported::Drop);
    assert_eq!(shown.trim_end(), "Oolong comes from Fujian and Taiwan [1].");
    // A marker on an unsupported sentence goes too.
    let (shown, a) = attribute("月球表面覆盖着玄武岩 [1]。", &[OOLONG], Unsupported::Mark);
    assert_eq!(shown, format!("月球表面覆盖着玄武岩。 {NOT_FOUND_MARK} "));
    assert!(a.order().is_empty());
    assert_eq!(a.grounding(), 0.0);
}

#[test]
fn the_mark_stands_apart_from_the_next_chinese_sentence() {
    let (shown, a) = attribute(
        "月球表面覆盖着玄武岩。乌龙茶主要产自福建和台湾。",
        &[OOLONG],
        Unsupported::Mark,
    );
    assert_eq!(
        shown,
        format!("月球表面覆盖着玄武岩。 {NOT_FOUND_MARK} 乌龙茶主要产自福建和台湾[1]。")
    );
    // The space is between sentences, not part of one.
    assert!(a.sentences()[0].text.ends_with(NOT_FOUND_MARK));
}

#[test]
fn code_headings_short_sentences_and_refusals_are_not_judged() {
    let text = "## Summary\n\n```python\nx = grid[1]. y\n```\nYes.\n";
    let (shown, a) = attribute(text, &[OOLONG_EN], Unsupported::Mark);
    assert_eq!(shown, text);
    assert!(a.order().is_empty());
    let (shown, a) = attribute("知识库中没有相关内容。", &[OOLONG], Unsupported::Mark);
    assert_eq!(shown, "知识库中没有相关内容。");
    assert!(a.refused());
    assert!(a.sentences().iter().all(|s| s.supported.is_none()));
}

#[test]
fn one_shared_word_is_not_support() {
    let green = format!("## 绿茶\n\n{GREEN}");
    let (shown, a) = attribute(
        "龙井和碧螺春 [1]。普洱茶产自云南 [2]。",
        &[&green, OOLONG],
        Unsupported::Mark,
    );
    assert_eq!(
        shown,
        format!("龙井和碧螺春 [1]。普洱茶产自云南。 {NOT_FOUND_MARK} "),
        "{:?}",
        a.sentences()
    );
}

#[test]
fn a_sentence_in_another_language_than_every_passage_is_not_judged() {
    let (shown, a) = attribute(
        "Oolong comes from Fujian and Taiwan [1].",
        &[OOLONG],
        Unsupported::Mark,
    );
    assert_eq!(shown, "Oolong comes from Fujian and Taiwan [1].");
    assert_eq!(a.sentences()[0].supported, None);
    assert_eq!(a.order(), [1]);
}

#[test]
fn lists_are_judged_line_by_line() {
    let text = "1. Oolong comes from Fujian and Taiwan\n2. Longjing is a famous green tea\n";
    let (shown, a) = attribute(text, &[OOLONG_EN, GREEN_EN], Unsupported::Mark);
    assert_eq!(
        shown,
        "1. Oolong comes from Fujian and Taiwan [1]\n2. Longjing is a famous green tea [2]\n"
    );
    assert_eq!(a.sentences().len(), 2);
}

#[test]
fn streaming_in_any_cuts_gives_the_whole_texts_result() {
    let text = "Oolong comes from Fujian and Taiwan [2]. The moon is basalt rock [1].\n\n```\na[1]. b\n```\n乌龙茶主要产自福建和台湾。另见。";
    let passages = [OOLONG_EN, GREEN_EN, OOLONG];
    let (whole, _) = attribute(text, &passages, Unsupported::Mark);
    let chars: Vec<char> = text.chars().collect();
    for size in [1, 2, 3, 5, 8] {
        let mut a = Attributor::new(bm25(), &passages, THRESHOLD, Unsupported::Mark);
        let mut streamed = String::new();
        for piece in chars.chunks(size) {
            streamed.push_str(&a.push(&piece.iter().collect::<String>()));
        }
        streamed.push_str(&a.finish());
        assert_eq!(streamed, whole, "pieces of {size}");
    }
    // A sentence comes out once it is complete, before the answer ends.
    let mut a = Attributor::new(bm25(), &passages, THRESHOLD, Unsupported::Mark);
    assert_eq!(a.push("Oolong comes from Fujian and Taiwan."), "");
    assert_eq!(a.push(" The"), "Oolong comes from Fujian and Taiwan [1]. ");
}
