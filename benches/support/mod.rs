//! Helpers shared by the load harnesses (`harness = false` benches).
#![allow(dead_code)]

/// A number from the environment, else `default`.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile (0..=1) of ascending `sorted` (nearest rank); NaN when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The service's settings for a load run: the shipped model and word lists, any
/// free port, and queue limits high enough that the run measures latency, not
/// admission refusals.
pub fn load_settings() -> kesu::config::Settings {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = kesu::config::Settings::defaults();
    s.port = 0;
    s.resources.lexicons = root.join("lexicons");
    s.resources.model = root.join("models/kesu.gguf");
    s.max_queued = 4096;
    s.queue_timeout_ms = 600_000;
    s.request_timeout_ms = 600_000;
    s
}
