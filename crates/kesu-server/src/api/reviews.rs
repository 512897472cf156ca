//! The review API over the complaint store: the queue with filters and keyset
//! pages, one item, status moves with optimistic concurrency, the audit log,
//! streamed export, and false-positive counts per lexicon term.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::read_json;
use super::AppState;
use kesu_store::{Change, Filter, Item, Page, Patch, Status, Store, TermCount};

pub(super) fn store(state: &AppState) -> Result<&Store, ApiError> {
    state
        .store
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::StoreDisabled, "kesu runs without a store (KESU_NO_STORE)"))
}

/// Who made a change: the API key's name; with `--no-auth`, the
/// `x-kesu-actor` header (1-100 bytes), else `anonymous`.
pub(super) fn actor(req: &HttpRequest) -> String {
    use actix_web::HttpMessage;
    if let Some(p) = req.extensions().get::<crate::auth::Principal>() {
        return p.name.clone();
    }
    req.headers()
        .get("x-kesu-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .unwrap_or("anonymous")
        .to_string()
}

/// The scope of a caller's idempotency keys: the API key's name
/// (`anonymous` with `--no-auth`, where every caller shares one scope).
pub(super) fn actor_scope(req: &HttpRequest) -> String {
    use actix_web::HttpMessage;
    req.extensions().get::<crate::auth::Principal>().map(|p| p.name.clone()).unwrap_or_else(|| "anonymous".into())
}

/// Queue filters (all optional; all given must hold).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Filters {
    /// Comma-separated statuses, or `all`. Default: the open queue, `new,in_review`.
    #[param(
        pattern = "^(all|(new|in_review|confirmed|false_positive|resolved)(,(new|in_review|confirmed|false_positive|resolved))*)$"
    )]
    pub status: Option<String>,
    /// Items raising this flag, e.g. `litigation`.
    #[param(value_type = Option<kesu_core::flags::Flag>)]
    pub flag: Option<String>,
    /// Items whose highest flag severity is at least this (0-3; 0: any).
    #[param(minimum = 0, maximum = 3)]
    pub min_severity: Option<u8>,
    pub category: Option<String>,
    /// `P1`..`P4`.
    pub priority: Option<String>,
    pub route: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Received before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Substring of the (masked) text.
    pub q: Option<String>,
}

/// One page of the queue.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page (`rank.arrival.id`, as the store writes it).
    #[param(pattern = "^-?[0-9]{1,18}\\.-?[0-9]{1,18}\\..+$")]
    pub after: Option<String>,
}

/// The export's file format.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportFormat {
    /// `jsonl` (default: one item per line) or `csv`.
    #[param(pattern = "^(jsonl|csv)$")]
    pub format: Option<String>,
}

/// The false-positive list's format.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TermsFormat {
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

fn ms(at: &str, name: &str) -> Result<i64, ApiError> {
    OffsetDateTime::parse(at, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("{name}={at:?} is not RFC 3339: {e}")))
}

impl Filters {
    fn filter(&self) -> Result<Filter, ApiError> {
        let status = match self.status.as_deref() {
            None => vec![Status::New, Status::InReview],
            Some("all") => vec![],
            Some(s) => s
                .split(',')
                .map(|x| x.parse::<Status>())
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?,
        };
        if let Some(f) = &self.flag {
            f.parse::<kesu_core::flags::Flag>().map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?;
        }
        if self.min_severity.is_some_and(|v| v > 3) {
            return Err(ApiError::new(ErrorCode::InvalidQuery, "min_severity must be 0-3"));
        }
        Ok(Filter {
            status,
            flag: self.flag.clone(),
            min_severity: self.min_severity,
            category: self.category.clone(),
            priority: self.priority.clone(),
            route: self.route.clone(),
            from_ms: self.from.as_deref().map(|t| ms(t, "from")).transpose()?,
            to_ms: self.to.as_deref().map(|t| ms(t, "to")).transpose()?,
            q: self.q.clone().filter(|q| !q.is_empty()),
        })
    }
}

/// Split a query string into the pairs named in `names` and the rest (raw, still encoded).
fn split_query<'a>(qs: &'a str, names: &[&str]) -> (String, String) {
    let (mine, rest): (Vec<&'a str>, Vec<&'a str>) =
        qs.split('&').filter(|p| !p.is_empty()).partition(|p| names.iter().any(|n| p.split('=').next() == Some(*n)));
    (mine.join("&"), rest.join("&"))
}

/// Parse a query string into `T`; any failure is 422 `invalid_query`.
pub(super) fn parse_query<T: serde::de::DeserializeOwned>(qs: &str) -> Result<T, ApiError> {
    web::Query::<T>::from_query(qs)
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))
}

