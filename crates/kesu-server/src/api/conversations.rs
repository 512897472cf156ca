//! Live conversations over HTTP: post a message, read the state, follow the
//! events (Server-Sent Events), end a conversation; and the agent console page.

use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::read_json;
use super::texts::{check_text, run_classify, store_matching};
use super::AppState;
use crate::conversation::registry::Subscription;
use crate::conversation::{rfc3339, Event, Live, OpenError, Recorded, Scored, Speaker, View};

/// The `channel` of stored conversation messages; their caller id is
/// `<conversation id>:<seq>`.
pub const CONVERSATION_CHANNEL: &str = "conversation";

/// Seconds between SSE keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A subscribe that finds every slot taken probes the streams and waits this
/// long before each retry (`None`: the last try).
const PROBE_WAITS_MS: [Option<u64>; 4] = [Some(50), Some(100), Some(250), None];

/// One message of a conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "customer", "text": "已经第三次打电话了，再不解决我就投诉到工信部", "timestamp": "2026-11-23T10:15:00+08:00"}))]
pub struct MessageIn {
    /// `customer` (scored) or `agent` (recorded only).
    pub role: Speaker,
    /// The message text (non-empty, at most `max_text_chars` chars).
    pub text: String,
    /// When the message was sent, RFC 3339 (optional; kept as given, normalised).
    pub timestamp: Option<String>,
}

/// Conversation ids: 1 to 128 chars of `A-Z a-z 0-9 . _ : -`.
fn check_id(id: &str) -> Result<(), ApiError> {
    // `.` and `..` are path segments a client collapses: refused so the document's pattern holds.
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidConversationId,
            "conversation id must be 1-128 chars of A-Z a-z 0-9 . _ : - (not . or ..)",
        ))
    }
}

fn open(state: &AppState, id: &str) -> Result<Arc<Live>, ApiError> {
    state.conversations.open(id).map_err(|e| match e {
        OpenError::Full { .. } => ApiError::new(ErrorCode::TooManyConversations, e.to_string()),
    })
}

/// Add a message to a conversation (opening it if new) and get its tag and the conversation's state.
///
/// Customer messages are classified (emotion tag, category, flags) and update
/// the trend and alerts; agent messages are recorded only. Messages of one
/// conversation are recorded one at a time in arrival order; `seq` numbers
/// them. A message whose request fails (e.g. 503) is not recorded.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "conversations", request_body = MessageIn,
    params(("id" = String, Path, description = "Conversation id: 1-128 chars of A-Z a-z 0-9 . _ : -")),
    responses(
        (status = 200, description = "The recorded message and the conversation state after it", body = Recorded),
        (status = 400, description = "Broken JSON or invalid UTF-8", body = ErrorBody),
        (status = 413, description = "Text or body over its limit", body = ErrorBody),
        (status = 415, description = "Content type is not application/json", body = ErrorBody),
        (status = 422, description = "Empty text, bad role, timestamp or id", body = ErrorBody),
        (status = 503, description = "Overloaded, timed out, model not loaded, or too many live conversations (Retry-After)", body = ErrorBody),
    ))]
pub async fn post_message(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_id(&id)?;
    let m: MessageIn = read_json(&req, body, state.settings.max_body_bytes).await?;
    check_text("text", &m.text, &state.settings)?;
    let timestamp = match &m.timestamp {
        None => None,
        Some(t) => Some(rfc3339(OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
            ApiError::new(ErrorCode::InvalidTimestamp, format!("timestamp {t:?} is not RFC 3339: {e}"))
        })?)),
    };
    if m.role == Speaker::Customer && state.pipeline.model().is_none() {
        return Err(ApiError::not_ready());
    }
    let bytes = crate::conversation::message_bytes(&m.text, timestamp.as_deref());
    if !state.conversations.has_room(bytes) {
        return Err(ApiError::new(
            ErrorCode::TooManyConversations,
            format!(
                "live conversations hold {} bytes of messages; the limit is {}",
                state.conversations.bytes(),
                state.conversations.limits().max_total_bytes
            ),
        ));
    }
    let rules = state.settings.conversations.rules();
    // A conversation closed (expired or deleted) while this request waited for
    // its lock is opened afresh, once.
    for _ in 0..2 {
        let live = open(&state, &id)?;
        let mut conv = live.conversation.lock().await;
        if conv.is_closed() {
            continue;
        }
        let (scored, review_id) = match m.role {
            Speaker::Customer => {
                let c = run_classify(&state, vec![m.text.clone()], vec![], vec![], false).await?.remove(0);
                // Stored by the same rule as classify, before the message is
                // recorded: a store failure (503) leaves no message behind.
                let origin = kesu_store::record::Origin {
                    caller_id: Some(format!("{id}:{}", conv.next_seq())),
                    channel: Some(CONVERSATION_CHANNEL.to_string()),
                    customer_ref: None,
                };
                let review_id = store_matching(&state, vec![(&m.text, &c, origin)]).await?.remove(0);
                (Some(Scored::from(c)), review_id)
            }
            Speaker::Agent => (None, None),
        };
        let mut rec = conv.record(m.role, m.text, timestamp, scored, &rules, OffsetDateTime::now_utc());
        if review_id.is_some() {
            conv.set_review_id(rec.message.seq, review_id.clone());
            rec.message.review_id = review_id;
        }
        live.publish(Event::Message(rec.clone()));
        drop(conv);
        state.metrics.conversation_messages.with_label_values(&[m.role.as_str()]).inc();
        for a in &rec.message.alerts {
            state.metrics.conversation_alerts.with_label_values(&[a.kind.as_str()]).inc();
            tracing::info!(conversation = %kesu_core::text::pii::mask(&id).text, seq = a.seq, kind = ?a.kind, reason = %kesu_core::text::pii::mask(&a.reason).text, "conversation alert");
        }
        return Ok(HttpResponse::Ok().json(rec));
    }
    Err(ApiError::internal(format!("conversation {id:?} closed twice while a message waited")))
}

