//! Hot spots: similar complaints grouped into issues by online clustering of
//! the encoder's sentence embeddings, named by class-based TF-IDF keywords.
//!
//! Guarantees:
//! * [`Clusterer::assign`] puts an embedding in the most similar live issue
//!   when the cosine similarity to its centroid is at least `threshold`, else
//!   opens a new issue; the centroid is the normalised running mean of its
//!   members. Results depend only on the order of assignments, which the
//!   caller (one worker at a time, reading the store's queue in order) fixes,
//!   so replicas agree.
//! * State is bounded: at most `max_issues` centroids; an issue not seen for
//!   two windows (event time) is closed, and when the cap is reached the
//!   least recently seen one is closed first.
//! * [`keyword_candidates`] keeps words of two or more chars with a letter or
//!   CJK character, never a masked (`*`) or digit-only token, once per text.

use std::collections::{HashMap, HashSet};

/// How issues form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Least cosine similarity to an issue's centroid to join it.
    pub threshold: f32,
    /// Most live issues.
    pub max_issues: usize,
    /// The sliding window (ms): an issue's size is its items in the window.
    pub window_ms: i64,
    /// Fewest items in the window for an issue to be `emerging`.
    pub min_size: u64,
    /// Least growth (`(size + 1) / (previous window + 1)`) for `emerging`.
    pub growth: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { threshold: 0.55, max_issues: 2_000, window_ms: 24 * 3_600_000, min_size: 10, growth: 3.0 }
    }
}

impl Params {
    /// Whether an issue of `size` items in the window, `previous` in the window before, is emerging.
    pub fn emerging(&self, size: u64, previous: u64) -> bool {
        size >= self.min_size && growth(size, previous) >= self.growth
    }
}

/// `(size + 1) / (previous + 1)`.
pub fn growth(size: u64, previous: u64) -> f64 {
    (size as f64 + 1.0) / (previous as f64 + 1.0)
}

