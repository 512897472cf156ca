//! Per-key rate limits: one token bucket per API key, in this process's memory.
//!
//! A bucket holds at most `burst` tokens and refills at `per_sec` tokens a
//! second. A request costs `1 + body bytes / bytes_per_token` tokens (a
//! request's declared `Content-Length`; a body sent without one is counted as
//! it arrives), so a batch costs what its texts weigh and one key cannot starve
//! the others with a few huge batches. A request is let in when the bucket
//! holds its cost — or, for a request costlier than the whole bucket, when the
//! bucket is full — and then pays its full cost, which may leave the bucket in
//! debt (the following requests wait for the refill). Refused requests cost
//! nothing and are told how long to wait (`Retry-After`).
//!
//! This is a small implementation rather than `governor`: kesu needs variable
//! costs above the burst (a large batch, paid as debt) and buckets that follow
//! the key file when it is reloaded, both awkward there.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A rate: `per_sec` tokens a second, at most `burst` saved up. `per_sec` 0: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate { per_sec: 0.0, burst: 0.0 };

    pub fn new(per_sec: f64, burst: f64) -> Rate {
        Rate { per_sec, burst }
    }

    pub fn is_unlimited(&self) -> bool {
        self.per_sec <= 0.0
    }

    /// The more generous of two rates (unlimited beats any limit).
    pub fn max(self, other: Rate) -> Rate {
        if self.is_unlimited() || other.is_unlimited() {
            return Rate::UNLIMITED;
        }
        Rate { per_sec: self.per_sec.max(other.per_sec), burst: self.burst.max(other.burst) }
    }
}

/// `RATE[:BURST]` (tokens a second, tokens saved up; BURST defaults to 5 × RATE,
/// at least 1), or `0` / `unlimited`.
impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::UNLIMITED);
        }
        let (rate, burst) = match s.split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let num = |v: &str| -> Result<f64, String> {
            v.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| {
                format!("{v:?} is not a number >= 0 (expected RATE[:BURST], e.g. 20:100, or 0 = unlimited)")
            })
        };
        let per_sec = num(rate)?;
        if per_sec == 0.0 {
            return Ok(Rate::UNLIMITED);
        }
        let burst = match burst {
            Some(b) => num(b)?,
            None => (per_sec * 5.0).max(1.0),
        };
        if burst < 1.0 {
            return Err(format!("burst {burst} is below 1: no request could ever pass"));
        }
        Ok(Rate { per_sec, burst })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            f.write_str("0")
        } else {
            write!(f, "{}:{}", self.per_sec, self.burst)
        }
    }
}

/// One key's bucket.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket { tokens: rate.burst, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_sec).min(rate.burst);
        self.at = now;
    }

    /// Take `cost` tokens if the bucket allows it, else how long until it does.
    fn take(&mut self, rate: Rate, cost: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        let need = cost.min(rate.burst);
        if self.tokens + 1e-9 >= need {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - self.tokens) / rate.per_sec))
        }
    }
}

/// The buckets of all keys, by key name.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Let a request of `cost` tokens by key `name` (limited at `rate`) in, or
    /// say how long to wait. Unlimited rates always pass and keep no bucket.
    pub fn check(&self, name: &str, rate: Rate, cost: f64) -> Result<(), Duration> {
        self.check_at(name, rate, cost, Instant::now())
    }

    fn check_at(&self, name: &str, rate: Rate, cost: f64, now: Instant) -> Result<(), Duration> {
        if rate.is_unlimited() {
            return Ok(());
        }
        let mut g = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = g.entry(name.to_string()).or_insert_with(|| Bucket::full(rate, now));
        b.take(rate, cost, now)
    }

    /// Charge `cost` more tokens to `name` (bytes of a body that came without a
    /// `Content-Length`): may leave the bucket in debt, never refuses.
    pub fn charge(&self, name: &str, rate: Rate, cost: f64) {
        if rate.is_unlimited() {
            return;
        }
        let now = Instant::now();
        let mut g = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = g.entry(name.to_string()).or_insert_with(|| Bucket::full(rate, now));
        b.refill(rate, now);
        b.tokens -= cost;
    }

    /// Forget the buckets of keys not in `names` (after a key-file reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| keep(k));
    }

    /// Keys with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cost of a request with a body of `bytes` bytes: 1 + bytes / `bytes_per_token`.
