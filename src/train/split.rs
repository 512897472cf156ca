//! The fixed train/dev/test split, stratified and near-duplicate safe.
//!
//! Texts are grouped by near-duplication (char 3-gram Jaccard ≥ 0.6, or the
//! shorter text's 3-grams ≥ 0.8 contained in the longer one, after folding
//! width/case and mapping digits to 0); a whole group goes to one split, so
//! no test text has a near-duplicate in training. Groups are ordered by a
//! seeded hash and dealt, per (category, escalation) stratum, to the split
//! furthest below its target share. Groups holding an authored text always
//! go to train.

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

/// Assign each row a split. `texts[i]` is the text of `rows[i]`.
pub fn assign(rows: &[Labelled], texts: &[String], seed: u64) -> Vec<Split> {
    let g = groups(texts);
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
    let mut out = vec![Split::Train; rows.len()];
    let mut counts: HashMap<(usize, usize), [usize; 3]> = HashMap::new();
    for m in group_list {
        if m.iter().any(|&i| rows[i].authored()) {
            continue; // train
        }
        let lead = m[0];
        let stratum = (rows[lead].category, rows[lead].escalation);
        let c = counts.entry(stratum).or_default();
        let total: usize = c.iter().sum::<usize>() + m.len();
        let deficit = |k: usize| SHARES[k] * total as f64 - c[k] as f64;
        let k = (0..3).max_by(|&a, &b| deficit(a).partial_cmp(&deficit(b)).unwrap().then(b.cmp(&a))).unwrap();
        c[k] += m.len();
        let s = [Split::Train, Split::Dev, Split::Test][k];
        for i in m {
            out[i] = s;
        }
    }
    out
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
            .map(|i| Labelled { source: "t".into(), id: i.to_string(), category: i % 3, touches: [true, false, false], escalation: i % 4, flags: vec![], text: None, file: "f".into() })
            .collect();
        let mut seed = 42u64;
        let mut texts: Vec<String> = (0..300)
            .map(|_| {
                (0..20)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        char::from_u32(0x4e00 + ((seed >> 33) % 3000) as u32).unwrap()
                    })
                    .collect()
            })
            .collect();
        texts[1] = texts[0].clone();
        let s = assign(&rows, &texts, 1);
        assert_eq!(s[0], s[1]);
        let test = s.iter().filter(|x| **x == Split::Test).count() as f64 / 300.0;
        assert!((test - 0.21).abs() < 0.05, "{test}");
    }
}
