//! Hot-spot issues as analysts see them: size in the window, growth against
//! the window before, `emerging`, keywords (class-based TF-IDF over the
//! issues of the window), dominant category and flags.

use std::collections::HashMap;

use kesu_core::insights::hotspots::{class_keywords, growth, Params};
use kesu_store::insights::Grain;
use kesu_store::Store;
use serde::Serialize;
use utoipa::ToSchema;

/// Keywords shown per issue.
pub const KEYWORDS: usize = 8;

/// One issue over a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssueView {
    pub id: String,
    /// Items in the window.
    pub size: i64,
    /// Items in the window before.
    pub previous: i64,
    /// `(size + 1) / (previous + 1)`.
    pub growth: f64,
    /// Grows fast: at least `min_size` items and `growth` over the configured factor.
    pub emerging: bool,
    /// Best first (class-based TF-IDF over the window's issues; PII-masked words).
    pub keywords: Vec<String>,
    /// The most frequent category.
    pub category: String,
    /// Flags carried by at least a fifth of the items, most frequent first.
    pub flags: Vec<String>,
    /// Mean escalation level of the window's items.
    pub negative_index: f64,
}

/// The window `[at - window, at)` on hour boundaries: (from, to, previous from).
pub fn window(store: &Store, p: &Params, at: i64) -> (i64, i64, i64) {
    let cfg = store.insights();
    let to = cfg.bucket_start(Grain::Hour, at);
    let to = if to < at { cfg.next_bucket(Grain::Hour, to) } else { to };
    (to - p.window_ms, to, to - 2 * p.window_ms)
}

fn view(id: &str, dims: &HashMap<String, i64>, prev: i64, keywords: Vec<String>, p: &Params) -> IssueView {
    let size = dims.get("").copied().unwrap_or(0);
    let top = |prefix: &str| {
        let mut v: Vec<(&str, i64)> =
            dims.iter().filter_map(|(k, n)| k.strip_prefix(prefix).map(|k| (k, *n))).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    };
    let category = top("c:").first().map(|c| c.0.to_string()).unwrap_or_default();
    let flags = top("f:").into_iter().filter(|(_, n)| *n * 5 >= size && *n > 0).map(|(f, _)| f.to_string()).collect();
    let esc = dims.get("esc").copied().unwrap_or(0);
    IssueView {
        id: id.to_string(),
        size,
        previous: prev,
        growth: (growth(size.max(0) as u64, prev.max(0) as u64) * 100.0).round() / 100.0,
        emerging: p.emerging(size.max(0) as u64, prev.max(0) as u64),
        keywords,
        category,
        flags,
        negative_index: if size > 0 { (esc as f64 / size as f64 * 1000.0).round() / 1000.0 } else { 0.0 },
    }
}

/// The window's issues, emerging first, then by size; at most `limit`.
pub async fn top(store: &Store, p: &Params, at: i64, limit: usize) -> Result<Vec<IssueView>, kesu_store::StoreError> {
    let (from, to, prev_from) = window(store, p, at);
    let cur = store.issue_counts(from, to, None).await?;
    let prev = store.issue_counts(prev_from, from, None).await?;
    let classes: HashMap<String, HashMap<String, u64>> = cur
        .iter()
        .map(|(id, dims)| {
            let words = dims
                .iter()
                .filter_map(|(k, n)| k.strip_prefix("w:").map(|w| (w.to_string(), (*n).max(0) as u64)))
                .collect();
            (id.clone(), words)
        })
        .collect();
    let mut kw = class_keywords(&classes, KEYWORDS);
    let mut out: Vec<IssueView> = cur
        .iter()
        .map(|(id, dims)| {
            let p_size = prev.get(id).and_then(|d| d.get("")).copied().unwrap_or(0);
            let words = kw.remove(id).unwrap_or_default().into_iter().map(|(w, _)| w).collect();
            view(id, dims, p_size, words, p)
        })
        .filter(|v| v.size > 0)
        .collect();
    out.sort_by(|a, b| b.emerging.cmp(&a.emerging).then(b.size.cmp(&a.size)).then_with(|| a.id.cmp(&b.id)));
    out.truncate(limit);
    Ok(out)
}
