//! The hard-case probes (`data/probes/probes.tsv`, see its README): parsing
//! and scoring by `kesu eval --probes`.
//!
//! Probes are for measurement only: nothing is trained, chosen or tuned on
//! them, so scoring reports figures per family and per flag, never the texts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use kesu_core::flags::Flag;
use serde::Serialize;

use crate::data::{parse_label_columns, CATEGORIES, LEVELS};
use crate::metrics::{self, Binary};

/// The level-3 share and the per-flag recall a probe run must reach (issue 13).
pub const TARGET_LEVEL3_SHARE: f64 = 0.95;
pub const TARGET_FLAG_RECALL: f64 = 0.95;

/// One probe: its labels by the schema and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub id: String,
    pub family: String,
    pub category: usize,
    pub touches: [bool; 3],
    pub escalation: usize,
    pub flags: Vec<Flag>,
    pub text: String,
}

const HEADER: &str = "id\tfamily\tcategory\tproduct\tservice\tinformation_security\tescalation\tflags\ttext";

/// Parses a probe file's content. `file` names it in errors, which carry the
/// line number (`file:line: ...`). Never panics, whatever the input.
pub fn parse(raw: &str, file: &str) -> anyhow::Result<Vec<Probe>> {
    let mut lines = raw.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end_matches('\r') == HEADER => {}
        _ => anyhow::bail!("{file}:1: expected the header {HEADER:?}"),
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{file}:{}", i + 1);
        let c: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(c.len() == 9, "{}: expected 9 tab-separated columns, found {}", at(), c.len());
        let (category, touches, escalation, flags) = parse_label_columns(&c[2..8], &at)?;
        anyhow::ensure!(!c[0].is_empty() && !c[1].is_empty(), "{}: empty id or family", at());
        anyhow::ensure!(!c[8].trim().is_empty(), "{}: empty text", at());
        anyhow::ensure!(seen.insert(c[0].to_string()), "{}: probe id {:?} appears twice", at(), c[0]);
        out.push(Probe {
            id: c[0].into(),
            family: c[1].into(),
            category,
            touches,
            escalation,
            flags,
            text: c[8].into(),
        });
    }
    Ok(out)
}

/// Reads and parses a probe file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Probe>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&raw, &path.display().to_string())
}

/// What a system answered for one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub category: usize,
    pub escalation: usize,
    pub flags: Vec<Flag>,
}

/// Scores of one family of probes.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyScores {
    pub family: String,
    pub n: usize,
    pub category_accuracy: f64,
    pub escalation_accuracy: f64,
    /// Probes labelled level 3, and how many of them were answered 3.
    pub level3: usize,
    pub level3_at_3: usize,
    /// Labelled flags of the family's probes found / missed, flags raised that
    /// are not labelled.
    pub flags_tp: usize,
    pub flags_fn: usize,
    pub flags_fp: usize,
}

/// Scores of one flag over all probes.
#[derive(Debug, Clone, Serialize)]
pub struct FlagScores {
    pub flag: Flag,
    pub support: usize,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
}

/// Everything `kesu eval --probes` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeScores {
    pub n: usize,
    pub category: metrics::Report,
    pub escalation: metrics::Report,
    pub level3: usize,
    pub level3_at_3: usize,
    /// Share of level-3 probes answered 3 (1.0 when there are none).
    pub level3_share: f64,
    pub flags_micro_precision: f64,
    pub flags_micro_recall: f64,
    pub per_flag: Vec<FlagScores>,
    pub per_family: Vec<FamilyScores>,
    /// The targets: level-3 share and every flag's recall (flags with probes).
    pub level3_target_met: bool,
    pub flag_recall_target_met: bool,
}

