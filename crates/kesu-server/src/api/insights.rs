//! Insights for complaint managers (`analyst` role): counts of everything
//! classified, as time series with breakdowns (`GET /v1/insights/series`)
//! and as totals per value (`GET /v1/insights/breakdown`), read from the
//! store's aggregates ([`kesu_store::insights`]). No route returns text.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::reviews::{parse_query, store};
use super::AppState;
use kesu_store::insights::{By, Column, Grain, Selection};

/// Most buckets one series answer holds.
pub const MAX_BUCKETS: usize = 2_000;

/// Which items, over which time.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InsightsQuery {
    /// Start (RFC 3339, inclusive; the bucket holding it is the first). Default: `to` minus one day.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive). Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Bucket width: `minute`, `hour` (default) or `day` (days start at midnight in the configured time zone).
    #[param(pattern = "^(minute|hour|day)$")]
    pub grain: Option<String>,
    /// Break counts down by `category`, `escalation`, `priority`, `route`, `channel`, `flag` or `tag:NAME`.
    #[param(pattern = "^(category|escalation|priority|route|channel|flag|tag:.+)$")]
    pub by: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this escalation level (0-3).
    #[param(minimum = 0, maximum = 3)]
    pub escalation: Option<u8>,
    /// Only this priority (`P1`..`P4`).
    pub priority: Option<String>,
    /// Only this route.
    pub route: Option<String>,
    /// Only this channel (`(other)`: channels past the cap; empty: none given).
    pub channel: Option<String>,
    /// Only items with this flag.
    #[param(value_type = Option<kesu_core::flags::Flag>)]
    pub flag: Option<String>,
    /// Only items with this tag value, as `NAME:VALUE`.
    #[param(pattern = "^[^:]+:.*$")]
    pub tag: Option<String>,
}

/// One bucket of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Its start (RFC 3339 in the configured time zone).
    pub start: String,
    /// Items classified in it (of the selection).
    pub count: i64,
    /// Negative-emotion index: the mean escalation level (0-3) of those items; null when none.
    pub negative_index: Option<f64>,
    /// With `by`: count per value (an item with two flags counts under both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<BTreeMap<String, i64>>,
}

/// A time series of counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    pub grain: Grain,
    /// The buckets' IANA time zone.
    pub time_zone: String,
    /// First bucket's start (RFC 3339).
    pub from: String,
    /// End, exclusive (RFC 3339).
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Every bucket from `from` to `to`, empty ones included, oldest first.
    pub buckets: Vec<Bucket>,
    /// Items of the whole range.
    pub total: i64,
    /// Mean escalation level of the whole range; null when no items.
    pub negative_index: Option<f64>,
}

/// One value of a breakdown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Share {
    pub value: String,
    pub count: i64,
    /// `count` / the selection's items (with `by=flag`: the share of items with that flag).
    pub share: f64,
    /// Mean escalation level of these items.
    pub negative_index: f64,
}

/// Totals per value over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct Breakdown {
    pub by: String,
    pub time_zone: String,
    /// Start of the first whole bucket counted (RFC 3339; hours, or days beyond hour retention).
    pub from: String,
    pub to: String,
    /// Items of the selection.
    pub total: i64,
    /// Largest first.
    pub values: Vec<Share>,
}

struct Asked {
    grain: Grain,
    from: i64,
    to: i64,
    by: Option<By>,
    sel: Selection,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn ms(at: &str, name: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("{name}={at:?} is not RFC 3339: {e}")))
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, m)
}

impl InsightsQuery {
    fn asked(&self) -> Result<Asked, ApiError> {
        let to = self.to.as_deref().map(|t| ms(t, "to")).transpose()?.unwrap_or_else(now_ms);
        let from = self.from.as_deref().map(|t| ms(t, "from")).transpose()?.unwrap_or(to - 86_400_000);
        if from >= to {
            return Err(bad("`from` must be before `to`"));
        }
        let grain = self.grain.as_deref().unwrap_or("hour").parse::<Grain>().map_err(bad)?;
        let by = self.by.as_deref().map(str::parse::<By>).transpose().map_err(bad)?;
        let mut sel = Selection::default();
        let mut eq = |c: Column, v: &Option<String>| {
            if let Some(v) = v {
                sel.equal.push((c, v.clone()));
            }
        };
        eq(Column::Category, &self.category);
        eq(Column::Priority, &self.priority);
        eq(Column::Route, &self.route);
        eq(Column::Channel, &self.channel);
        if let Some(l) = self.escalation {
            if l > 3 {
                return Err(bad("escalation must be 0-3"));
            }
            sel.equal.push((Column::Escalation, l.to_string()));
        }
        if let Some(f) = &self.flag {
            f.parse::<kesu_core::flags::Flag>().map_err(bad)?;
            sel.flag = Some(f.clone());
        }
        if let Some(t) = &self.tag {
            let (n, v) = t.split_once(':').ok_or_else(|| bad(format!("tag={t:?}: give NAME:VALUE")))?;
            sel.tag = Some((n.to_string(), v.to_string()));
        }
        if matches!(by, Some(By::Flag | By::Tag(_))) && (sel.flag.is_some() || sel.tag.is_some()) {
            return Err(bad("a flag or tag breakdown cannot be combined with a flag or tag filter"));
        }
        if sel.flag.is_some() && sel.tag.is_some() {
            return Err(bad("filter by a flag or by a tag, not both"));
        }
        Ok(Asked { grain, from, to, by, sel })
    }
}

