//! The live access state of a running service: the keys in force (swapped
//! whole on reload), the console sessions and the rate-limit buckets, and the
//! one check every request that needs a key goes through.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::HttpMessage;
use futures_util::StreamExt;

use super::limit::{self, Limiter};
use super::session::{self, Sessions};
use super::{presented_key, Access, Keys, KeysError, Principal, Role};
use crate::api::error::{ApiError, ErrorCode};

/// How a request was let in (in its extensions, beside the [`Principal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    /// By an API key (its SHA-256).
    Key([u8; 32]),
    /// By a console session made from the key with this SHA-256.
    Session([u8; 32]),
}

/// Keys, sessions and buckets of a running service.
#[derive(Debug)]
pub struct Guard {
    /// `None`: `--no-auth`, everything open.
    keys: Option<RwLock<Arc<Keys>>>,
    sessions: Sessions,
    limiter: Arc<Limiter>,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard::new(&Access::Keys(Keys::default()))
    }
}

impl Guard {
    pub fn new(access: &Access) -> Guard {
        Guard {
            keys: match access {
                Access::Open => None,
                Access::Keys(k) => Some(RwLock::new(Arc::new(k.clone()))),
            },
            sessions: Sessions::default(),
            limiter: Arc::new(Limiter::default()),
        }
    }

    /// The keys in force (`None` with `--no-auth`).
    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.as_ref().map(|k| k.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// How long a new console session lives.
    pub fn session_ttl(&self) -> Duration {
        self.keys().map(|k| k.policy().session_ttl).unwrap_or_default()
    }

    /// Read the key sources again, without installing them (`None` with
    /// `--no-auth`); see [`Guard::install`].
    pub fn prepare_reload(&self) -> Option<Result<Keys, KeysError>> {
        self.keys().map(|k| k.reload())
    }

    /// Put `keys` in force now: a removed key is refused from the next request
    /// on, and its sessions and bucket are dropped. Returns the sessions ended.
    pub fn install(&self, keys: Keys) -> usize {
        let Some(slot) = &self.keys else { return 0 };
        let keys = Arc::new(keys);
        *slot.write().unwrap_or_else(|p| p.into_inner()) = keys.clone();
        self.limiter.retain(|name| keys.has_name(name));
        self.sessions.retain(|h| keys.by_hash(h).is_some())
    }

    /// Let `req` in if it presents a key (header) or a console session
    /// (cookie) that may use a route needing `need` (`None`: any valid key),
    /// within the key's rate limit; the [`Principal`] and [`Authenticated`]
    /// go into the request's extensions. `--no-auth`: everything passes.
    /// `rate_limited` counts refusals for the rate limit, by key name.
    pub fn check(
        &self,
        req: &mut ServiceRequest,
        need: Option<Role>,
        rate_limited: &prometheus::IntCounterVec,
    ) -> Result<(), ApiError> {
        let Some(keys) = self.keys() else { return Ok(()) };
        let (info, via) = if let Some(key) = presented_key(req.headers()) {
            let h = super::key_hash(key);
            let info = keys.by_hash(&h).ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
            (info, Authenticated::Key(h))
        } else if let Some(token) = session::presented_token(req.headers()) {
            // A console session: honoured only from kesu's own pages.
            if req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
                return Err(ApiError::forbidden("a console session is not honoured on cross-site requests"));
            }
            let h = self.sessions.lookup(&token).ok_or_else(|| {
                ApiError::unauthorized("the console session has expired or was ended: enter the API key again")
            })?;
            let info = keys.by_hash(&h).ok_or_else(|| {
                self.sessions.remove(&token);
                ApiError::unauthorized("the console session's API key is no longer configured")
            })?;
            (info, Authenticated::Session(h))
        } else {
            return Err(ApiError::unauthorized(
                "an API key is required: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
            ));
        };
        let p = &info.principal;
        if let Some(role) = need {
            if !p.may(role) {
                return Err(ApiError::forbidden(format!("key {:?} lacks the `{role}` role this route needs", p.name)));
            }
        }
        let policy = keys.policy();
        let rate = policy.rate_of(info);
        if !rate.is_unlimited() {
            let declared = req
                .headers()
                .get(actix_web::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let cost = limit::cost(declared.unwrap_or(0), policy.bytes_per_token);
            if let Err(wait) = self.limiter.check(&p.name, rate, cost) {
                rate_limited.with_label_values(&[&p.name]).inc();
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let mut e = ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "key {:?} is over its rate limit ({} tokens/s, burst {}; a request costs 1 + 1 per {} body bytes): retry in {secs} s",
                        p.name, rate.per_sec, rate.burst, policy.bytes_per_token
                    ),
                );
                e.retry_after = Some(secs);
                return Err(e);
            }
            if declared.is_none() {
                // A body without Content-Length (chunked): charged as it arrives.
                let (limiter, name, per) = (self.limiter.clone(), p.name.clone(), policy.bytes_per_token as f64);
                let (_, payload) = req.parts_mut();
                let inner = std::mem::replace(payload, actix_web::dev::Payload::None);
                let counted = inner.inspect(move |chunk| {
                    if let Ok(b) = chunk {
                        limiter.charge(&name, rate, b.len() as f64 / per);
                    }
                });
                type Boxed = std::pin::Pin<
                    Box<dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>>>,
                >;
                req.set_payload(actix_web::dev::Payload::from(Box::pin(counted) as Boxed));
            }
        }
        let p: Principal = p.clone();
        req.extensions_mut().insert(p);
        req.extensions_mut().insert(via);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{hash_key, limit::Rate, Policy};
    use actix_web::test::TestRequest;