/// One live issue.
#[derive(Debug, Clone, PartialEq)]
pub struct Centroid {
    pub id: String,
    /// L2-normalised.
    pub vector: Vec<f32>,
    /// Items assigned so far.
    pub n: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// The id under which the running mean of all embeddings is kept with the centroids.
pub const MEAN_ID: &str = "_mean";

/// Online clustering over a bounded set of centroids.
///
/// Embeddings are centred first: the running mean of every embedding seen so
/// far is subtracted (sentence encoders put all texts of one language in a
/// narrow cone, so raw cosines say little), then the difference is normalised.
pub struct Clusterer {
    params: Params,
    /// Running mean of the raw embeddings (`id` [`MEAN_ID`], not a centroid).
    mean: Centroid,
    centroids: Vec<Centroid>,
    changed: HashSet<String>,
    closed: Vec<String>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl Clusterer {
    /// Start from `centroids` (the one with id [`MEAN_ID`], if any, is the running mean).
    pub fn new(params: Params, centroids: Vec<Centroid>) -> Clusterer {
        let (mean, centroids): (Vec<Centroid>, Vec<Centroid>) = centroids.into_iter().partition(|c| c.id == MEAN_ID);
        let mean = mean.into_iter().next().unwrap_or(Centroid {
            id: MEAN_ID.into(),
            vector: Vec::new(),
            n: 0,
            first_ms: 0,
            last_ms: 0,
        });
        Clusterer { params, mean, centroids, changed: HashSet::new(), closed: Vec::new() }
    }

    /// Put `embedding` (seen at `at_ms`) in an issue; returns its id. `new_id`
    /// names a new issue.
    pub fn assign(&mut self, embedding: &[f32], at_ms: i64, new_id: &mut dyn FnMut() -> String) -> String {
        let stale = at_ms - 2 * self.params.window_ms;
        let (keep, gone): (Vec<Centroid>, Vec<Centroid>) =
            std::mem::take(&mut self.centroids).into_iter().partition(|c| c.last_ms >= stale);
        self.centroids = keep;
        self.closed.extend(gone.into_iter().map(|c| c.id));
        let mut raw = embedding.to_vec();
        normalise(&mut raw);
        if self.mean.vector.len() != raw.len() {
            self.mean.vector = vec![0.0; raw.len()];
            self.mean.n = 0;
        }
        let mut e: Vec<f32> = raw.iter().zip(&self.mean.vector).map(|(x, m)| x - m).collect();
        normalise(&mut e);
        let k = self.mean.n as f32;
        for (m, x) in self.mean.vector.iter_mut().zip(&raw) {
            *m = (*m * k + x) / (k + 1.0);
        }
        self.mean.n += 1;
        self.mean.last_ms = self.mean.last_ms.max(at_ms);
        let best = self
            .centroids
            .iter()
            .enumerate()
            .filter(|(_, c)| c.vector.len() == e.len())
            .map(|(i, c)| (i, dot(&c.vector, &e)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, sim)) = best.filter(|(_, s)| *s >= self.params.threshold) {
            let _ = sim;
            let c = &mut self.centroids[i];
            let n = c.n as f32;
            for (v, x) in c.vector.iter_mut().zip(&e) {
                *v = *v * n + x;
            }
            normalise(&mut c.vector);
            c.n += 1;
            c.last_ms = c.last_ms.max(at_ms);
            self.changed.insert(c.id.clone());
            return c.id.clone();
        }
        if self.centroids.len() >= self.params.max_issues.max(1) {
            if let Some((i, _)) = self.centroids.iter().enumerate().min_by_key(|(_, c)| c.last_ms) {
                let c = self.centroids.swap_remove(i);
                self.changed.remove(&c.id);
                self.closed.push(c.id);
            }
        }
        let id = new_id();
        self.centroids.push(Centroid { id: id.clone(), vector: e, n: 1, first_ms: at_ms, last_ms: at_ms });
        self.changed.insert(id.clone());
        id
    }

    /// The live centroids.
    pub fn centroids(&self) -> &[Centroid] {
        &self.centroids
    }

    /// Centroids created or moved since [`Clusterer::new`] (with the running
    /// mean, id [`MEAN_ID`], when anything was assigned), and issues closed.
    pub fn into_changes(self) -> (Vec<Centroid>, Vec<String>) {
        let mut changed: Vec<Centroid> = self.centroids.into_iter().filter(|c| self.changed.contains(&c.id)).collect();
        if !self.changed.is_empty() {
            changed.push(self.mean);
        }
        (changed, self.closed)
    }
}

/// Common function words that name no issue.
const STOPWORDS: &[&str] = &[
    "我们",
    "你们",
    "他们",
    "她们",
    "这个",
    "那个",
    "这些",
    "那些",
    "什么",
    "怎么",
    "没有",
    "就是",
    "还是",
    "已经",
    "因为",
    "所以",
    "但是",
    "然后",
    "可以",
    "一个",
    "自己",
    "现在",
    "时候",
    "知道",
    "不是",
    "这样",
    "如果",
    "还有",
    "这么",
    "那么",
    "一下",
    "一直",
    "真的",
    "而且",
    "或者",
    "之后",
    "之前",
    "今天",
    "昨天",
    "一次",
    "不能",
    "不会",
    "可能",
    "需要",
    "为什么",
    "怎么办",
    "大家",
    "是不是",
    "有没有",
    "你好",
    "请问",
    "谢谢",
    "the",
    "and",
];

/// The words of one text worth counting as keywords (see the module docs).
pub fn keyword_candidates<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in words {
        let w = w.trim();
        if w.chars().count() < 2
            || w.contains('*')
            || !w.chars().any(|c| c.is_alphabetic())
            || STOPWORDS.contains(&w)
            || !seen.insert(w)
        {
            continue;
        }
        out.push(w.to_lowercase());
        if out.len() == 40 {
            break;
        }
    }
    out
}

/// Class-based TF-IDF (as BERTopic): for issue `c` and term `t`,
/// `tf(t, c) / words(c) * ln(1 + A / f(t))`, with `A` the mean words per
/// issue and `f(t)` the term's count over all issues. Returns each issue's
/// top `k` terms, best first (ties by term).
pub fn class_keywords(
    classes: &HashMap<String, HashMap<String, u64>>,
    k: usize,
) -> HashMap<String, Vec<(String, f64)>> {
    let mut f: HashMap<&str, u64> = HashMap::new();
    let mut total_words = 0u64;
    for terms in classes.values() {
        for (t, n) in terms {
            *f.entry(t.as_str()).or_default() += n;
            total_words += n;
        }
    }
    let a = total_words as f64 / classes.len().max(1) as f64;
    classes
        .iter()
        .map(|(c, terms)| {
            let words: u64 = terms.values().sum();
            let mut scored: Vec<(String, f64)> = terms
                .iter()
                .map(|(t, n)| {
                    let idf = (1.0 + a / f[t.as_str()] as f64).ln();
                    (t.clone(), *n as f64 / words.max(1) as f64 * idf)
                })
                .collect();
            scored.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            scored.truncate(k);
            (c.clone(), scored)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[f32]) -> Vec<f32> {
        let mut v = x.to_vec();
        normalise(&mut v);
        v
    }

    #[test]
    fn similar_texts_join_and_others_open_issues() {
        let p = Params { threshold: 0.9, max_issues: 2, window_ms: 1000, ..Default::default() };
        // a settled mean at the origin: centring changes nothing here
        let origin = Centroid { id: MEAN_ID.into(), vector: vec![0.0; 3], n: 1_000_000, first_ms: 0, last_ms: 0 };
        let mut c = Clusterer::new(p, vec![origin]);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("i{n}")
        };
        assert_eq!(c.assign(&[1.0, 0.0, 0.0], 0, &mut id), "i1");
        assert_eq!(c.assign(&[0.95, 0.1, 0.0], 10, &mut id), "i1", "cosine 0.99 joins");
        assert_eq!(c.assign(&[0.0, 1.0, 0.0], 20, &mut id), "i2");
        assert_eq!(c.centroids()[0].n, 2);
        assert!((dot(&c.centroids()[0].vector, &c.centroids()[0].vector) - 1.0).abs() < 1e-5, "normalised");
        // the cap: a third issue closes the least recently seen
        assert_eq!(c.assign(&[0.0, 0.0, 1.0], 30, &mut id), "i3");
        assert_eq!(c.centroids().len(), 2);
        // two windows later everything old is closed
        assert_eq!(c.assign(&[0.0, 0.0, 1.0], 5000, &mut id), "i4");
        let (changed, closed) = c.into_changes();
        assert_eq!(closed, vec!["i1".to_string(), "i2".into(), "i3".into()]);
        assert_eq!(changed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["i4", MEAN_ID]);
        assert_eq!(changed[1].n, 1_000_005, "the running mean counts every embedding");
        let _ = v;
    }

    #[test]
    fn centring_separates_texts_that_share_the_common_direction() {
        // every text leans on one common direction (cosines all over 0.98 raw)
        let common = [10.0f32, 0.0, 0.0, 0.0];
        let a = |j: f32| [common[0], 1.0, 0.1 * j, 0.0];
        let b = |j: f32| [common[0], -1.0, 0.0, 0.1 * j];
        let p = Params { threshold: 0.8, ..Default::default() };
        let mut c = Clusterer::new(p, vec![]);
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("i{n}")
        };
        let mut got = Vec::new();
        for j in 0..20 {
            let x = if j % 2 == 0 { a(j as f32 / 10.0) } else { b(j as f32 / 10.0) };
            got.push(c.assign(&x, j, &mut id));
        }
        // after the first few (while the mean settles) the two groups keep apart
        let tail_a: HashSet<&String> = got[10..].iter().step_by(2).collect();
        let tail_b: HashSet<&String> = got[11..].iter().step_by(2).collect();
        assert_eq!((tail_a.len(), tail_b.len()), (1, 1), "{got:?}");
        assert!(tail_a.is_disjoint(&tail_b), "{got:?}");
    }

