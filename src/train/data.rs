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

use crate::flags::Flag;

pub const CATEGORIES: [&str; 3] = ["product", "service", "information_security"];
pub const LEVELS: [&str; 4] = ["calm", "dissatisfied", "angry", "escalating"];

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
        let category = CATEGORIES.iter().position(|x| *x == c[2].trim()).with_context(|| format!("{}: bad category {:?}", at(), c[2]))?;
        let bit = |s: &str| -> anyhow::Result<bool> {
            match s.trim() {
                "0" => Ok(false),
                "1" => Ok(true),
                o => bail!("{}: bad 0/1 value {o:?}", at()),
            }
        };
        let touches = [bit(c[3])?, bit(c[4])?, bit(c[5])?];
        let escalation: usize = c[6].trim().parse().ok().filter(|v| *v <= 3).with_context(|| format!("{}: bad escalation {:?}", at(), c[6]))?;
        let flags = match c.get(7).map(|s| s.trim()).unwrap_or("") {
            "" => vec![],
            s => s.split(',').map(|f| f.trim().parse::<Flag>().map_err(|e| anyhow::anyhow!("{}: {e}", at()))).collect::<anyhow::Result<_>>()?,
        };
        let text = if c[0] == "authored" { Some(c.get(8).with_context(|| format!("{}: authored row without text", at()))?.to_string()) } else { None };
        out.push(Labelled { source: c[0].into(), id: c[1].into(), category, touches, escalation, flags, text, file: file.clone() });
    }
    Ok(out)
}

/// Every `*.tsv` directly in `dir` (sub-folders such as `double/` are not read).
pub fn read_labels(dir: &Path) -> anyhow::Result<Vec<Labelled>> {
    let mut files: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "tsv")).collect();
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
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading {} (create it with `kesu split`)", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in raw.lines().enumerate().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() != 3 {
            bail!("{}:{}: expected source, id, split", path.display(), i + 1);
        }
        out.insert((c[0].to_string(), c[1].to_string()), c[2].parse().map_err(|e: String| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?);
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

    fn load_inner(labels_dir: &Path, split_file: &Path, corpora: &Path, skip_unsplit: bool) -> anyhow::Result<(Dataset, usize)> {
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
                None => index.get(&r.key()).cloned().with_context(|| format!("({}, {}) from {} is not in the corpora", r.source, r.id, r.file))?,
            };
            let s = *split.get(&r.key()).with_context(|| format!("({}, {}) has no split: rerun `kesu split`", r.source, r.id))?;
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
