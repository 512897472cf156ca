//! Console sessions: the console pages exchange the API key the user enters
//! for a short-lived session, so that the key itself is never put in a cookie.
//!
//! `POST /v1/session` (the key in `Authorization`) answers with an
//! `HttpOnly; SameSite=Strict; Path=/v1` cookie `kesu_session` (`Secure` when
//! the request came over TLS or with `X-Forwarded-Proto: https`) holding a
//! random token; kesu keeps only the token's SHA-256, its expiry and the hash
//! of the key it was made from. The session opens what its key opens, for as
//! long as the key is configured: a key removed from the key file (and
//! reloaded) ends its sessions at once. Sessions expire `KESU_SESSION_TTL_SECS`
//! after they were made (not extended by use); `DELETE /v1/session` ends one
//! now. They live in this process's memory: a restart ends them all, and with
//! several kesu processes behind one address a session is known only to the
//! one that made it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::SET_COOKIE;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Authenticated, Role};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "kesu_session";
/// The cookie's path: every call the console pages make is under it.
pub const COOKIE_PATH: &str = "/v1";
/// Most sessions held at once; beyond that the one expiring first is dropped.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    key_hash: [u8; 32],
    expires: Instant,
}

/// The live sessions, by the SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

/// A new session token: 256 bits from the OS RNG, hex.
fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// A new session for the key with hash `key_hash`, valid for `ttl`: its token.
    pub fn create(&self, key_hash: [u8; 32], ttl: Duration) -> String {
        let token = new_token();
        let now = Instant::now();
        let mut g = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_SESSIONS {
            g.retain(|_, s| s.expires > now);
        }
        if g.len() >= MAX_SESSIONS {
            if let Some(oldest) = g.iter().min_by_key(|(_, s)| s.expires).map(|(h, _)| *h) {
                g.remove(&oldest);
            }
        }
        g.insert(token_hash(&token), Session { key_hash, expires: now + ttl });
        token
    }

    /// The key hash of the live session with `token` (an expired one is removed).
    pub fn lookup(&self, token: &str) -> Option<[u8; 32]> {
        let h = token_hash(token);
        let mut g = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(&h) {
            Some(s) if s.expires > Instant::now() => Some(s.key_hash),
            Some(_) => {
                g.remove(&h);
                None
            }
            None => None,
        }
    }

    /// End the session with `token`; whether there was one.
    pub fn remove(&self, token: &str) -> bool {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner()).remove(&token_hash(token)).is_some()
    }

    /// Keep only the live sessions whose key `keep` accepts (after a key-file
    /// reload: the sessions of removed keys end).
    pub fn retain(&self, keep: impl Fn(&[u8; 32]) -> bool) -> usize {
        let now = Instant::now();
        let mut g = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let before = g.len();
        g.retain(|_, s| s.expires > now && keep(&s.key_hash));
        before - g.len()
    }

    pub fn len(&self) -> usize {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `kesu_session` cookie's value (percent-decoded), if the request has one.
pub fn presented_token(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    headers
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            let (name, value) = c.split_once('=')?;
            (name.trim() == COOKIE).then(|| value.trim().trim_matches('"'))
        })
        .filter(|v| !v.is_empty())
        .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        .next()
}

/// Whether the request came over TLS (directly, or as a proxy says with
/// `Forwarded: proto=https` / `X-Forwarded-Proto: https`).
fn over_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme().eq_ignore_ascii_case("https")
}

/// The `Set-Cookie` value of the session cookie (the token is hex: nothing to encode).
fn cookie(req: &HttpRequest, value: &str, max_age: Duration) -> String {
    let secure = if over_tls(req) { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", max_age.as_secs())
}

/// A session just made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionOut {
    /// The key's name (the actor in the audit log).
    pub name: String,
    /// The key's roles: what the session opens.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// When the session ends (RFC 3339, UTC).
    pub expires_at: String,
    /// Its lifetime in seconds (`KESU_SESSION_TTL_SECS`).
    pub ttl_secs: u64,
}

