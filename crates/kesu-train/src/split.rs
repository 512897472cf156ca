//! The fixed train/dev/test split, stratified and near-duplicate safe.
//!
//! Texts are grouped by near-duplication (char 3-gram Jaccard ≥ 0.6, or the
//! shorter text's 3-grams ≥ 0.8 contained in the longer one, after folding
//! width/case and mapping digits to 0); a whole group goes to one split, so
//! no test text has a near-duplicate in training. Groups are ordered by a
//! seeded hash and dealt, per (category, escalation) stratum, to the split
//! furthest below its target share. Groups holding an authored text always
//! go to train.
//!
//! The committed split is extended, never redealt ([`extend`]): rows already
//! in `data/split.tsv` keep their split, new near-duplicates of them follow
//! them, and only the remaining new groups are dealt (counting the rows
//! already split towards each stratum's shares).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use unicode_normalization::UnicodeNormalization;

use super::data::{Labelled, Split};

/// Target shares of (train, dev, test).
pub const SHARES: [f64; 3] = [0.67, 0.12, 0.21];

fn shingles(text: &str) -> Vec<u64> {
    let chars: Vec<char> = text
        .nfkc()
        .flat_map(|c| c.to_lowercase())
        .filter(|c| c.is_alphanumeric())
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    let mut v: Vec<u64> = chars
        .windows(3.min(chars.len().max(1)))
        .map(|w| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn overlap(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Are two shingle sets near-duplicates?
pub fn near_duplicate(a: &[u64], b: &[u64]) -> bool {
    if a.is_empty() || b.is_empty() {
        return a.is_empty() && b.is_empty();
    }
    let o = overlap(a, b) as f64;
    let jaccard = o / (a.len() as f64 + b.len() as f64 - o);
    let small = a.len().min(b.len());
    jaccard >= 0.6 || (small >= 8 && o / small as f64 >= 0.8)
}

fn find(p: &mut [usize], x: usize) -> usize {
    let mut r = x;
    while p[r] != r {
        r = p[r];
    }
    let mut y = x;
    while p[y] != r {
        let n = p[y];
        p[y] = r;
        y = n;
    }
    r
}

/// Group indices of near-duplicate texts (union-find over all pairs).
pub fn groups(texts: &[String]) -> Vec<usize> {
    let sh: Vec<Vec<u64>> = texts.iter().map(|t| shingles(t)).collect();
    // inverted index on shingles keeps this far below all-pairs
    let mut inv: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in sh.iter().enumerate() {
        for &h in s {
            inv.entry(h).or_default().push(i);
        }
    }
    let mut parent: Vec<usize> = (0..texts.len()).collect();
    for i in 0..texts.len() {
        let mut cand: HashSet<usize> = HashSet::new();
        for h in &sh[i] {
            let posting = &inv[h];
            if posting.len() > 400 {
                continue; // very common 3-gram: says nothing about duplication
            }
            cand.extend(posting.iter().copied().filter(|&j| j > i));
        }
        for j in cand {
            if near_duplicate(&sh[i], &sh[j]) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    (0..texts.len()).map(|i| find(&mut parent, i)).collect()
}

/// Assign each row a split from scratch. `texts[i]` is the text of `rows[i]`.
pub fn assign(rows: &[Labelled], texts: &[String], seed: u64) -> Vec<Split> {
    extend(rows, texts, &HashMap::new(), seed).expect("a fresh split has no conflicts").splits
}

/// The result of [`extend`].
#[derive(Debug, Clone, Default)]
pub struct Extension {
    /// The split of each row.
    pub splits: Vec<Split>,
    /// Rows that were already in the split file (kept where they were).
    pub kept: usize,
    /// New real rows that are near-duplicates of a row already split (they took
    /// its split) or of a new authored row (train).
    pub by_duplicate: usize,
    /// New real rows dealt stratified by (category, escalation).
    pub stratified: usize,
    /// New authored rows (always train).
    pub authored: usize,
    /// New rows whose near-duplicate group already spans several splits
    /// (they took the split of the most similar row already split).
    pub ambiguous: Vec<String>,
}

/// Assign splits, keeping every row of `existing` (the committed split file,
/// keyed by `(source, id)`) where it is.
///
/// * a row in `existing` keeps its split;
/// * a new row in a near-duplicate group with rows already split takes their
///   split (if the group already spans several splits: the split of the most
///   similar of them, by 3-gram Jaccard);
/// * other new real rows are grouped by near-duplication and the groups dealt,
///   in seeded order, per (category, escalation) stratum to the split furthest
///   below its [`SHARES`] target, counting the rows already split, so the
///   proportions stay as they are;
/// * authored rows go to train. It is an error for an authored row to be a
///   near-duplicate of a dev or test row, or to be in dev/test in `existing`.
///
/// With an empty `existing` this is the from-scratch split of [`assign`].
pub fn extend(
    rows: &[Labelled],
    texts: &[String],
    existing: &HashMap<(String, String), Split>,
    seed: u64,
) -> anyhow::Result<Extension> {
    let g = groups(texts);
    let prior: Vec<Option<Split>> = rows.iter().map(|r| existing.get(&r.key()).copied()).collect();
    for (r, p) in rows.iter().zip(&prior) {
        if let (true, Some(s)) = (r.authored(), p) {
            anyhow::ensure!(
                *s == Split::Train,
                "authored text {} is in {} in the split file: authored texts are for training only",
                r.id,
                s.as_str()
            );
        }
    }
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &root) in g.iter().enumerate() {
        members.entry(root).or_default().push(i);
    }
    let mut group_list: Vec<Vec<usize>> = members.into_values().collect();
    let key = |m: &Vec<usize>| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        let first = m.iter().map(|&i| (&rows[i].source, &rows[i].id)).min().unwrap();
        first.hash(&mut h);
        h.finish()
    };
    group_list.sort_by_key(key);
    let index = |s: Split| s as usize;
    let mut out: Vec<Split> = prior.iter().map(|p| p.unwrap_or(Split::Train)).collect();
    let mut ext = Extension::default();
    // rows already split count towards their stratum's shares
    let mut counts: HashMap<(usize, usize), [usize; 3]> = HashMap::new();
    let mut fresh = Vec::new();
    let mut sh: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut shingles_of = |i: usize| sh.entry(i).or_insert_with(|| shingles(&texts[i])).clone();
    for m in group_list {
        let split_rows: Vec<usize> = m.iter().copied().filter(|&i| prior[i].is_some()).collect();
        if split_rows.is_empty() {
            fresh.push(m);
            continue;
        }
        let spans: HashSet<Split> = split_rows.iter().map(|&i| prior[i].unwrap()).collect();
        for &i in &m {
            if prior[i].is_some() {
                ext.kept += 1;
                if !rows[i].authored() {
                    counts.entry((rows[i].category, rows[i].escalation)).or_default()[index(out[i])] += 1;
                }
                continue;
            }
            let s = if spans.len() == 1 {
                *spans.iter().next().unwrap()
            } else {
                let a = shingles_of(i);
                let best = split_rows
                    .iter()
                    .map(|&j| {
                        let b = shingles_of(j);
                        let o = overlap(&a, &b) as f64;
                        (o / ((a.len() + b.len()) as f64 - o).max(1.0), j)
                    })
                    .max_by(|x, y| {
                        x.0.partial_cmp(&y.0)
                            .unwrap()
                            .then((&rows[y.1].source, &rows[y.1].id).cmp(&(&rows[x.1].source, &rows[x.1].id)))
                    })
                    .unwrap()
                    .1;
                ext.ambiguous.push(format!(
                    "({}, {}) -> {} like ({}, {})",
                    rows[i].source,
                    rows[i].id,
                    prior[best].unwrap().as_str(),
                    rows[best].source,
                    rows[best].id
                ));
                prior[best].unwrap()
            };
            if rows[i].authored() {
                if let Some(&j) = split_rows.iter().find(|&&j| prior[j] != Some(Split::Train)) {
                    anyhow::bail!(
                        "authored text {} is a near-duplicate of ({}, {}) in {}: authored texts must not copy dev or test texts",
                        rows[i].id,
                        rows[j].source,
                        rows[j].id,
                        prior[j].unwrap().as_str()
                    );
                }
                ext.authored += 1;
            } else {
                ext.by_duplicate += 1;
                counts.entry((rows[i].category, rows[i].escalation)).or_default()[index(s)] += 1;
            }
            out[i] = s;
        }
    }
    for m in fresh {
        if m.iter().any(|&i| rows[i].authored()) {
            ext.authored += m.iter().filter(|&&i| rows[i].authored()).count();
            ext.by_duplicate += m.iter().filter(|&&i| !rows[i].authored()).count();
            for &i in &m {
                out[i] = Split::Train;
            }
            continue;
        }
        let lead = m[0];
        let stratum = (rows[lead].category, rows[lead].escalation);
        let c = counts.entry(stratum).or_default();
        let total: usize = c.iter().sum::<usize>() + m.len();
        let deficit = |k: usize| SHARES[k] * total as f64 - c[k] as f64;
        let k = (0..3).max_by(|&a, &b| deficit(a).partial_cmp(&deficit(b)).unwrap().then(b.cmp(&a))).unwrap();
        c[k] += m.len();
        let s = [Split::Train, Split::Dev, Split::Test][k];
        ext.stratified += m.len();
        for i in m {
            out[i] = s;
        }
    }
    ext.splits = out;
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_duplicates_are_grouped() {
        let texts: Vec<String> = [
            "快递三天没到，客服也不回复，太差了",
            "快递三天没到,客服也不回复,太差了!!",
            "快递5天没到，客服也不回复，太差了",
            "酒店早餐很好吃，下次还来",
            "客服态度很好",
        ]
        .map(String::from)
        .to_vec();
        let g = groups(&texts);
        assert_eq!(g[0], g[1]);
        assert_eq!(g[0], g[2]);
        assert_ne!(g[0], g[3]);
        assert_ne!(g[3], g[4]);
    }

    #[test]
    fn shares_are_close_to_targets_and_groups_stay_together() {
        let rows: Vec<Labelled> = (0..300)
            .map(|i| Labelled {
                source: "t".into(),
                id: i.to_string(),
                category: i % 3,
                touches: [true, false, false],
                escalation: i % 4,
                flags: vec![],
                text: None,
                file: "f".into(),
            })
            .collect();
        let mut texts = random_texts(300, 42);
        texts[1] = texts[0].clone();
        let s = assign(&rows, &texts, 1);
        assert_eq!(s[0], s[1]);
        let test = s.iter().filter(|x| **x == Split::Test).count() as f64 / 300.0;
        assert!((test - 0.21).abs() < 0.05, "{test}");
    }

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

    /// `n` random 20-char CJK texts (no two near-duplicates).
    fn random_texts(n: usize, mut seed: u64) -> Vec<String> {
        (0..n)
            .map(|_| {
                (0..20)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        char::from_u32(0x4e00 + ((seed >> 33) % 3000) as u32).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn extending_keeps_old_rows_and_places_new_ones_by_the_rules() {
        let mut rows: Vec<Labelled> = (0..300).map(|i| row("t", i, i % 3, i % 4)).collect();
        let mut texts = random_texts(300, 7);
        let first = assign(&rows, &texts, 1);
        let mut existing: HashMap<(String, String), Split> =
            rows.iter().zip(&first).map(|(r, &s)| (r.key(), s)).collect();
        // a hand-moved row stays where the file says
        let moved = (0..300).find(|&i| first[i] == Split::Train).unwrap();
        existing.insert(rows[moved].key(), Split::Dev);
        // re-running on the same rows changes nothing
        let same = extend(&rows, &texts, &existing, 1).unwrap();
        assert_eq!(same.kept, 300);
        assert_eq!((same.by_duplicate, same.stratified, same.authored), (0, 0, 0));
        assert_eq!(same.splits[moved], Split::Dev);
        for i in (0..300).filter(|&i| i != moved) {
            assert_eq!(same.splits[i], first[i]);
        }
        // a different seed does not move old rows either
        assert_eq!(extend(&rows, &texts, &existing, 99).unwrap().splits, same.splits);

        // new rows: near-copies of a dev and a test row, 200 fresh rows, authored rows
        let dev_row = (0..300).find(|&i| same.splits[i] == Split::Dev).unwrap();
        let test_row = (0..300).find(|&i| same.splits[i] == Split::Test).unwrap();
        rows.push(row("new", 0, 0, 0));
        texts.push(format!("{}!!", texts[dev_row]));
        rows.push(row("new", 1, 1, 1));
        texts.push(texts[test_row].replacen(texts[test_row].chars().next().unwrap(), "我", 1));
        let fresh = random_texts(200, 12345);
        for (k, t) in fresh.into_iter().enumerate() {
            rows.push(row("new", 2 + k, k % 3, (k / 3) % 4));
            texts.push(t);
        }
        for (k, t) in random_texts(20, 555).into_iter().enumerate() {
            let mut r = row("authored", k, 2, 1);
            r.text = Some(t.clone());
            rows.push(r);
            texts.push(t);
        }
        let ext = extend(&rows, &texts, &existing, 1).unwrap();
        assert_eq!(ext.kept, 300);
        assert_eq!(ext.by_duplicate, 2);
        assert_eq!(ext.stratified, 200);
        assert_eq!(ext.authored, 20);
        assert!(ext.ambiguous.is_empty());
        assert_eq!(&ext.splits[..300], &same.splits[..]);
        assert_eq!(ext.splits[300], Split::Dev);
        assert_eq!(ext.splits[301], Split::Test);
        assert!(ext.splits[502..].iter().all(|&s| s == Split::Train), "authored rows go to train");
        // the new real rows are dealt in the usual proportions, per stratum
        let new_test = ext.splits[302..502].iter().filter(|&&s| s == Split::Test).count() as f64 / 200.0;
        let new_dev = ext.splits[302..502].iter().filter(|&&s| s == Split::Dev).count() as f64 / 200.0;
        assert!((new_test - SHARES[2]).abs() < 0.06 && (new_dev - SHARES[1]).abs() < 0.06, "{new_dev} {new_test}");
        let all_test = ext.splits[..502].iter().filter(|&&s| s == Split::Test).count() as f64 / 502.0;
        assert!((all_test - SHARES[2]).abs() < 0.03, "{all_test}");

        // an authored text copying a test text is refused
        let mut r = row("authored", 99, 2, 1);
        let copy = format!("{}。", texts[test_row]);
        r.text = Some(copy.clone());
        rows.push(r);
        texts.push(copy);
        let err = extend(&rows, &texts, &existing, 1).unwrap_err().to_string();
        assert!(err.contains("authored text 99") && err.contains("test"), "{err}");
        rows.pop();
        texts.pop();

        // an authored row the file puts in dev is refused
        let mut bad = existing.clone();
        bad.insert(("authored".into(), "0".into()), Split::Dev);
        assert!(extend(&rows, &texts, &bad, 1).is_err());
    }

    #[test]
    fn a_new_row_bridging_two_splits_follows_the_most_similar_row() {
        let rows: Vec<Labelled> = (0..3).map(|i| row("t", i, 0, 0)).collect();
        let r = random_texts(3, 77);
        let (s1, s2, s3): (String, String, String) =
            (r[0].chars().take(14).collect(), r[1].chars().take(10).collect(), r[2].chars().take(6).collect());
        // X = s1 s2 and Y = s2 s3 are not near-duplicates; Z = s1 s2 s3 contains both
        let texts: Vec<String> = vec![format!("{s1}{s2}"), format!("{s2}{s3}"), format!("{s1}{s2}{s3}")];
        let g = groups(&texts);
        assert!(g[0] == g[2] && g[1] == g[2], "Z joins X and Y");
        // the file holds X (test) and Y (train); Z is new and most like X
        let existing: HashMap<_, _> =
            [(rows[0].key(), Split::Test), (rows[1].key(), Split::Train)].into_iter().collect();
        let ext = extend(&rows, &texts, &existing, 1).unwrap();
        assert_eq!(ext.splits, vec![Split::Test, Split::Train, Split::Test]);
        assert_eq!(ext.ambiguous.len(), 1, "{:?}", ext.ambiguous);
        assert_eq!(ext.by_duplicate, 1);
    }
}
