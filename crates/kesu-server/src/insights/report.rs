//! The weekly review report (`kesu report`, `GET /v1/insights/report`):
//! volume and negative-emotion index per day with the alerts marked, the
//! breakdowns, the hot spots at the end of the range and the alert log, as
//! Markdown or as one self-contained HTML page with inline SVG charts (no
//! script, no network).

use std::collections::BTreeMap;
use std::fmt::Write;

use kesu_core::insights::hotspots::Params;
use kesu_store::insights::{By, Column, Grain, Selection};
use kesu_store::Store;
use serde::Serialize;

use super::issues::{self, IssueView};

/// One bucket of the report's series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Local start (RFC 3339 in the configured zone).
    pub start: String,
    pub count: i64,
    pub negative_index: Option<f64>,
    /// Alerts raised on this bucket (rule names).
    pub alerts: Vec<String>,
}

/// What the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub time_zone: String,
    pub grain: Grain,
    pub total: i64,
    pub negative_index: Option<f64>,
    pub series: Vec<Point>,
    /// Breakdown name -> (value, count), largest first.
    pub breakdowns: BTreeMap<String, Vec<(String, i64)>>,
    pub issues: Vec<IssueView>,
    pub alerts: Vec<kesu_store::alerts::Alert>,
}

/// Gather the report over `[from_ms, to_ms)`: daily buckets for ranges over
/// three days, hourly otherwise.
pub async fn build(store: &Store, p: &Params, from_ms: i64, to_ms: i64) -> Result<Report, kesu_store::StoreError> {
    let cfg = store.insights().clone();
    let grain = if to_ms - from_ms > 3 * 86_400_000 { Grain::Day } else { Grain::Hour };
    let starts = cfg.buckets(grain, from_ms, to_ms, 5_000).unwrap_or_default();
    let first = starts.first().copied().unwrap_or(from_ms);
    let all = Selection::default();
    let cells = store.insight_cells(grain, first, to_ms, &all, None).await?;
    let per: BTreeMap<i64, (i64, i64)> = cells.iter().map(|c| (c.bucket, (c.count, c.escalation_sum))).collect();
    let alerts = store.alerts(None, first, to_ms, 500).await?;
    let mut marks: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for a in &alerts {
        if let Ok(t) = a.bucket.parse::<jiff::Timestamp>() {
            marks.entry(cfg.bucket_start(grain, t.as_millisecond())).or_default().push(a.rule.clone());
        }
    }
    let mean = |e: i64, n: i64| (n > 0).then(|| (e as f64 / n as f64 * 100.0).round() / 100.0);
    let series: Vec<Point> = starts
        .iter()
        .map(|b| {
            let (n, e) = per.get(b).copied().unwrap_or_default();
            Point {
                start: cfg.format(*b),
                count: n,
                negative_index: mean(e, n),
                alerts: marks.remove(b).unwrap_or_default(),
            }
        })
        .collect();
    let total: i64 = per.values().map(|v| v.0).sum();
    let esc: i64 = per.values().map(|v| v.1).sum();
    let mut breakdowns = BTreeMap::new();
    let bys = [
        ("category", By::Column(Column::Category)),
        ("escalation", By::Column(Column::Escalation)),
        ("priority", By::Column(Column::Priority)),
        ("channel", By::Column(Column::Channel)),
        ("flag", By::Flag),
    ];
    for (name, by) in bys {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for c in store.insight_cells(grain, first, to_ms, &all, Some(&by)).await? {
            *m.entry(if c.key.is_empty() { "(none)".into() } else { c.key }).or_default() += c.count;
        }
        let mut v: Vec<(String, i64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        breakdowns.insert(name.to_string(), v);
    }
    let issues = issues::top(store, p, to_ms, 10).await?;
    Ok(Report {
        from: cfg.format(first),
        to: cfg.format(to_ms),
        time_zone: cfg.time_zone.clone(),
        grain,
        total,
        negative_index: mean(esc, total),
        series,
        breakdowns,
        issues,
        alerts,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown (bar charts drawn with block characters).
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Complaint review {} – {}\n", r.from, r.to);
    let idx = r.negative_index.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    let _ = writeln!(
        o,
        "{} complaints; negative-emotion index {idx} (mean escalation 0-3); {} alerts. Time zone {}.\n",
        r.total,
        r.alerts.len(),
        r.time_zone
    );
    let _ = writeln!(o, "## Volume and negative-emotion index per {}\n", r.grain.as_str());
    let max = r.series.iter().map(|p| p.count).max().unwrap_or(0).max(1);
    let _ = writeln!(o, "| {} | items | | index | alerts |\n|---|---:|---|---:|---|", r.grain.as_str());
    for p in &r.series {
        let bar = "█".repeat(((p.count * 30 + max - 1) / max) as usize);
        let i = p.negative_index.map(|x| format!("{x:.2}")).unwrap_or_default();
        let _ = writeln!(
            o,
            "| {} | {} | {bar} | {i} | {} |",
            &p.start[..16.min(p.start.len())],
            p.count,
            md_cell(&p.alerts.join(", "))
        );
    }
    for (name, v) in &r.breakdowns {
        let _ = writeln!(o, "\n## By {name}\n\n| {name} | items | share |\n|---|---:|---:|");
        for (k, n) in v.iter().take(12) {
            let share = if r.total > 0 { *n as f64 * 100.0 / r.total as f64 } else { 0.0 };
            let _ = writeln!(o, "| {} | {n} | {share:.1}% |", md_cell(k));
        }
    }
    let _ = writeln!(o, "\n## Hot spots at the end of the range\n\n| issue | items | before | growth | emerging | keywords | category | flags |\n|---|---:|---:|---:|---|---|---|---|");
    for i in &r.issues {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            i.id,
            i.size,
            i.previous,
            i.growth,
            if i.emerging { "yes" } else { "" },
            md_cell(&i.keywords.iter().take(5).cloned().collect::<Vec<_>>().join("、")),
            i.category,
            i.flags.join(", ")
        );
    }
    let _ = writeln!(o, "\n## Alerts\n\n| bucket | rule | severity | status | by |\n|---|---|---|---|---|");
    for a in &r.alerts {
        let by = a.resolved_by.as_deref().or(a.acknowledged_by.as_deref()).unwrap_or("");
        let _ = writeln!(o, "| {} | {} | {} | {} | {} |", a.bucket, a.rule, a.severity, a.status, md_cell(by));
    }
    o
}

/// SVG bars of the series' counts with alert markers, and the index as a line.
pub fn chart_svg(r: &Report) -> String {
    let (w, h, pad) = (760.0f64, 220.0f64, 30.0f64);
    let n = r.series.len().max(1) as f64;
    let max = r.series.iter().map(|p| p.count).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / n;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"volume and negative-emotion index\">"
    );
    let _ = write!(s, "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>", h - pad, w - pad, h - pad);
    let mut line = Vec::new();
    for (i, p) in r.series.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let bh = p.count as f64 / max * (h - 2.0 * pad);
        let fill = if p.alerts.is_empty() { "#4a78b5" } else { "#d9534f" };
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"><title>{} · {} items{}</title></rect>",
            x + bw * 0.1,
            h - pad - bh,
            (bw * 0.8).max(1.0),
            esc(&p.start),
            p.count,
            if p.alerts.is_empty() { String::new() } else { format!(" · alerts: {}", esc(&p.alerts.join(", "))) }
        );
        if !p.alerts.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#d9534f\">▲</text>",
                x + bw / 2.0,
                h - pad - bh - 4.0
            );
        }
        if let Some(ix) = p.negative_index {
            line.push(format!("{:.1},{:.1}", x + bw / 2.0, h - pad - ix / 3.0 * (h - 2.0 * pad)));
        }
    }
    if !line.is_empty() {
        let _ =
            write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"#f0ad4e\" stroke-width=\"2\"/>", line.join(" "));
    }
    let _ = write!(s, "<text x=\"{pad}\" y=\"16\" font-size=\"12\">max {max} items / {}; orange: negative-emotion index (0-3); red ▲: alert</text></svg>", r.grain.as_str());
    s
}