pub fn cost(bytes: u64, bytes_per_token: u64) -> f64 {
    1.0 + bytes as f64 / bytes_per_token.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let cases: &[(&str, Option<Rate>)] = &[
            ("20:100", Some(Rate::new(20.0, 100.0))),
            ("2", Some(Rate::new(2.0, 10.0))),
            ("0.1", Some(Rate::new(0.1, 1.0))),
            (" 5 : 7.5 ", Some(Rate::new(5.0, 7.5))),
            ("0", Some(Rate::UNLIMITED)),
            ("0:50", Some(Rate::UNLIMITED)),
            ("unlimited", Some(Rate::UNLIMITED)),
            ("-1", None),
            ("x", None),
            ("5:0.5", None),
            ("inf", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Rate>().ok(), *want, "{s:?}");
            if let Some(r) = want {
                assert_eq!(r.to_string().parse::<Rate>().unwrap(), *r, "{s:?} round trip");
            }
        }
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_refills_at_its_rate() {
        let l = Limiter::default();
        let r = Rate::new(2.0, 3.0);
        let t0 = Instant::now();
        // (seconds after t0, cost, let in?)
        let steps: &[(f64, f64, bool)] = &[
            (0.0, 1.0, true),
            (0.0, 1.0, true),
            (0.0, 1.0, true),
            (0.0, 1.0, false), // burst spent
            (0.5, 1.0, true),  // 0.5 s at 2/s = 1 token
            (0.5, 1.0, false),
            (2.0, 2.5, true), // 3 tokens back (capped at the burst)
            (2.0, 1.0, false),
            (10.0, 9.0, true),  // costlier than the bucket: passes when full, goes into debt
            (11.0, 1.0, false), // 3 - 9 + 2 = -4
            (13.5, 1.0, true),  // -4 + 5 = 1
        ];
        for (i, (t, cost, ok)) in steps.iter().enumerate() {
            let got = l.check_at("k", r, *cost, t0 + Duration::from_secs_f64(*t));
            assert_eq!(got.is_ok(), *ok, "step {i}: {got:?}");
        }
    }

    #[test]
    fn retry_after_is_the_time_to_the_missing_tokens_and_keys_are_apart() {
        let l = Limiter::default();
        let r = Rate::new(1.0, 2.0);
        let t0 = Instant::now();
        assert!(l.check_at("a", r, 2.0, t0).is_ok());
        let wait = l.check_at("a", r, 1.5, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.5).abs() < 1e-6, "{wait:?}");
        // another key has its own bucket
        assert!(l.check_at("b", r, 2.0, t0).is_ok());
        // unlimited never refuses and keeps no bucket
        for _ in 0..1000 {
            assert!(l.check_at("c", Rate::UNLIMITED, 1e6, t0).is_ok());
        }
        assert_eq!(l.len(), 2);
        l.charge("b", r, 4.0);
        assert!(l.check("b", r, 1.0).is_err(), "a charge leaves the bucket in debt");
        l.retain(|k| k == "a");
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn cost_is_one_plus_the_body_weight() {
        for (bytes, per, want) in [(0, 3000, 1.0), (3000, 3000, 2.0), (30_000, 3000, 11.0), (10, 0, 11.0)] {
            assert_eq!(cost(bytes, per), want, "{bytes} / {per}");
        }
    }

    #[test]
    fn the_more_generous_rate_wins() {
        let a = Rate::new(1.0, 5.0);
        let b = Rate::new(3.0, 2.0);
        assert_eq!(a.max(b), Rate::new(3.0, 5.0));
        assert!(a.max(Rate::UNLIMITED).is_unlimited());
    }
}
