//! Does a negation govern a flag term? (我不想起诉, 没有报警, 不会去曝光)
//!
//! A deliberately small, documented heuristic over the matching form
//! (simplified, folded, separators removed):
//!
//! * look back from the term, within its clause (never across `，。！？；：、`
//!   or their ASCII forms) and at most [`WINDOW`] chars;
//! * find the nearest negation cue (不, 没, 没有, 未, 别, 不想, 不会, 不要,
//!   不用, 不必, 无需, 从未, 并未, 绝不, ...);
//! * the cue governs the term only when everything between them is *filler*
//!   (intent and direction words: 想 会 要 去 再 打算 准备 找 向 跟 到 我 ...).
//!   So 不会去曝光 is negated, but 再不处理就投诉到工信部 (就 between) and
//!   不要逼我报警 (逼 between: a threat) are not;
//! * double negatives and idioms that are not negations (不得不, 不能不,
//!   不然, 要不, 不管, 不仅, 不满) never count as cues, nor does the 不/没 of an
//!   A-not-A question (算不算, 要不要, 有没有).

/// Maximum chars looked back from the start of a term.
pub const WINDOW: usize = 8;

const CUES: &[&str] = &[
    "不打算",
    "不准备",
    "从来没",
    "不想",
    "不会",
    "不要",
    "不用",
    "不必",
    "无需",
    "没有",
    "从未",
    "并未",
    "绝不",
    "不再",
    "不愿",
    "不",
    "没",
    "未",
    "别",
    "甭",
];
const NOT_CUES: &[&str] = &[
    "不得不",
    "不能不",
    "不会不",
    "不敢不",
    "不然",
    "要不",
    "不管",
    "不仅",
    "不但",
    "不光",
    "不只",
    "不满",
    "不行",
    "不停",
    "不断",
];
const FILLER: &str = "想会要去再打算准备用必敢能可找向跟给到也还都我你他她们了过真的一直";
const CLAUSE_END: &str = ",.!?;:，。！？；：、\n";

/// True when a negation cue governs the term starting at char `start` of
/// `chars` (the matching form as chars).
pub fn is_negated(chars: &[char], start: usize) -> bool {
    let lo = start.saturating_sub(WINDOW);
    let mut from = lo;
    for i in (lo..start).rev() {
        if CLAUSE_END.contains(chars[i]) {
            from = i + 1;
            break;
        }
    }
    let window: &[char] = &chars[from..start];
    // Scan cue end positions from nearest to farthest.
    for end in (1..=window.len()).rev() {
        let gap = &window[end..];
        if !gap.iter().all(|c| FILLER.contains(*c)) {
            // Something that is not filler stands between: no farther cue can govern.
            return false;
        }
        for cue in CUES {
            let cue: Vec<char> = cue.chars().collect();
            if end >= cue.len() && window[end - cue.len()..end] == cue[..] {
                let cue_start = from + end - cue.len();
                return !inside_not_cue(chars, cue_start, from + end) && !a_not_a_question(chars, cue_start);
            }
        }
    }
    false
}

/// True when the cue at `cue_start` is the 不/没 of an A-not-A question
/// (算不算盗窃, 要不要报警, 有没有报警): a question, not a negation.
fn a_not_a_question(chars: &[char], cue_start: usize) -> bool {
    matches!(chars[cue_start], '不' | '没')
        && cue_start > 0
        && cue_start + 1 < chars.len()
        && chars[cue_start - 1] == chars[cue_start + 1]
}

/// True when chars `[s, e)` lie inside one of the [`NOT_CUES`] idioms.
fn inside_not_cue(chars: &[char], s: usize, e: usize) -> bool {
    NOT_CUES.iter().any(|nc| {
        let nc: Vec<char> = nc.chars().collect();
        let lo = e.saturating_sub(nc.len());
        (lo..=s).any(|p| p + nc.len() <= chars.len() && chars[p..p + nc.len()] == nc[..] && p + nc.len() >= e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(text: &str, term: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let b = text.find(term).unwrap();
        is_negated(&chars, text[..b].chars().count())
    }

    #[test]
    fn plain_negations() {
        assert!(neg("我不想起诉", "起诉"));
        assert!(neg("我们没有报警", "报警"));
        assert!(neg("我不会去曝光的", "曝光"));
        assert!(neg("暂时不打算找律师", "律师"));
        assert!(neg("我没报警", "报警"));
        assert!(neg("别去12315", "12315"));
    }

    #[test]
    fn affirmed_and_conditional_threats_are_not_negated() {
        assert!(!neg("我要起诉你们", "起诉"));
        assert!(!neg("再不处理就投诉到工信部", "工信部"));
        assert!(!neg("不要逼我报警", "报警"));
        assert!(!neg("不得不报警了", "报警"));
        assert!(!neg("不然我就报警", "报警"));
        assert!(!neg("很不负责任起诉你们", "起诉"));
        assert!(!neg("不满意就起诉", "起诉"));
    }

    #[test]
    fn a_not_a_questions_are_not_negations() {
        assert!(!neg("请问算不算盗窃罪", "盗窃"));
        assert!(!neg("要不要报警", "报警"));
        assert!(!neg("你们有没有报警", "报警"));
        assert!(neg("我没有报警", "报警"));
    }

    #[test]
    fn clause_boundaries_stop_the_look_back() {
        assert!(!neg("我不想说了，报警", "报警"));
        assert!(!neg("没有用!报警", "报警"));
    }

    #[test]
    fn term_at_start_and_far_cues() {
        assert!(!neg("报警", "报警"));
        assert!(!neg("不是说好的退款吗我们真的一直在等啊报警", "报警"));
    }
}