/// Exchange the API key in `Authorization` (or `X-Api-Key`) for a console
/// session: the answer sets the `kesu_session` cookie (`HttpOnly`,
/// `SameSite=Strict`, `Path=/v1`, `Secure` over TLS), which then opens what the
/// key opens until it expires (`KESU_SESSION_TTL_SECS`), the key is removed
/// from the key file, or `DELETE /v1/session`. The key itself is never put in
/// a cookie; a session cannot make another session. Sessions are held in this
/// process's memory.
#[utoipa::path(post, path = "/v1/session", tag = "ops",
    responses(
        (status = 200, description = "Session made; the `kesu_session` cookie is set", body = SessionOut),
        (status = 401, description = "No API key in the request (a session cookie does not make a session), or an unknown one", body = ErrorBody),
        (status = 422, description = "kesu runs without API keys (`--no-auth`): there is nothing to make a session of", body = ErrorBody),
    ))]
pub async fn create(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(auth) = req.extensions().get::<Authenticated>().cloned() else {
        return Err(ApiError::new(
            crate::api::error::ErrorCode::InvalidRequest,
            "kesu runs without API keys (--no-auth): no session is needed",
        ));
    };
    let Authenticated::Key(key_hash) = auth else {
        return Err(ApiError::unauthorized(
            "a session is made from an API key (`Authorization: Bearer <key>`), not from another session",
        ));
    };
    let p = req.extensions().get::<super::Principal>().cloned().ok_or_else(|| ApiError::internal("no principal"))?;
    let ttl = state.guard.session_ttl();
    let token = state.guard.sessions().create(key_hash, ttl);
    tracing::info!(key = %p.name, ttl_secs = ttl.as_secs(), "console session started");
    let mut r = HttpResponse::Ok();
    r.append_header((SET_COOKIE, cookie(&req, &token, ttl)));
    // A key cookie left by an older console: gone.
    r.append_header((SET_COOKIE, "kesu_key=; Path=/; Max-Age=0; SameSite=Strict"));
    r.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    Ok(r.json(SessionOut {
        name: p.name,
        roles: p.roles,
        expires_at: crate::api::admin::rfc3339(SystemTime::now() + ttl),
        ttl_secs: ttl.as_secs(),
    }))
}

/// End the console session whose cookie the request carries (if any) and clear the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "ops",
    responses((status = 204, description = "Logged out: the session (if any) ended, the cookie cleared")))]
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(t) = presented_token(req.headers()) {
        if state.guard.sessions().remove(&t) {
            tracing::info!("console session ended");
        }
    }
    let mut r = HttpResponse::NoContent();
    r.append_header((SET_COOKIE, cookie(&req, "", Duration::ZERO)));
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderValue, COOKIE as COOKIE_HEADER};

    #[test]
    fn sessions_live_until_their_ttl_or_their_key_goes() {
        let s = Sessions::default();
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let t1 = s.create(k1, Duration::from_secs(60));
        let t2 = s.create(k2, Duration::from_secs(60));
        let gone = s.create(k1, Duration::ZERO);
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 64);
        assert_eq!(s.lookup(&t1), Some(k1));
        assert_eq!(s.lookup(&t2), Some(k2));
        assert_eq!(s.lookup(&gone), None, "expired");
        assert_eq!(s.lookup("nope"), None);
        assert_eq!(s.retain(|k| *k != k2), 1, "k2 revoked");
        assert_eq!(s.lookup(&t2), None);
        assert!(s.remove(&t1) && !s.remove(&t1));
        assert!(s.is_empty());
    }

    #[test]
    fn the_cookie_is_read_by_exact_name_and_decoded() {
        let cases: &[(&str, Option<&str>)] = &[
            ("kesu_session=abc", Some("abc")),
            ("a=1; kesu_session=abc; b=2", Some("abc")),
            ("xkesu_session=abc", None),
            ("kesu_session_old=abc", None),
            ("kesu_session=", None),
            ("kesu_session=a%20b", Some("a b")),
            ("kesu_session=\"q\"", Some("q")),
            ("kesu_key=kesu_secret", None),
        ];
        for (header, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(COOKIE_HEADER, HeaderValue::from_str(header).unwrap());
            assert_eq!(presented_token(&h).as_deref(), *want, "{header:?}");
        }
    }
}
