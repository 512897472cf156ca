//! The word lists and rules that load (and reload) together, as one immutable
//! snapshot: the legal-risk lexicon (`legal_risk.tsv`), the jieba user
//! dictionary (`user_dict.txt`), the triage rules (`triage.toml`) and the
//! alert rules (`alerts.toml`, optional: without it no alert fires).
//!
//! [`WordLists::load`] reads all three or fails naming the file and line; the
//! pipeline swaps the whole snapshot atomically, so a request never sees a mix.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::flags::{Flagger, Lexicon};
use crate::parse::ParseError;
use crate::text::Segmenter;
use crate::triage::TriageRules;

/// File name of the legal-risk lexicon in the lexicon folder.
pub const LEGAL_RISK_FILE: &str = "legal_risk.tsv";
/// File name of the jieba user dictionary in the lexicon folder.
pub const USER_DICT_FILE: &str = "user_dict.txt";
/// File name of the triage rules in the lexicon folder.
pub const TRIAGE_FILE: &str = "triage.toml";

/// Which of the files failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFile {
    LegalRisk,
    UserDict,
    Triage,
    Alerts,
}

/// A file that could not be read, parsed or compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct ListError {
    pub kind: ListFile,
    pub file: PathBuf,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
}

impl ListError {
    /// A parser's error, in `file`.
    fn parse(kind: ListFile, file: &Path, e: ParseError) -> ListError {
        ListError { kind, file: file.to_path_buf(), line: e.line, message: e.message }
    }
}

/// One consistent set of word lists and rules. Immutable.
pub struct WordLists {
    pub flagger: Flagger,
    pub segmenter: Segmenter,
    pub triage: TriageRules,
    /// The insights alert rules and webhook targets.
    pub alerts: crate::insights::alerts::AlertRules,
    /// 0 for the lists loaded at start-up, +1 for each successful reload.
    pub generation: u64,
    pub loaded_at: SystemTime,
}

impl WordLists {
    /// Assemble from parts (tests, embedding).
    pub fn from_parts(flagger: Flagger, segmenter: Segmenter, triage: TriageRules) -> WordLists {
        WordLists {
            flagger,
            segmenter,
            triage,
            alerts: Default::default(),
            generation: 0,
            loaded_at: SystemTime::now(),
        }
    }

    /// Read all three files from `dir`. `review_min_severity` is the flagger's
    /// `needs_review` threshold.
    pub fn load(dir: &Path, review_min_severity: u8) -> Result<WordLists, ListError> {
        let read = |kind: ListFile, name: &str| {
            let file = dir.join(name);
            std::fs::read_to_string(&file).map(|raw| (raw, file.clone())).map_err(|e| ListError {
                kind,
                file: file.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            })
        };
        let (raw, file) = read(ListFile::LegalRisk, LEGAL_RISK_FILE)?;
        let flagger = Lexicon::parse(&raw)
            .and_then(|lx| Flagger::new(&lx, review_min_severity))
            .map_err(|e| ListError::parse(ListFile::LegalRisk, &file, e))?;
        let (raw, file) = read(ListFile::UserDict, USER_DICT_FILE)?;
        let segmenter = Segmenter::from_user_dict(&raw).map_err(|e| ListError::parse(ListFile::UserDict, &file, e))?;
        let (raw, file) = read(ListFile::Triage, TRIAGE_FILE)?;
        let triage = TriageRules::parse(&raw).map_err(|e| ListError::parse(ListFile::Triage, &file, e))?;
        let file = dir.join(crate::insights::alerts::ALERTS_FILE);
        let alerts = match std::fs::read_to_string(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                return Err(ListError {
                    kind: ListFile::Alerts,
                    file,
                    line: None,
                    message: format!("cannot read: {e}"),
                })
            }
            Ok(raw) => crate::insights::alerts::AlertRules::parse(&raw).map_err(|message| ListError {
                kind: ListFile::Alerts,
                file: file.clone(),
                line: None,
                message,
            })?,
        };
        let mut w = WordLists::from_parts(flagger, segmenter, triage);
        w.alerts = alerts;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_copy() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [LEGAL_RISK_FILE, USER_DICT_FILE, TRIAGE_FILE] {
            std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lexicons").join(f), d.path().join(f))
                .unwrap();
        }
        d
    }

    #[test]
    fn loads_the_shipped_lists() {
        let d = shipped_copy();
        let w = WordLists::load(d.path(), 2).unwrap();
        assert!(w.flagger.term_count() > 400);
        assert!(w.segmenter.user_words() > 100);
        assert!(w.triage.rules.len() >= 6);
        assert_eq!(w.generation, 0);
    }

    #[test]
    fn errors_name_file_kind_and_line() {
        let d = shipped_copy();
        let p = d.path().join(LEGAL_RISK_FILE);
        let raw = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{raw}起诉书\tlawsuit\t2\tbad flag\n")).unwrap();
        let e = WordLists::load(d.path(), 2).err().unwrap();
        assert_eq!(e.kind, ListFile::LegalRisk);
        assert_eq!(e.line, Some(raw.lines().count() + 1));
        assert!(e.message.contains("unknown flag"), "{e}");
        assert!(e.to_string().contains(&format!("legal_risk.tsv, line {}", raw.lines().count() + 1)), "{e}");
        std::fs::write(&p, raw).unwrap();

        let p = d.path().join(USER_DICT_FILE);
        std::fs::write(&p, "# c\n好词 12\n坏词 abc\n").unwrap();
        let e = WordLists::load(d.path(), 2).err().unwrap();
        assert_eq!((e.kind, e.line), (ListFile::UserDict, Some(3)));
        std::fs::write(&p, "好词 12\n").unwrap();

        std::fs::remove_file(d.path().join(TRIAGE_FILE)).unwrap();
        let e = WordLists::load(d.path(), 2).err().unwrap();
        assert_eq!((e.kind, e.line), (ListFile::Triage, None));
        assert!(e.message.starts_with("cannot read"), "{e}");
    }
}