fn mean(sum: i64, n: i64) -> Option<f64> {
    (n > 0).then(|| (sum as f64 / n as f64 * 1000.0).round() / 1000.0)
}

/// Counts per bucket: volume, the negative-emotion index and (with `by`) a
/// breakdown, every bucket of the range present.
#[utoipa::path(get, path = "/v1/insights/series", tag = "insights", params(InsightsQuery),
    responses(
        (status = 200, body = Series),
        (status = 422, description = "Bad time, grain, breakdown or filter; more than 2,000 buckets", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn series(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: InsightsQuery = parse_query(req.query_string())?;
    let a = q.asked()?;
    let store = store(&state)?;
    let cfg = store.insights();
    let starts = cfg.buckets(a.grain, a.from, a.to, MAX_BUCKETS).ok_or_else(|| {
        bad(format!("more than {MAX_BUCKETS} {} buckets: narrow the range or take a wider grain", a.grain.as_str()))
    })?;
    let first = starts.first().copied().unwrap_or(a.from);
    let totals = store.insight_cells(a.grain, first, a.to, &a.sel, None).await?;
    let split = match &a.by {
        Some(by) => store.insight_cells(a.grain, first, a.to, &a.sel, Some(by)).await?,
        None => Vec::new(),
    };
    let mut per: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for c in &totals {
        let e = per.entry(c.bucket).or_default();
        e.0 += c.count;
        e.1 += c.escalation_sum;
    }
    let mut by_bucket: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for c in split {
        *by_bucket.entry(c.bucket).or_default().entry(c.key).or_default() += c.count;
    }
    let (mut total, mut esc) = (0, 0);
    let buckets = starts
        .iter()
        .map(|b| {
            let (n, e) = per.get(b).copied().unwrap_or_default();
            total += n;
            esc += e;
            Bucket {
                start: cfg.format(*b),
                count: n,
                negative_index: mean(e, n),
                by: a.by.as_ref().map(|_| by_bucket.remove(b).unwrap_or_default()),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Series {
        grain: a.grain,
        time_zone: cfg.time_zone.clone(),
        from: cfg.format(first),
        to: cfg.format(a.to),
        by: q.by.clone(),
        buckets,
        total,
        negative_index: mean(esc, total),
    }))
}

/// Totals per value of `by` over a range: whole buckets of `grain`, by
/// default hours (or days where the range starts before the hour buckets' retention).
#[utoipa::path(get, path = "/v1/insights/breakdown", tag = "insights", params(InsightsQuery),
    responses(
        (status = 200, body = Breakdown),
        (status = 422, description = "Missing `by`; bad time, breakdown or filter", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn breakdown(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: InsightsQuery = parse_query(req.query_string())?;
    let a = q.asked()?;
    let by = a.by.clone().ok_or_else(|| bad("give `by`"))?;
    let store = store(&state)?;
    let cfg = store.insights();
    let grain = match q.grain {
        Some(_) => a.grain,
        None if a.from >= cfg.kept_since(Grain::Hour, now_ms()) => Grain::Hour,
        None => Grain::Day,
    };
    let first = cfg.bucket_start(grain, a.from);
    let totals = store.insight_cells(grain, first, a.to, &a.sel, None).await?;
    let total: i64 = totals.iter().map(|c| c.count).sum();
    let mut per: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for c in store.insight_cells(grain, first, a.to, &a.sel, Some(&by)).await? {
        let e = per.entry(c.key).or_default();
        e.0 += c.count;
        e.1 += c.escalation_sum;
    }
    let mut values: Vec<Share> = per
        .into_iter()
        .map(|(value, (n, e))| Share {
            value,
            count: n,
            share: if total > 0 { (n as f64 / total as f64 * 10_000.0).round() / 10_000.0 } else { 0.0 },
            negative_index: mean(e, n).unwrap_or(0.0),
        })
        .collect();
    values.sort_by(|x, y| y.count.cmp(&x.count).then_with(|| x.value.cmp(&y.value)));
    Ok(HttpResponse::Ok().json(Breakdown {
        by: q.by.clone().unwrap_or_default(),
        time_zone: cfg.time_zone.clone(),
        from: cfg.format(first),
        to: cfg.format(a.to),
        total,
        values,
    }))
}

/// Which issues, when.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IssuesQuery {
    /// End of the window (RFC 3339; rounded up to the hour). Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
    /// Most issues (1-200, default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

/// When to look at one issue.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IssueQuery {
    /// End of the window (RFC 3339; rounded up to the hour). Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<String>,
}

/// The hot spots of one window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Issues {
    /// Window start and end (RFC 3339).
    pub from: String,
    pub to: String,
    /// Emerging first, then by size.
    pub issues: Vec<crate::insights::issues::IssueView>,
}

/// One issue with its trend and examples.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueDetail {
    #[serde(flatten)]
    pub issue: crate::insights::issues::IssueView,
    pub first_seen: String,
    pub last_seen: String,
    /// Still open (closed after two windows without items).
    pub open: bool,
    /// Items per hour over this window and the one before.
    pub trend: Vec<Bucket>,
    /// The newest stored items of the issue (PII-masked as stored); items not stored are never shown.
    pub examples: Vec<Example>,
}

/// An example item of an issue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Example {
    pub review_id: String,
    pub received_at: String,
    pub text: String,
    pub category: String,
    pub escalation: u8,
    pub flags: Vec<String>,
}

fn at_of(q: &IssuesQuery) -> Result<i64, ApiError> {
    q.at.as_deref().map(|t| ms(t, "at")).transpose().map(|a| a.unwrap_or_else(now_ms))
}

/// Hot spots: similar complaints of the window grouped into issues, with keywords, size, growth and `emerging`.
#[utoipa::path(get, path = "/v1/insights/issues", tag = "insights", params(IssuesQuery),
    responses(
        (status = 200, body = Issues),
        (status = 422, description = "Bad time or limit", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn issues(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: IssuesQuery = parse_query(req.query_string())?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(bad("limit must be 1-200"));
    }
    let at = at_of(&q)?;
    let store = store(&state)?;
    let p = &state.settings.insights.hotspots;
    let (from, to, _) = crate::insights::issues::window(store, p, at);
    let issues = crate::insights::issues::top(store, p, at, limit).await?;
    let cfg = store.insights();
    Ok(HttpResponse::Ok().json(Issues { from: cfg.format(from), to: cfg.format(to), issues }))
}

/// One issue: its figures over the window, hourly trend and example items.
#[utoipa::path(get, path = "/v1/insights/issues/{id}", tag = "insights", params(("id" = String, Path, description = "The issue's id"), IssueQuery),
    responses(
        (status = 200, body = IssueDetail),
        (status = 404, description = "No such issue (`unknown_item`)", body = ErrorBody),
        (status = 422, description = "Bad time", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn issue(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q: IssuesQuery = parse_query(req.query_string())?;
    let at = at_of(&q)?;
    let store = store(&state)?;
    let id = path.into_inner();
    let (first, last, open) = store.issue_span(&id).await?.ok_or_else(|| ApiError::unknown_item(&id))?;
    let p = &state.settings.insights.hotspots;
    let (from, to, prev_from) = crate::insights::issues::window(store, p, at);
    let view = crate::insights::issues::top(store, p, at, usize::MAX).await?.into_iter().find(|v| v.id == id);
    let view = view.unwrap_or_else(|| crate::insights::issues::IssueView {
        id: id.clone(),
        size: 0,
        previous: 0,
        growth: 1.0,
        emerging: false,
        keywords: vec![],
        category: String::new(),
        flags: vec![],
        negative_index: 0.0,
    });
    let cfg = store.insights();
    let counts: BTreeMap<i64, i64> = store.issue_trend(&id, prev_from, to).await?.into_iter().collect();
    let trend = cfg
        .buckets(Grain::Hour, prev_from, to, MAX_BUCKETS)
        .unwrap_or_default()
        .into_iter()
        .map(|b| Bucket {
            start: cfg.format(b),
            count: counts.get(&b).copied().unwrap_or(0),
            negative_index: None,
            by: None,
        })
        .collect();
    let examples = store
        .issue_examples(&id, kesu_store::hotspots::EXAMPLES_PER_ISSUE)
        .await?
        .into_iter()
        .map(|i| Example {
            review_id: i.id,
            received_at: i.received_at,
            text: i.text,
            category: i.category,
            escalation: i.escalation,
            flags: i.flags,
        })
        .collect();
    let _ = from;
    Ok(HttpResponse::Ok().json(IssueDetail {
        issue: view,
        first_seen: cfg.format(first),
        last_seen: cfg.format(last),
        open,
        trend,
        examples,
    }))
}

/// Which alerts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `open`, `acknowledged` or `resolved` (default: all).
    #[param(pattern = "^(open|acknowledged|resolved)$")]
    pub status: Option<String>,
    /// Buckets from (RFC 3339). Default: 30 days before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Buckets before (RFC 3339). Default: far future.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Most alerts (1-500, default 100), newest bucket first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The alert log, newest first.
#[utoipa::path(get, path = "/v1/insights/alerts", tag = "insights", params(AlertsQuery),
    responses(
        (status = 200, body = Vec<kesu_store::alerts::Alert>),
        (status = 422, description = "Bad status, time or limit", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn alerts(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: AlertsQuery = parse_query(req.query_string())?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "open" | "acknowledged" | "resolved") {
            return Err(bad("status must be open, acknowledged or resolved"));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit must be 1-500"));
    }
    let to = q.to.as_deref().map(|t| ms(t, "to")).transpose()?.unwrap_or(i64::MAX / 4);
    let from = q.from.as_deref().map(|t| ms(t, "from")).transpose()?.unwrap_or(0);
    Ok(HttpResponse::Ok().json(store(&state)?.alerts(q.status.as_deref(), from, to, limit).await?))
}

/// A change to an alert's status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertMove {
    /// The version you read (409 `version_conflict` when it changed).
    pub version: i64,
}

async fn move_alert(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: String,
    to: &str,
) -> Result<HttpResponse, ApiError> {
    let m: AlertMove = super::extract::read_json(&req, body, 4096).await?;
    let who = super::reviews::actor(&req);
    let a = store(&state)?.move_alert(&id, m.version, to, &who).await?;
    tracing::info!(alert = %a.id, status = %a.status, actor = %who, "alert changed");
    Ok(HttpResponse::Ok().json(a))
}

/// Acknowledge an alert (recorded with who and when).
#[utoipa::path(post, path = "/v1/insights/alerts/{id}/acknowledge", tag = "insights", request_body = AlertMove,
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, body = kesu_store::alerts::Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "Changed since `version`, or already resolved", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn acknowledge(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    move_alert(req, body, state, path.into_inner(), "acknowledged").await
}

/// Resolve an alert (recorded with who and when).
#[utoipa::path(post, path = "/v1/insights/alerts/{id}/resolve", tag = "insights", request_body = AlertMove,
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, body = kesu_store::alerts::Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "Changed since `version`, or already resolved", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn resolve(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    move_alert(req, body, state, path.into_inner(), "resolved").await
}

/// The report's range and format.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start (RFC 3339). Default: `to` minus 7 days.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339). Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `html` (default), `md` or `json`.
    #[param(pattern = "^(html|md|json)$")]
    pub format: Option<String>,
}

/// The review report (as `kesu report` prints it): volume and negative-emotion charts with alert markers, breakdowns, hot spots, alerts.
#[utoipa::path(get, path = "/v1/insights/report", tag = "insights", params(ReportQuery),
    responses(
        (status = 200, description = "The report as `format` asks", content(
            (String = "text/html"), (String = "text/markdown"), (Object = "application/json"))),
        (status = 422, description = "Bad time or format; a range over 400 days", body = ErrorBody),
        (status = 503, description = "Store unavailable or disabled", body = ErrorBody),
    ))]
pub async fn report(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: ReportQuery = parse_query(req.query_string())?;
    let to = q.to.as_deref().map(|t| ms(t, "to")).transpose()?.unwrap_or_else(now_ms);
    let from = q.from.as_deref().map(|t| ms(t, "from")).transpose()?.unwrap_or(to - 7 * 86_400_000);
    if from >= to || to - from > 400 * 86_400_000 {
        return Err(bad("`from` must be before `to`, at most 400 days apart"));
    }
    let store = store(&state)?;
    let r = crate::insights::report::build(store, &state.settings.insights.hotspots, from, to).await?;
    Ok(match q.format.as_deref().unwrap_or("html") {
        "html" => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(crate::insights::report::html(&r)),
        "md" => {
            HttpResponse::Ok().content_type("text/markdown; charset=utf-8").body(crate::insights::report::markdown(&r))
        }
        "json" => HttpResponse::Ok().json(&r),
        f => return Err(bad(format!("format={f:?}: html, md or json"))),
    })
}

/// The insights console: volume and negative-emotion charts with alert
/// markers, breakdowns, hot spots with keywords, trend and examples, the alert
/// log with acknowledge / resolve. A static page; its data calls need an `analyst` key.
#[utoipa::path(get, path = "/insights", tag = "insights", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn console() -> HttpResponse {
    super::pages::INSIGHTS.respond()
}
