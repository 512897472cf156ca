//! The flagger's hits as model inputs: what the escalation head reads beside
//! the sentence embedding, so that an explicit outside threat found by the
//! lexicon (起诉, 12315, 曝光…) is not scored calm.

use super::{Flag, FlagReport};

/// Length of [`features`]: three values per flag, flags in [`Flag::ALL`] order.
pub const FLAG_FEATURES: usize = 3 * Flag::ALL.len();

/// The name stored in a model file whose escalation head reads
/// `[embedding ‖ features(report)]` (`kesu.escalation.inputs`); a change to
/// what [`features`] computes needs a new name.
pub const FLAG_FEATURES_V1: &str = "embedding+flags.v1";

/// Per flag, in [`Flag::ALL`] order: `[hit, negated_only, severity]` where
/// `hit` is 1 when a non-negated hit of the flag is present, `negated_only`
/// is 1 when the flag's only hits are negated (我不想起诉), and `severity` is
/// the highest severity of its non-negated hits divided by 3 (0 without one).
/// All values are in `[0, 1]`; no hits gives all zeros.
pub fn features(report: &FlagReport) -> Vec<f32> {
    let mut out = vec![0f32; FLAG_FEATURES];
    for (i, flag) in Flag::ALL.into_iter().enumerate() {
        let hits = report.hits.iter().filter(|h| h.flag == flag);
        let (mut any, mut live, mut sev) = (false, false, 0u8);
        for h in hits {
            any = true;
            if !h.negated {
                live = true;
                sev = sev.max(h.severity);
            }
        }
        out[3 * i] = live as u8 as f32;
        out[3 * i + 1] = (any && !live) as u8 as f32;
        out[3 * i + 2] = f32::from(sev.min(3)) / 3.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::FlagHit;

    fn hit(flag: Flag, severity: u8, negated: bool) -> FlagHit {
        FlagHit { term: "t".into(), flag, severity, text: "t".into(), start: 0, end: 1, negated }
    }

    #[test]
    fn features_per_flag() {
        let none = FlagReport::default();
        assert_eq!(features(&none), vec![0.0; FLAG_FEATURES]);
        let r = FlagReport {
            hits: vec![
                hit(Flag::Litigation, 2, false),
                hit(Flag::Litigation, 1, true),
                hit(Flag::Regulator, 2, true),
                hit(Flag::SelfHarmViolence, 3, false),
            ],
            ..Default::default()
        };
        let f = features(&r);
        assert_eq!(f.len(), 24);
        let at = |flag: Flag| {
            let i = Flag::ALL.iter().position(|&x| x == flag).unwrap();
            (f[3 * i], f[3 * i + 1], f[3 * i + 2])
        };
        assert_eq!(at(Flag::Litigation), (1.0, 0.0, 2.0 / 3.0), "a live hit wins over a negated one");
        assert_eq!(at(Flag::Regulator), (0.0, 1.0, 0.0), "negated only");
        assert_eq!(at(Flag::SelfHarmViolence), (1.0, 0.0, 1.0));
        assert_eq!(at(Flag::Media), (0.0, 0.0, 0.0));
        assert!(f.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
