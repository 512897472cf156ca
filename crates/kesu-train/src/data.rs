//! Label files and the fixed split.
//!
//! Label files (`data/labels/*.tsv`, committed; never corpus text) have the header
//! `source id category product service information_security escalation flags`.
//! `data/labels/authored.tsv` (texts the project wrote itself) adds a final
//! `text` column; authored rows are only ever used for training.
//! The split file `data/split.tsv` has `source id split` with split one of
//! `train`, `dev`, `test`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};

use kesu_core::flags::Flag;

/// The label schema's names, as the model file format defines them.
pub const CATEGORIES: [&str; 3] = kesu_core::model::format::CATEGORY_LABELS;
pub const LEVELS: [&str; 4] = kesu_core::model::format::ESCALATION_LABELS;

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub source: String,
    pub id: String,
    pub category: usize,
    pub touches: [bool; 3],
    pub escalation: usize,
    pub flags: Vec<Flag>,
    /// Set for authored rows (text in the label file); corpus rows get their text from the corpora.
    pub text: Option<String>,
    pub file: String,
}

impl Labelled {
    pub fn key(&self) -> (String, String) {
        (self.source.clone(), self.id.clone())
    }
    pub fn authored(&self) -> bool {
        self.source == "authored"
    }
}

/// Parse one label file.
pub fn read_label_file(path: &Path) -> anyhow::Result<Vec<Labelled>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    for (i, line) in raw.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split('\t').collect();
        let at = || format!("{}:{}", path.display(), i + 1);
        if c.len() < 7 {
            bail!("{}: expected 8 columns", at());
        }
        let (category, touches, escalation, flags) = parse_label_columns(&c[2..], &at)?;
        let text = if c[0] == "authored" {
            Some(c.get(8).with_context(|| format!("{}: authored row without text", at()))?.to_string())
        } else {
            None
        };
        out.push(Labelled {
            source: c[0].into(),
            id: c[1].into(),
            category,
            touches,
            escalation,
            flags,
            text,
            file: file.clone(),
        });
    }
    Ok(out)
}

/// The label columns shared by label and probe files, from the category on:
/// `category, product, service, information_security, escalation[, flags]`.
/// `at` names the file and line for error messages.
pub(crate) fn parse_label_columns(
    c: &[&str],
    at: &dyn Fn() -> String,
) -> anyhow::Result<(usize, [bool; 3], usize, Vec<Flag>)> {
    anyhow::ensure!(c.len() >= 5, "{}: expected at least 5 label columns", at());
    let category = CATEGORIES
        .iter()
        .position(|x| *x == c[0].trim())
        .with_context(|| format!("{}: bad category {:?}", at(), c[0]))?;
    let bit = |s: &str| -> anyhow::Result<bool> {
        match s.trim() {
            "0" => Ok(false),
            "1" => Ok(true),
            o => bail!("{}: bad 0/1 value {o:?}", at()),
        }
    };
    let touches = [bit(c[1])?, bit(c[2])?, bit(c[3])?];
    let escalation: usize =
        c[4].trim().parse().ok().filter(|v| *v <= 3).with_context(|| format!("{}: bad escalation {:?}", at(), c[4]))?;
    let flags = match c.get(5).map(|s| s.trim()).unwrap_or("") {
        "" => vec![],
        s => s
            .split(',')
            .map(|f| f.trim().parse::<Flag>().map_err(|e| anyhow::anyhow!("{}: {e}", at())))
            .collect::<anyhow::Result<_>>()?,
    };
    Ok((category, touches, escalation, flags))
}