/// The review queue: stored items by priority (P1 first) then age, filtered, a page at a time.
#[utoipa::path(get, path = "/v1/reviews", tag = "reviews", params(Filters, PageQuery),
    responses((status = 200, body = Page), (status = 422, description = "Bad filter or cursor", body = ErrorBody), (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (page, filters) = split_query(req.query_string(), &["limit", "after"]);
    let p: PageQuery = parse_query(&page)?;
    let q: Filters = parse_query(&filters)?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit must be 1-500"));
    }
    let page = store(&state)?.list(&q.filter()?, p.after.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One stored item (its `version` is also the `ETag`).
#[utoipa::path(get, path = "/v1/reviews/{id}", tag = "reviews", params(("id" = String, Path, description = "kesu's item id")),
    responses((status = 200, body = Item), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let item = store(&state)?.get(&path).await?;
    Ok(HttpResponse::Ok().insert_header((header::ETAG, format!("\"{}\"", item.version))).json(item))
}

/// Longest review `note` or `assignee`, in chars.
pub const MAX_NOTE_CHARS: usize = 2000;

/// A reviewer's change: status, assignee, note — applied only at the given version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": 1, "status": "confirmed", "note": "真实的监管投诉威胁"}))]
pub struct PatchIn {
    /// The version you read (or send `If-Match: "<version>"`).
    #[serde(default, deserialize_with = "super::types::integral_opt")]
    pub version: Option<i64>,
    pub status: Option<Status>,
    /// Empty string clears.
    pub assignee: Option<String>,
    /// Empty string clears.
    pub note: Option<String>,
}

/// Move an item's status (new → in_review → confirmed / false_positive / resolved;
/// reopen to in_review), assign it, note it. A stale version gets 409.
#[utoipa::path(patch, path = "/v1/reviews/{id}", tag = "reviews", request_body = PatchIn, params(("id" = String, Path, description = "kesu's item id")),
    responses(
        (status = 200, description = "The item after the change", body = Item),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The item changed since `version` (`version_conflict`: reload and retry), or its status does not allow the move (`invalid_transition`)", body = ErrorBody),
        (status = 422, description = "No version given, or a field of the wrong type", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p: PatchIn = read_json(&req, body, state.settings.max_body_bytes).await?;
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"').parse::<i64>());
    let version = match (p.version, if_match) {
        (Some(v), _) => v,
        (None, Some(Ok(v))) => v,
        _ => {
            return Err(ApiError::new(
                ErrorCode::MissingVersion,
                "send the item's `version` (or If-Match) to change it",
            ))
        }
    };
    for (name, v) in [("assignee", &p.assignee), ("note", &p.note)] {
        if v.as_ref().is_some_and(|v| v.chars().count() > MAX_NOTE_CHARS) {
            return Err(ApiError::new(
                ErrorCode::FieldTooLong,
                format!("{name} is longer than {MAX_NOTE_CHARS} chars"),
            ));
        }
    }
    let who = actor(&req);
    // Notes are stored, so they are masked like texts.
    let note = p.note.map(|n| if state.settings.store_mask_pii { kesu_core::text::pii::mask(&n).text } else { n });
    let item =
        store(&state)?.update(&path, version, &Patch { status: p.status, assignee: p.assignee, note }, &who).await?;
    tracing::info!(item = %item.id, version = item.version, status = item.status.as_str(), actor = %who, "review item changed");
    Ok(HttpResponse::Ok().insert_header((header::ETAG, format!("\"{}\"", item.version))).json(item))
}

/// The item's audit log: every change, who, when, what, oldest first.
#[utoipa::path(get, path = "/v1/reviews/{id}/history", tag = "reviews", params(("id" = String, Path, description = "kesu's item id")),
    responses((status = 200, body = [Change]), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn history(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(store(&state)?.history(&path).await?))
}

const EXPORT_COLUMNS: [&str; 16] = [
    "id",
    "received_at",
    "priority",
    "route",
    "status",
    "category",
    "escalation",
    "flags",
    "max_severity",
    "caller_id",
    "channel",
    "customer_ref",
    "assignee",
    "note",
    "version",
    "text",
];

fn csv_row(i: &Item) -> Vec<String> {
    vec![
        i.id.clone(),
        i.received_at.clone(),
        i.priority.clone(),
        i.route.clone(),
        i.status.as_str().into(),
        i.category.clone(),
        i.escalation.to_string(),
        i.flags.join(","),
        i.max_severity.to_string(),
        i.caller_id.clone().unwrap_or_default(),
        i.channel.clone().unwrap_or_default(),
        i.customer_ref.clone().unwrap_or_default(),
        i.assignee.clone().unwrap_or_default(),
        i.note.clone().unwrap_or_default(),
        i.version.to_string(),
        i.text.clone(),
    ]
}

/// A cell a spreadsheet would read as a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'` (OWASP's advice
/// against CSV injection); every other cell is written as it is.
pub(crate) fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_bytes(rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        let _ = w.write_record(r.iter().map(|c| csv_cell(c).into_owned()));
    }
    w.into_inner().unwrap_or_default()
}

/// Export the items matching the filters (same as the queue; default all
/// statuses here), streamed page by page: `format=jsonl` (one item per line,
/// default) or `csv` (flattened columns).
#[utoipa::path(get, path = "/v1/reviews/export", tag = "reviews", params(Filters, ExportFormat),
    responses((status = 200, description = "JSON lines (`format=jsonl`) or CSV (`format=csv`), streamed", content(
        (String = "application/x-ndjson"), (String = "text/csv"))), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // `format` is the export's own parameter; the rest are the queue's filters.
    let (format, filters) = split_query(req.query_string(), &["format"]);
    let format: ExportFormat = parse_query(&format)?;
    let mut q: Filters = parse_query(&filters)?;
    if q.status.is_none() {
        q.status = Some("all".into());
    }
    let csv = match format.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(f) => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("format {f:?}: jsonl or csv"))),
    };
    let filter = q.filter()?;
    let store = store(&state)?.clone();
    // the first page is read before answering, so a dead store is a clean 503
    let first = store.list(&filter, None, 500).await?;
    let head = csv.then(|| csv_bytes([EXPORT_COLUMNS.iter().map(|c| c.to_string()).collect()]));
    // State: the next page to write (`Err`: reading it failed), the CSV header.
    type Next = Option<Result<Page, String>>;
    let body =
        stream::unfold((Some(Ok(first)) as Next, head, store, filter), move |(page, head, store, filter)| async move {
            if let Some(h) = head {
                return Some((Ok::<_, actix_web::Error>(web::Bytes::from(h)), (page, None, store, filter)));
            }
            let page = match page? {
                Ok(p) => p,
                // A failure mid-stream aborts the transfer (no final chunk), so the
                // client sees a broken download, never a short file that looks whole.
                Err(e) => {
                    return Some((
                        Err(ApiError::internal(format!("export stopped: {e}")).into()),
                        (None, None, store, filter),
                    ))
                }
            };
            let bytes = if csv {
                csv_bytes(page.items.iter().map(csv_row))
            } else {
                page.items
                    .iter()
                    .flat_map(|i| {
                        let mut l = serde_json::to_vec(i).unwrap_or_default();
                        l.push(b'\n');
                        l
                    })
                    .collect()
            };
            let next: Next = match &page.next {
                Some(c) => Some(store.list(&filter, Some(c), 500).await.map_err(|e| {
                    tracing::error!(error = %e, "export stopped");
                    e.to_string()
                })),
                None => None,
            };
            Some((Ok(web::Bytes::from(bytes)), (next, None, store, filter)))
        });
    let (ct, name) = if csv {
        ("text/csv; charset=utf-8", "kesu-reviews.csv")
    } else {
        ("application/x-ndjson", "kesu-reviews.jsonl")
    };
    Ok(HttpResponse::Ok()
        .content_type(ct)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .streaming(body))
}