/// The report as one HTML page (inline SVG, no script).
pub fn html(r: &Report) -> String {
    let mut o = String::from("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>kesu complaint review</title><style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}.n{text-align:right}</style></head><body>");
    let _ = write!(o, "<h1>Complaint review {} – {}</h1>", esc(&r.from), esc(&r.to));
    let idx = r.negative_index.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    let _ = write!(
        o,
        "<p>{} complaints; negative-emotion index {idx}; {} alerts. Time zone {}.</p>",
        r.total,
        r.alerts.len(),
        esc(&r.time_zone)
    );
    o.push_str(&chart_svg(r));
    for (name, v) in &r.breakdowns {
        let _ =
            write!(o, "<h2>By {}</h2><table><tr><th>{}</th><th>items</th><th>share</th></tr>", esc(name), esc(name));
        for (k, n) in v.iter().take(12) {
            let share = if r.total > 0 { *n as f64 * 100.0 / r.total as f64 } else { 0.0 };
            let _ = write!(o, "<tr><td>{}</td><td class=n>{n}</td><td class=n>{share:.1}%</td></tr>", esc(k));
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Hot spots</h2><table><tr><th>items</th><th>before</th><th>growth</th><th>emerging</th><th>keywords</th><th>category</th><th>flags</th></tr>");
    for i in &r.issues {
        let _ = write!(
            o,
            "<tr><td class=n>{}</td><td class=n>{}</td><td class=n>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.size,
            i.previous,
            i.growth,
            if i.emerging { "emerging" } else { "" },
            esc(&i.keywords.iter().take(5).cloned().collect::<Vec<_>>().join("、")),
            esc(&i.category),
            esc(&i.flags.join(", "))
        );
    }
    o.push_str("</table><h2>Alerts</h2><table><tr><th>bucket</th><th>rule</th><th>severity</th><th>status</th><th>by</th></tr>");
    for a in &r.alerts {
        let by = a.resolved_by.as_deref().or(a.acknowledged_by.as_deref()).unwrap_or("");
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.bucket),
            esc(&a.rule),
            esc(&a.severity),
            esc(&a.status),
            esc(by)
        );
    }
    o.push_str("</table></body></html>\n");
    o
}