/// Every `*.tsv` directly in `dir` (sub-folders such as `double/` are not read).
pub fn read_labels(dir: &Path) -> anyhow::Result<Vec<Labelled>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for f in files {
        for r in read_label_file(&f)? {
            if let Some(prev) = seen.insert(r.key(), r.file.clone()) {
                bail!("({}, {}) is labelled twice: {} and {}", r.source, r.id, prev, r.file);
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// Authored texts may be at most this share of any class (each category and
/// each escalation level) in training (issue 4).
pub const MAX_AUTHORED_SHARE: f64 = 0.30;

/// The training rows left after [`cap_authored`].
#[derive(Debug, Clone, PartialEq)]
pub struct Capped {
    /// Training row indices kept (input order).
    pub kept: Vec<usize>,
    /// Authored rows dropped to respect the cap (input order).
    pub dropped: Vec<usize>,
}

impl Capped {
    pub fn describe(&self, rows: &[Labelled]) -> String {
        let ids: Vec<&str> = self.dropped.iter().map(|&i| rows[i].id.as_str()).collect();
        format!(
            "{} authored rows are left out of training to keep authored texts at most {:.0}% of every class: {}",
            ids.len(),
            MAX_AUTHORED_SHARE * 100.0,
            ids.join(", ")
        )
    }
}

/// Enforces "authored texts at most `max_share` of any class in training":
/// while some category or escalation level has more authored rows than
/// allowed, the LAST authored row of that class (in `train` order, i.e. label
/// file order) is dropped. Deterministic; real rows are never dropped.
pub fn cap_authored(rows: &[Labelled], train: &[usize], max_share: f64) -> Capped {
    let mut keep = vec![true; train.len()];
    // class keys: category c -> c, escalation l -> 3 + l
    let classes = |i: usize| [rows[i].category, CATEGORIES.len() + rows[i].escalation];
    loop {
        let mut authored = [0usize; 7];
        let mut total = [0usize; 7];
        for (_, &i) in train.iter().enumerate().filter(|(k, _)| keep[*k]) {
            for c in classes(i) {
                total[c] += 1;
                authored[c] += rows[i].authored() as usize;
            }
        }
        let Some(c) = (0..7).find(|&c| authored[c] as f64 > max_share * total[c] as f64 + 1e-9) else { break };
        let k = (0..train.len())
            .rev()
            .find(|&k| keep[k] && rows[train[k]].authored() && classes(train[k]).contains(&c))
            .expect("an authored row of the class");
        keep[k] = false;
    }
    let kept = train.iter().zip(&keep).filter(|(_, &k)| k).map(|(&i, _)| i).collect();
    let dropped = train.iter().zip(&keep).filter(|(_, &k)| !k).map(|(&i, _)| i).collect();
    Capped { kept, dropped }
}

/// Which split a text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train" => Ok(Split::Train),
            "dev" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            o => Err(format!("unknown split {o:?}")),
        }
    }
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// Read `data/split.tsv`.
pub fn read_split(path: &Path) -> anyhow::Result<HashMap<(String, String), Split>> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (create it with `kesu split`)", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in raw.lines().enumerate().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() != 3 {
            bail!("{}:{}: expected source, id, split", path.display(), i + 1);
        }
        out.insert(
            (c[0].to_string(), c[1].to_string()),
            c[2].parse().map_err(|e: String| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// Labelled rows joined with their text and split.
pub struct Dataset {
    pub rows: Vec<Labelled>,
    pub texts: Vec<String>,
    pub splits: Vec<Split>,
}

impl Dataset {
    /// Join labels with corpus text (from `corpora`) and the split file.
    pub fn load(labels_dir: &Path, split_file: &Path, corpora: &Path) -> anyhow::Result<Dataset> {
        Ok(Dataset::load_inner(labels_dir, split_file, corpora, false)?.0)
    }

    /// Like [`Dataset::load`], but rows that the split file does not list are
    /// left out instead of being an error (for scoring, where label files newer
    /// than the split may exist). Also returns how many rows were left out.
    pub fn load_split_rows(labels_dir: &Path, split_file: &Path, corpora: &Path) -> anyhow::Result<(Dataset, usize)> {
        Dataset::load_inner(labels_dir, split_file, corpora, true)
    }

    fn load_inner(
        labels_dir: &Path,
        split_file: &Path,
        corpora: &Path,
        skip_unsplit: bool,
    ) -> anyhow::Result<(Dataset, usize)> {
        let mut rows = read_labels(labels_dir)?;
        let split = read_split(split_file)?;
        let before = rows.len();
        if skip_unsplit {
            rows.retain(|r| split.contains_key(&r.key()));
        }
        let skipped = before - rows.len();
        let index = crate::corpus::index(crate::corpus::read_all(corpora)?);
        let mut texts = Vec::with_capacity(rows.len());
        let mut splits = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = match &r.text {
                Some(t) => t.clone(),
                None => index
                    .get(&r.key())
                    .cloned()
                    .with_context(|| format!("({}, {}) from {} is not in the corpora", r.source, r.id, r.file))?,
            };
            let s = *split
                .get(&r.key())
                .with_context(|| format!("({}, {}) has no split: rerun `kesu split`", r.source, r.id))?;
            if r.authored() && s != Split::Train {
                bail!("authored text {} is in {}: authored texts are for training only", r.id, s.as_str());
            }
            texts.push(t);
            splits.push(s);
        }
        Ok((Dataset { rows, texts, splits }, skipped))
    }

    /// Indices of the rows in `split`.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.rows.len()).filter(|&i| self.splits[i] == split).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(source: &str, id: usize, category: usize, escalation: usize) -> Labelled {
        Labelled {
            source: source.into(),
            id: id.to_string(),
            category,
            touches: [false; 3],
            escalation,
            flags: vec![],
            text: None,
            file: "f".into(),
        }
    }

    #[test]
    fn authored_rows_are_capped_at_thirty_percent_of_every_class() {
        // 14 real information_security rows (escalation 1), 10 authored ones:
        // at most 6 authored (6 / 20 = 30%) may stay
        let mut rows: Vec<Labelled> = (0..14).map(|i| row("real", i, 2, 1)).collect();
        rows.extend((0..10).map(|i| row("authored", i, 2, 1)));
        // plenty of real rows elsewhere, so escalation 1 itself is not the limit
        rows.extend((0..100).map(|i| row("real", 100 + i, 0, 1)));
        let train: Vec<usize> = (0..rows.len()).collect();
        let c = cap_authored(&rows, &train, MAX_AUTHORED_SHARE);
        let ids: Vec<&str> = c.dropped.iter().map(|&i| rows[i].id.as_str()).collect();
        assert_eq!(ids, ["6", "7", "8", "9"], "the last authored rows go");
        assert_eq!(c.kept.len(), rows.len() - 4);
        assert!(c.describe(&rows).contains("4 authored rows"));

        // an escalation level can be the binding class too: authored level 3
        let mut rows2: Vec<Labelled> = (0..50).map(|i| row("real", i, i % 3, i % 3)).collect();
        rows2.extend((0..4).map(|i| row("real", 50 + i, 2, 3)));
        rows2.extend((0..5).map(|i| row("authored", i, 2, 3)));
        let train2: Vec<usize> = (0..rows2.len()).collect();
        let c2 = cap_authored(&rows2, &train2, MAX_AUTHORED_SHARE);
        // level 3: 4 real -> at most 1 authored (1/5 = 20%; 2/6 = 33% is too many)
        assert_eq!(c2.dropped.len(), 4);
        for cl in 0..7 {
            let (mut a, mut t) = (0, 0);
            for &i in &c2.kept {
                if rows2[i].category == cl || CATEGORIES.len() + rows2[i].escalation == cl {
                    t += 1;
                    a += rows2[i].authored() as usize;
                }
            }
            assert!(a as f64 <= 0.3 * t as f64, "class {cl}: {a}/{t}");
        }

        // nothing to do without authored rows, and only train rows are looked at
        let real: Vec<Labelled> = (0..10).map(|i| row("real", i, 0, 0)).collect();
        assert!(cap_authored(&real, &[0, 1, 2], MAX_AUTHORED_SHARE).dropped.is_empty());
    }
}