/// False-positive marks per lexicon term (items marked `false_positive` with a
/// hit of the term), most frequent first: feedback for `lexicons/legal_risk.tsv`.
/// `format=csv` for a spreadsheet.
#[utoipa::path(get, path = "/v1/reviews/false-positive-terms", tag = "reviews", params(TermsFormat),
    responses((status = 200, description = "The terms (`format=json`) or a CSV table (`format=csv`)", content(
        ([TermCount] = "application/json"), (String = "text/csv"))), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn false_positive_terms(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q: TermsFormat = parse_query(req.query_string())?;
    let terms = store(&state)?.false_positive_terms().await?;
    Ok(match q.format.as_deref() {
        Some("csv") => HttpResponse::Ok().content_type("text/csv; charset=utf-8").body(csv_bytes(
            std::iter::once(vec!["term".to_string(), "flag".into(), "items".into(), "negated".into()]).chain(
                terms.iter().map(|t| vec![t.term.clone(), t.flag.clone(), t.items.to_string(), t.negated.to_string()]),
            ),
        )),
        None | Some("json") => HttpResponse::Ok().json(terms),
        Some(f) => return Err(ApiError::new(ErrorCode::InvalidQuery, format!("format {f:?}: json or csv"))),
    })
}

/// The review console: the queue by priority then age, filters, flagged spans
/// highlighted (negated hits struck through), keyboard marking, the audit trail.
/// A static page; its data calls need a `reviewer` key.
#[utoipa::path(get, path = "/review", tag = "reviews", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn console() -> HttpResponse {
    super::pages::REVIEW.respond()
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        let cases = [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+8613812345678", "'+8613812345678"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("我要起诉=你们", "我要起诉=你们"),
            ("3", "3"),
            ("", ""),
        ];
        for (cell, want) in cases {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
    }
}