/// The conversation's state and its kept messages.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = View), (status = 404, description = "No live conversation with this id", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_conversation(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_id(&id)?;
    let live = state.conversations.get(&id).ok_or_else(|| ApiError::unknown_conversation(&id))?;
    let view = live.conversation.lock().await.view();
    Ok(HttpResponse::Ok().json(view))
}

/// End a conversation now: its memory is freed and subscribers get a `closed` event.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Ended"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_conversation(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_id(&id)?;
    if state.conversations.remove(&id) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::unknown_conversation(&id))
    }
}

/// Follow a conversation live (Server-Sent Events; opens the conversation if new).
///
/// The stream starts with a `snapshot` event (the state and kept messages),
/// then one `message` event per recorded message (the same body as the POST
/// answer; the SSE `id` is its `seq`), and ends with a `closed` event when the
/// conversation is deleted or expires. A subscriber that falls more than 64
/// events behind gets a fresh `snapshot`. A `: keep-alive` comment is sent
/// every 15 s. After `KESU_EVENTS_MAX_SECS` (default an hour) the stream
/// ends with a `: reconnect` comment; EventSource reconnects by itself.
#[utoipa::path(get, path = "/v1/conversations/{id}/events", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "text/event-stream of `snapshot`, `message` and `closed` events, each `data` one JSON object", content_type = "text/event-stream", body = Event),
        (status = 422, body = ErrorBody),
        (status = 503, description = "Too many live conversations or subscribers (Retry-After)", body = ErrorBody),
    ))]
pub async fn events(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_id(&id)?;
    let live = open(&state, &id)?;
    let max = state.settings.conversations.max_subscribers;
    // When the slots are full, some may belong to clients that have gone (a
    // reloaded console): probe the streams twice so that those find out and
    // free their slots, then try again once.
    let mut sub = None;
    for wait_ms in PROBE_WAITS_MS {
        let conv = live.conversation.lock().await;
        if let Some(s) = live.subscribe(max) {
            sub = Some((s, conv.view()));
            break;
        }
        drop(conv);
        if let Some(ms) = wait_ms {
            live.probe();
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    let (sub, snapshot) = sub.ok_or_else(|| {
        ApiError::new(ErrorCode::TooManySubscribers, format!("conversation {id:?} already has {max} live subscribers"))
    })?;
    let first = sse(&Event::Snapshot(snapshot));
    let secs = state.settings.conversations.max_stream_secs;
    // 0, or a lifetime past what the clock can hold: never.
    let ends = (secs > 0).then(|| tokio::time::Instant::now().checked_add(Duration::from_secs(secs))).flatten();
    let body =
        stream::once(async move { Ok::<_, actix_web::Error>(first) }).chain(follow(sub, Arc::downgrade(&live), ends));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The events after the snapshot, with keep-alives, until `closed` or `ends`
/// (`KESU_EVENTS_MAX_SECS`: a last `: reconnect` comment, then the end).
fn follow(
    sub: Subscription,
    live: Weak<Live>,
    ends: Option<tokio::time::Instant>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>> {
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    stream::unfold(Some((sub, live, tick)), move |st| async move {
        let (mut sub, live, mut tick) = st?;
        let lifetime = async {
            match ends {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The lifetime first (a stream that always has events still ends);
            // then events: when the conversation is dropped, its last events
            // (`closed`) are still read before the probe channel reports it gone.
            biased;
            () = lifetime => Some((Ok(web::Bytes::from_static(b": reconnect\n\n")), None)),
            r = sub.events.recv() => match r {
                Ok(ev) => {
                    let done = matches!(ev, Event::Closed { .. });
                    let bytes = sse(&ev);
                    Some((Ok(bytes), (!done).then_some((sub, live, tick))))
                }
                Err(RecvError::Lagged(_)) => {
                    let l = live.upgrade()?;
                    let conv = l.conversation.lock().await;
                    // skip what is queued: the snapshot holds it (messages are published under this lock)
                    sub.events = sub.events.resubscribe();
                    let view = conv.view();
                    drop(conv);
                    Some((Ok(sse(&Event::Snapshot(view))), Some((sub, live, tick))))
                }
                Err(RecvError::Closed) => None,
            },
            _ = tick.tick() => Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), Some((sub, live, tick)))),
            r = sub.probe.changed() => match r {
                Ok(()) => Some((Ok(web::Bytes::from_static(b": probe\n\n")), Some((sub, live, tick)))),
                Err(_) => None,
            },
        }
    })
}

/// One SSE frame: `event`, `id` (message seq), one-line JSON `data`.
fn sse(ev: &Event) -> web::Bytes {
    let data =
        serde_json::to_string(ev).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":{:?}}}", e.to_string()));
    let id = match ev {
        Event::Message(r) => format!("id: {}\n", r.message.seq),
        Event::Snapshot(v) => format!("id: {}\n", v.state.messages),
        Event::Closed { .. } => String::new(),
    };
    web::Bytes::from(format!("event: {}\n{id}data: {data}\n\n", ev.name()))
}

/// The agent console: type or paste a conversation, see each customer message
/// tagged by emotion, the trend and the alerts, live.
#[utoipa::path(get, path = "/console", tag = "conversations", responses((status = 200, description = "HTML page", content_type = "text/html")))]
pub async fn console() -> HttpResponse {
    super::pages::CONSOLE.respond()
}