    #[test]
    fn keywords_name_what_sets_an_issue_apart() {
        let mut classes: HashMap<String, HashMap<String, u64>> = HashMap::new();
        let add = |m: &mut HashMap<String, HashMap<String, u64>>, c: &str, t: &str, n: u64| {
            *m.entry(c.into()).or_default().entry(t.into()).or_default() += n;
        };
        for (c, t, n) in [
            ("a", "电池", 30),
            ("a", "鼓包", 25),
            ("a", "客服", 20),
            ("b", "快递", 30),
            ("b", "客服", 20),
            ("c", "退款", 30),
            ("c", "客服", 20),
        ] {
            add(&mut classes, c, t, n);
        }
        let k = class_keywords(&classes, 2);
        assert_eq!(k["a"].iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), vec!["电池", "鼓包"]);
        assert_eq!(k["b"][0].0, "快递");
    }

    #[test]
    fn keyword_candidates_table() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["电池", "鼓包", "电池", "了"], &["电池", "鼓包"]),
            (&["138****5678", "2026", "12315"], &[]),
            (&["我们", "为什么", "iPhone"], &["iphone"]),
            (&["  退款 ", "x"], &["退款"]),
        ];
        for (words, want) in cases {
            assert_eq!(keyword_candidates(words.iter().copied()), *want, "{words:?}");
        }
        assert!(Params::default().emerging(10, 2));
        assert!(!Params::default().emerging(10, 5));
        assert!(!Params::default().emerging(5, 0));
    }
}