/// Scores `answers` (one per probe, same order) against the probes' labels.
pub fn score(probes: &[Probe], answers: &[Answer]) -> ProbeScores {
    assert_eq!(probes.len(), answers.len(), "one answer per probe");
    let gc: Vec<usize> = probes.iter().map(|p| p.category).collect();
    let ge: Vec<usize> = probes.iter().map(|p| p.escalation).collect();
    let pc: Vec<usize> = answers.iter().map(|a| a.category).collect();
    let pe: Vec<usize> = answers.iter().map(|a| a.escalation).collect();
    let mut fam: BTreeMap<&str, FamilyScores> = BTreeMap::new();
    let mut per_flag: Vec<Binary> = vec![Binary::default(); Flag::ALL.len()];
    let mut any = Binary::default();
    let (mut l3, mut l3_hit) = (0, 0);
    for (p, a) in probes.iter().zip(answers) {
        let f = fam.entry(&p.family).or_insert_with(|| FamilyScores {
            family: p.family.clone(),
            n: 0,
            category_accuracy: 0.0,
            escalation_accuracy: 0.0,
            level3: 0,
            level3_at_3: 0,
            flags_tp: 0,
            flags_fn: 0,
            flags_fp: 0,
        });
        f.n += 1;
        f.category_accuracy += f64::from(u8::from(p.category == a.category));
        f.escalation_accuracy += f64::from(u8::from(p.escalation == a.escalation));
        if p.escalation == 3 {
            l3 += 1;
            f.level3 += 1;
            if a.escalation == 3 {
                l3_hit += 1;
                f.level3_at_3 += 1;
            }
        }
        for (k, flag) in Flag::ALL.iter().enumerate() {
            let (gold, pred) = (p.flags.contains(flag), a.flags.contains(flag));
            per_flag[k].add(gold, pred);
            any.add(gold, pred);
            match (gold, pred) {
                (true, true) => f.flags_tp += 1,
                (true, false) => f.flags_fn += 1,
                (false, true) => f.flags_fp += 1,
                _ => {}
            }
        }
    }
    let mut per_family: Vec<FamilyScores> = fam.into_values().collect();
    for f in &mut per_family {
        f.category_accuracy /= f.n as f64;
        f.escalation_accuracy /= f.n as f64;
    }
    let per_flag: Vec<FlagScores> = Flag::ALL
        .iter()
        .zip(&per_flag)
        .map(|(&flag, b)| FlagScores {
            flag,
            support: b.tp + b.fn_,
            tp: b.tp,
            fp: b.fp,
            fn_: b.fn_,
            precision: b.precision(),
            recall: b.recall(),
        })
        .collect();
    let level3_share = if l3 == 0 { 1.0 } else { l3_hit as f64 / l3 as f64 };
    ProbeScores {
        n: probes.len(),
        category: metrics::report(&CATEGORIES, &gc, &pc),
        escalation: metrics::report(&LEVELS, &ge, &pe),
        level3: l3,
        level3_at_3: l3_hit,
        level3_share,
        flags_micro_precision: any.precision(),
        flags_micro_recall: any.recall(),
        level3_target_met: level3_share >= TARGET_LEVEL3_SHARE,
        flag_recall_target_met: per_flag.iter().all(|f| f.support == 0 || f.recall >= TARGET_FLAG_RECALL),
        per_flag,
        per_family,
    }
}