    fn guard(env: &str, rates: [Rate; 5]) -> Guard {
        let policy = Policy { session_ttl: Duration::from_secs(60), rates, bytes_per_token: 100 };
        Guard::new(&Access::Keys(Keys::load(None, Some(env)).unwrap().with_policy(policy)))
    }

    fn counter() -> prometheus::IntCounterVec {
        prometheus::IntCounterVec::new(prometheus::Opts::new("t", "t"), &["key"]).unwrap()
    }

    #[test]
    fn keys_sessions_and_roles_table() {
        let g =
            guard(&format!("bot:intake:{};rev:reviewer:{}", hash_key("kbot"), hash_key("krev")), [Rate::UNLIMITED; 5]);
        let rev_session = g.sessions().create(crate::auth::key_hash("krev"), Duration::from_secs(60));
        let c = counter();
        // (headers, role needed, expected: Ok(name) or Err(code))
        type Case<'a> = (Vec<(&'a str, String)>, Option<Role>, Result<&'a str, &'a str>);
        let cases: Vec<Case> = vec![
            (vec![], None, Err("unauthorized")),
            (vec![("authorization", "Bearer kbot".into())], Some(Role::Intake), Ok("bot")),
            (vec![("x-api-key", "kbot".into())], None, Ok("bot")),
            (vec![("authorization", "Bearer kbot".into())], Some(Role::Reviewer), Err("forbidden")),
            (vec![("authorization", "Bearer nope".into())], None, Err("unauthorized")),
            (vec![("cookie", format!("kesu_session={rev_session}"))], Some(Role::Reviewer), Ok("rev")),
            (vec![("cookie", format!("kesu_session={rev_session}"))], Some(Role::Intake), Err("forbidden")),
            (vec![("cookie", "kesu_session=0000".into())], None, Err("unauthorized")),
            // the old key cookie is no way in
            (vec![("cookie", "kesu_key=krev".into())], None, Err("unauthorized")),
            (
                vec![("cookie", format!("kesu_session={rev_session}")), ("sec-fetch-site", "cross-site".into())],
                None,
                Err("forbidden"),
            ),
        ];
        for (i, (headers, need, want)) in cases.into_iter().enumerate() {
            let mut t = TestRequest::default();
            for (k, v) in &headers {
                t = t.insert_header((*k, v.as_str()));
            }
            let mut req = t.to_srv_request();
            let got = g.check(&mut req, need, &c);
            match (got, want) {
                (Ok(()), Ok(name)) => assert_eq!(req.extensions().get::<Principal>().unwrap().name, name, "case {i}"),
                (Err(e), Err(code)) => assert_eq!(e.code.as_str(), code, "case {i}: {e}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_removed_key_and_its_sessions_are_refused_at_once() {
        let env = format!("a:agent:{};b:agent:{}", hash_key("ka"), hash_key("kb"));
        let g = guard(&env, [Rate::UNLIMITED; 5]);
        let sa = g.sessions().create(crate::auth::key_hash("ka"), Duration::from_secs(60));
        let sb = g.sessions().create(crate::auth::key_hash("kb"), Duration::from_secs(60));
        let c = counter();
        let check = |h: (&str, String)| {
            let mut req = TestRequest::default().insert_header(h).to_srv_request();
            g.check(&mut req, Some(Role::Agent), &c).map_err(|e| e.code.as_str())
        };
        assert!(check(("authorization", "Bearer ka".into())).is_ok());
        assert!(check(("cookie", format!("kesu_session={sa}"))).is_ok());
        let only_b = Keys::load(None, Some(&format!("b:agent:{}", hash_key("kb")))).unwrap();
        assert_eq!(g.install(only_b.with_policy(g.keys().unwrap().policy().clone())), 1, "a's session ended");
        assert_eq!(check(("authorization", "Bearer ka".into())), Err("unauthorized"));
        assert_eq!(check(("cookie", format!("kesu_session={sa}"))), Err("unauthorized"));
        assert!(check(("cookie", format!("kesu_session={sb}"))).is_ok());
    }

    #[test]
    fn the_rate_limit_is_per_key_cost_based_and_exemptible() {
        let env =
            format!("a:intake:{};b:intake:{};fuzz:intake:{}:unlimited", hash_key("ka"), hash_key("kb"), hash_key("kf"));
        // intake: 0.001 tokens/s (no refill within the test), burst 3
        let g =
            guard(&env, [Rate::new(0.001, 3.0), Rate::UNLIMITED, Rate::UNLIMITED, Rate::UNLIMITED, Rate::UNLIMITED]);
        let c = counter();
        let call = |key: &str, body: usize| {
            let mut req = TestRequest::post()
                .insert_header(("authorization", format!("Bearer {key}")))
                .insert_header(("content-length", body.to_string()))
                .to_srv_request();
            g.check(&mut req, Some(Role::Intake), &c)
        };
        assert!(call("ka", 0).is_ok());
        assert!(call("ka", 100).is_ok(), "costs 2: bucket now 0");
        let e = call("ka", 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.retry_after.unwrap() >= 1);
        assert_eq!(c.with_label_values(&["a"]).get(), 1);
        // b has its own bucket; one request costlier than the bucket passes when it is full
        assert!(call("kb", 10_000).is_ok());
        assert!(call("kb", 0).is_err());
        // the exempt key is never limited
        for _ in 0..50 {
            assert!(call("kf", 100_000).is_ok());
        }
        assert_eq!(c.with_label_values(&["fuzz"]).get(), 0);
    }
}
