//! Reading the third-party corpora in `../shared/corpora` (never copied into
//! the repository) as `(source, id, text)` records.
//!
//! Keys, shared with `scripts/corpus.py` and the label files:
//!
//! | source | id |
//! |---|---|
//! | `stc3` | `<dialogue id>:<turn index>` (customer turns; utterances joined) |
//! | `shopping` / `waimai` / `hotel` | 1-based data row of the sophon CSV |
//! | `ewect` | `<file stem>:<id>` |
//! | `nlpcc` | 1-based data row |
//! | `ccb` | 1-based data row |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One corpus text.
#[derive(Debug, Clone)]
pub struct Record {
    pub source: String,
    pub id: String,
    pub text: String,
}

/// The default corpus folder: `$KESU_CORPORA`, else `../shared/corpora`.
pub fn default_root() -> PathBuf {
    std::env::var_os("KESU_CORPORA").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/corpora"))
}

/// Read every corpus under `root`.
pub fn read_all(root: &Path) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    read_stc3(root, &mut out)?;
    for (source, file, col) in [
        ("shopping", "sophon/online_shopping_10_cats.csv", "review"),
        ("waimai", "sophon/waimai_10k.csv", "review"),
        ("hotel", "sophon/ChnSentiCorp_htl_all.csv", "review"),
        ("nlpcc", "nlpcc/nlpcc2013.tsv", "文本"),
        ("ccb", "ccb/bank_ticket_sentences.csv", "dataset"),
    ] {
        read_csv(root, source, file, col, &mut out)?;
    }
    read_ewect(root, &mut out)?;
    Ok(out)
}

/// Index records by `(source, id)`.
pub fn index(records: Vec<Record>) -> HashMap<(String, String), String> {
    records.into_iter().map(|r| ((r.source, r.id), r.text)).collect()
}

/// One STC-3 customer–helpdesk dialogue, turns in order.
#[derive(Debug, Clone)]
pub struct Dialogue {
    pub id: String,
    /// `(sender, text)`: sender `customer` or `helpdesk`; a turn's utterances joined.
    pub turns: Vec<(String, String)>,
}

/// Every STC-3 dialogue under `root` (`stc3/train_data_cn.json`), in file order.
pub fn stc3_dialogues(root: &Path) -> anyhow::Result<Vec<Dialogue>> {
    #[derive(serde::Deserialize)]
    struct Turn {
        sender: String,
        utterances: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        id: String,
        turns: Vec<Turn>,
    }
    let p = root.join("stc3/train_data_cn.json");
    let raw = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    let dialogues: Vec<Raw> = serde_json::from_slice(&raw).with_context(|| format!("parsing {}", p.display()))?;
    Ok(dialogues
        .into_iter()
        .map(|d| Dialogue { id: d.id, turns: d.turns.into_iter().map(|t| (t.sender, t.utterances.concat())).collect() })
        .collect())
}

fn read_stc3(root: &Path, out: &mut Vec<Record>) -> anyhow::Result<()> {
    for d in stc3_dialogues(root)? {
        for (i, (sender, text)) in d.turns.into_iter().enumerate() {
            if sender == "customer" {
                out.push(Record { source: "stc3".into(), id: format!("{}:{i}", d.id), text });
            }
        }
    }
    Ok(())
}

fn read_csv(root: &Path, source: &str, file: &str, column: &str, out: &mut Vec<Record>) -> anyhow::Result<()> {
    let p = root.join(file);
    // nlpcc2013.tsv is comma-separated despite its name
    let mut rd =
        csv::ReaderBuilder::new().flexible(true).from_path(&p).with_context(|| format!("reading {}", p.display()))?;
    let headers = rd.headers()?.clone();
    let col = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == column)
        .with_context(|| format!("{}: no column {column}", p.display()))?;
    for (n, row) in rd.records().enumerate() {
        let row = row.with_context(|| format!("{} row {}", p.display(), n + 1))?;
        let text = row.get(col).unwrap_or("").trim_start_matches('\u{feff}').to_string();
        out.push(Record { source: source.into(), id: (n + 1).to_string(), text });
    }
    Ok(())
}

fn read_ewect(root: &Path, out: &mut Vec<Record>) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Post {
        id: serde_json::Value,
        content: String,
    }
    let dir = root.join("ewect");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let posts: Vec<Post> =
            serde_json::from_slice(&std::fs::read(&f)?).with_context(|| format!("parsing {}", f.display()))?;
        for p in posts {
            let id = match p.id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.push(Record { source: "ewect".into(), id: format!("{stem}:{id}"), text: p.content });
        }
    }
    Ok(())
}