/// The scores as text tables.
pub fn render(s: &ProbeScores) -> String {
    let mut t = format!("{} probes\n", s.n);
    t += &metrics::render("probes category", &s.category);
    t += &metrics::render("probes escalation", &s.escalation);
    let met = |b: bool| if b { "met" } else { "NOT met" };
    t += &format!(
        "level-3 probes answered 3: {}/{} = {:.3} (target {:.2}: {})\n",
        s.level3_at_3,
        s.level3,
        s.level3_share,
        TARGET_LEVEL3_SHARE,
        met(s.level3_target_met)
    );
    t += &format!(
        "flags: micro P={:.3} R={:.3}; every flag's recall >= {:.2}: {}\n",
        s.flags_micro_precision,
        s.flags_micro_recall,
        TARGET_FLAG_RECALL,
        met(s.flag_recall_target_met)
    );
    for f in &s.per_flag {
        t += &format!(
            "  {:<20} support={:<3} P={:.3} R={:.3} tp={} fp={} fn={}\n",
            f.flag.as_str(),
            f.support,
            f.precision,
            f.recall,
            f.tp,
            f.fp,
            f.fn_
        );
    }
    t += "per family: n, category acc, escalation acc, level 3 at 3, flags tp/fn/fp\n";
    for f in &s.per_family {
        let l3 = if f.level3 > 0 { format!("{}/{}", f.level3_at_3, f.level3) } else { "-".into() };
        t += &format!(
            "  {:<28} {:>3}  {:.3}  {:.3}  {:>7}  {}/{}/{}\n",
            f.family, f.n, f.category_accuracy, f.escalation_accuracy, l3, f.flags_tp, f.flags_fn, f.flags_fp
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(rows: &[&str]) -> String {
        let mut s = format!("{HEADER}\n");
        for r in rows {
            s += r;
            s.push('\n');
        }
        s
    }

    #[test]
    fn parses_rows_and_rejects_bad_ones_with_the_line() {
        let ok = file(&[
            "p1\tthreat_litigation\tservice\t0\t1\t0\t3\tlitigation\t我要起诉你们",
            "p2\tcalm_fault\tproduct\t1\t0\t0\t0\t\t屏幕不亮了",
        ]);
        let ps = parse(&ok, "probes.tsv").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!((ps[0].category, ps[0].escalation, ps[0].flags.clone()), (1, 3, vec![Flag::Litigation]));
        assert_eq!((ps[1].family.as_str(), ps[1].flags.len(), ps[1].text.as_str()), ("calm_fault", 0, "屏幕不亮了"));
        let cases: &[(&str, &str)] = &[
            ("p1\tf\tservice\t0\t1\t0\t4\t\tx", "probes.tsv:2: bad escalation"),
            ("p1\tf\tbilling\t0\t1\t0\t1\t\tx", "probes.tsv:2: bad category"),
            ("p1\tf\tservice\t0\t1\t0\t1\tlawsuit\tx", "probes.tsv:2:"),
            ("p1\tf\tservice\t0\t1\t0\t1\t\t", "probes.tsv:2: empty text"),
            ("p1\tf\tservice\t0\t1\t0\t1", "probes.tsv:2: expected 9"),
            ("p1\tf\tservice\t0\t2\t0\t1\t\tx", "probes.tsv:2: bad 0/1"),
        ];
        for (row, want) in cases {
            let e = parse(&file(&[row]), "probes.tsv").unwrap_err().to_string();
            assert!(e.starts_with(want), "{row:?}: {e}");
        }
        let dup = file(&["p1\tf\tservice\t0\t1\t0\t1\t\tx", "p1\tf\tservice\t0\t1\t0\t1\t\ty"]);
        assert!(parse(&dup, "p").unwrap_err().to_string().contains("p:3: probe id \"p1\" appears twice"));
        assert!(parse("id\tfamily\n", "p").unwrap_err().to_string().starts_with("p:1: expected the header"));
    }

    #[test]
    fn the_shipped_probe_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/probes/probes.tsv");
        let ps = read(&path).unwrap();
        assert!(ps.len() >= 300, "{} probes", ps.len());
    }

    #[test]
    fn scores_count_level3_and_flags_per_family() {
        let p = |fam: &str, esc, flags: Vec<Flag>| Probe {
            id: String::new(),
            family: fam.into(),
            category: 1,
            touches: [false, true, false],
            escalation: esc,
            flags,
            text: "x".into(),
        };
        let a = |esc, flags: Vec<Flag>| Answer { category: 1, escalation: esc, flags };
        let probes = vec![
            p("t", 3, vec![Flag::Litigation]),
            p("t", 3, vec![Flag::Litigation]),
            p("c", 0, vec![]),
            p("c", 1, vec![Flag::Regulator]),
        ];
        let answers =
            vec![a(3, vec![Flag::Litigation]), a(2, vec![]), a(0, vec![Flag::Media]), a(1, vec![Flag::Regulator])];
        let s = score(&probes, &answers);
        assert_eq!((s.level3, s.level3_at_3, s.level3_share), (2, 1, 0.5));
        assert!(!s.level3_target_met && !s.flag_recall_target_met);
        let lit = &s.per_flag[0];
        assert_eq!((lit.support, lit.tp, lit.fn_, lit.recall), (2, 1, 1, 0.5));
        let media = s.per_flag.iter().find(|f| f.flag == Flag::Media).unwrap();
        assert_eq!((media.support, media.fp, media.precision), (0, 1, 0.0));
        let t = s.per_family.iter().find(|f| f.family == "t").unwrap();
        assert_eq!((t.n, t.level3, t.level3_at_3, t.flags_tp, t.flags_fn, t.escalation_accuracy), (2, 2, 1, 1, 1, 0.5));
        let c = s.per_family.iter().find(|f| f.family == "c").unwrap();
        assert_eq!((c.flags_fp, c.escalation_accuracy, c.level3), (1, 1.0, 0));
        let all_right = score(&probes, &probes.iter().map(|p| a(p.escalation, p.flags.clone())).collect::<Vec<_>>());
        assert!(all_right.level3_target_met && all_right.flag_recall_target_met);
        assert!(render(&s).contains("level-3 probes answered 3: 1/2 = 0.500"));
    }

    proptest! {
        /// Any content: a parse or an error naming a line, never a panic.
        #[test]
        fn parse_never_panics(body in "\\PC*", rows in proptest::collection::vec("[a-z0-9\\t,]{0,40}", 0..5)) {
            let raw = format!("{HEADER}\n{}\n{body}", rows.join("\n"));
            if let Err(e) = parse(&raw, "f") {
                prop_assert!(e.to_string().starts_with("f:"), "{e}");
            }
            let _ = parse(&body, "f");
        }
    }
}
