//! API keys and roles.
//!
//! A key is an opaque random string (`kesu_` + 64 hex digits) that the client
//! sends as `Authorization: Bearer <key>` or `X-Api-Key: <key>`. kesu keeps
//! only each key's SHA-256, with a name (the actor in the audit log), its
//! roles and whether it is rate-limited, read from a TOML file
//! (`KESU_API_KEYS_FILE`) and/or the environment (`KESU_API_KEYS`). The file
//! is read at start and again on `POST /admin/reload` and SIGHUP ([`guard`]).
//!
//! The console pages never hold the key in a cookie: they exchange it for a
//! short-lived session ([`session`]), whose `HttpOnly` cookie their fetches,
//! `EventSource` streams and download links carry.
//!
//! Roles and what they open (each route's access is in the route table,
//! `crate::api::routes`):
//! * `intake`: `/v1/classify`, `/v1/flags`, `/v1/segment`;
//! * `agent`: `/v1/conversations/...` (the agent console's calls);
//! * `reviewer`: `/v1/reviews...` (the review console's calls);
//! * `analyst`: `/v1/insights/...` (the insights console's calls; counts
//!   only, no text; rate-limited like `reviewer`);
//! * `admin`: `/admin/...`, `/metrics`, and everything the other roles open.
//!
//! Any valid key opens `/v1/info` and `POST /v1/session`. Open without a key:
//! `/healthz`, `/readyz`, `/openapi.json`, `DELETE /v1/session` and the two
//! console pages (`/console`, `/review`), which are static.
//!
//! Every key (and its sessions) is rate-limited per process ([`limit`]) at
//! the rate of its most generous role, unless its entry says `rate_limit = false`.

pub mod guard;
pub mod limit;
pub mod session;

pub use guard::{Authenticated, Guard};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use limit::Rate;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Intake,
    Agent,
    Reviewer,
    Analyst,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Intake, Role::Agent, Role::Reviewer, Role::Analyst, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Intake => "intake",
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown role {s:?}; one of {}", all.join(", "))
        })
    }
}

/// Who is calling: the key's name and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether this caller may use a route that needs `role` (`admin` may use all).
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }
}

/// One configured key: its name, roles, the hex SHA-256 of the key, and
/// whether it is rate-limited (`rate_limit = false`: never limited, e.g. CI's
/// API fuzzer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    pub roles: Vec<Role>,
    pub sha256: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rate_limit: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

/// A key configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read {file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl KeysError {
    /// The file (or `KESU_API_KEYS entry N`) at fault.
    pub fn file(&self) -> &str {
        match self {
            KeysError::Io { file, .. } | KeysError::Invalid { file, .. } => file,
        }
    }

    /// The 1-based line at fault, when the TOML parser named one.
    pub fn line(&self) -> Option<usize> {
        let KeysError::Invalid { message, .. } = self else { return None };
        let rest = &message[message.find("at line ")? + 8..];
        rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
    }
}

/// One configured key, as kept in memory.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub principal: Principal,
    /// `false`: exempt from the rate limit.
    pub rate_limit: bool,
}

/// Where keys are read from (again on reload).
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

/// How keys are used: the session lifetime and the per-role rate limits.
#[derive(Debug, Clone)]
pub struct Policy {
    pub session_ttl: Duration,
    /// Rate of each role, in [`Role::ALL`] order.
    pub rates: [Rate; 5],
    /// Request body bytes that cost one token more.
    pub bytes_per_token: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from(&crate::settings::AuthSettings::default())
    }
}

impl From<&crate::settings::AuthSettings> for Policy {
    fn from(s: &crate::settings::AuthSettings) -> Policy {
        Policy {
            session_ttl: Duration::from_secs(s.session_ttl_secs),
            rates: [
                s.rate_limit_intake,
                s.rate_limit_agent,
                s.rate_limit_reviewer,
                s.rate_limit_reviewer,
                s.rate_limit_admin,
            ],
            bytes_per_token: s.rate_limit_bytes_per_token.max(1),
        }
    }
}

impl Policy {
    /// The rate of a key: its most generous role's, unlimited when exempt.
    pub fn rate_of(&self, k: &KeyInfo) -> Rate {
        if !k.rate_limit {
            return Rate::UNLIMITED;
        }
        let of = |r: Role| self.rates[Role::ALL.iter().position(|x| *x == r).unwrap_or(0)];
        k.principal.roles.iter().map(|r| of(*r)).reduce(Rate::max).unwrap_or(Rate::UNLIMITED)
    }
}

/// The configured keys, by hash, with where they came from and how they are used.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    by_hash: HashMap<[u8; 32], KeyInfo>,
    source: KeySource,
    policy: Policy,
}

/// The hex SHA-256 of `key` (what the key file stores).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `kesu_` and 64 hex digits (256 bits from the OS RNG).
pub fn generate_key() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("kesu_{}", hex::encode(b))
}

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    let v = hex::decode(h.trim()).ok()?;
    v.try_into().ok()
}

impl Keys {
    /// Keys from the TOML `file` (`[[keys]] name, roles, sha256[, rate_limit]`;
    /// a missing file is no keys) and from `env` (`name:role+role:sha256[:unlimited]`,
    /// separated by `;` or `,`). A malformed entry, an unknown role, a bad hash,
    /// a name given twice or the same key (hash) under two names is an error
    /// naming the source.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Keys, KeysError> {
        let mut entries: Vec<(String, KeyEntry)> = Vec::new();
        if let Some(f) = file {
            let name = f.display().to_string();
            match std::fs::read_to_string(f) {
                Ok(s) => {
                    let kf: KeyFile = toml::from_str(&s)
                        .map_err(|e| KeysError::Invalid { file: name.clone(), message: e.to_string() })?;
                    entries.extend(kf.keys.into_iter().map(|k| (name.clone(), k)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(KeysError::Io { file: name, source }),
            }
        }
        if let Some(env) = env {
            for (i, part) in env.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()).enumerate() {
                let src = format!("KESU_API_KEYS entry {}", i + 1);
                let bits: Vec<&str> = part.split(':').collect();
                let (name, roles, sha, rate_limit) = match bits[..] {
                    [name, roles, sha] => (name, roles, sha, true),
                    [name, roles, sha, "unlimited"] => (name, roles, sha, false),
                    _ => {
                        return Err(KeysError::Invalid {
                            file: src,
                            message: "expected name:role[+role...]:sha256[:unlimited]".into(),
                        })
                    }
                };
                let roles = roles
                    .split('+')
                    .map(Role::from_str)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| KeysError::Invalid { file: src.clone(), message: m })?;
                entries.push((src, KeyEntry { name: name.to_string(), roles, sha256: sha.to_string(), rate_limit }));
            }
        }
        let mut keys = Keys {
            source: KeySource { file: file.map(Path::to_path_buf), env: env.map(str::to_string) },
            ..Keys::default()
        };
        let mut names = std::collections::HashSet::new();
        let mut seen: HashMap<[u8; 32], (String, String)> = HashMap::new();
        for (src, k) in entries {
            let bad = |m: String| KeysError::Invalid { file: src.clone(), message: m };
            if k.name.trim().is_empty() || k.name.len() > 100 {
                return Err(bad("a key needs a name of 1-100 bytes".into()));
            }
            if k.roles.is_empty() {
                return Err(bad(format!("key {:?} has no roles", k.name)));
            }
            let h = parse_hash(&k.sha256)
                .ok_or_else(|| bad(format!("key {:?}: sha256 must be 64 hex digits (see `kesu keys add`)", k.name)))?;
            if !names.insert(k.name.clone()) {
                return Err(bad(format!("key name {:?} given twice", k.name)));
            }
            if let Some((other_src, other)) = seen.get(&h) {
                return Err(bad(format!(
                    "the same key (sha256 {}…) is given twice: as {other:?} ({other_src}) and as {:?} ({src}); give each holder a key of their own",
                    &k.sha256.trim()[..12],
                    k.name
                )));
            }
            seen.insert(h, (src.clone(), k.name.clone()));
            keys.by_hash
                .insert(h, KeyInfo { principal: Principal { name: k.name, roles: k.roles }, rate_limit: k.rate_limit });
        }
        Ok(keys)
    }

    /// The same sources read again, with the same policy.
    pub fn reload(&self) -> Result<Keys, KeysError> {
        let k = Keys::load(self.source.file.as_deref(), self.source.env.as_deref())?;
        Ok(Keys { policy: self.policy.clone(), ..k })
    }

    /// These keys, used as `policy` says.
    pub fn with_policy(mut self, policy: Policy) -> Keys {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The caller holding `key`, if it is a configured key.
    pub fn authenticate(&self, key: &str) -> Option<&Principal> {
        self.by_hash.get(&key_hash(key)).map(|k| &k.principal)
    }

    /// The key with SHA-256 `h`.
    pub fn by_hash(&self, h: &[u8; 32]) -> Option<&KeyInfo> {
        self.by_hash.get(h)
    }

    /// Whether a key named `name` is configured.
    pub fn has_name(&self, name: &str) -> bool {
        self.by_hash.values().any(|k| k.principal.name == name)
    }
}

/// The SHA-256 of a presented key (trimmed).
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

/// Write `contents` to `file` readable by its owner only (0600 on Unix):
/// into a temporary file beside it, synced, then renamed over it (and the
/// folder synced), so a crash leaves the old file or the new one, never half.
pub fn write_private(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "keys".into());
    let mut suffix = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let tmp = dir.join(format!(".{base}.{}.tmp", hex::encode(suffix)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, file)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Append a new key for `name` with `roles` to the TOML `file` (created with
/// its folder if missing; written 0600, atomically). Returns the key, which is
/// shown once and never stored.
pub fn add_key(file: &Path, name: &str, roles: &[Role]) -> Result<String, KeysError> {
    let fname = file.display().to_string();
    let current = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(KeysError::Io { file: fname, source }),
    };
    let mut kf: KeyFile =
        toml::from_str(&current).map_err(|e| KeysError::Invalid { file: fname.clone(), message: e.to_string() })?;
    if kf.keys.iter().any(|k| k.name == name) {
        return Err(KeysError::Invalid { file: fname, message: format!("a key named {name:?} exists already") });
    }
    if roles.is_empty() {
        return Err(KeysError::Invalid { file: fname, message: "give at least one role".into() });
    }
    let key = generate_key();
    kf.keys.push(KeyEntry { name: name.to_string(), roles: roles.to_vec(), sha256: hash_key(&key), rate_limit: true });
    let text = format!(
        "# kesu API keys: SHA-256 of each key, never the key itself.\n# Add one with `kesu keys add --name NAME --role ROLE`.\n# `rate_limit = false` on an entry exempts that key from the rate limit.\n\n{}",
        toml::to_string(&kf).map_err(|e| KeysError::Invalid { file: fname.clone(), message: e.to_string() })?
    );
    write_private(file, text.as_bytes()).map_err(|source| KeysError::Io { file: fname, source })?;
    Ok(key)
}

/// How requests are let in.
#[derive(Debug, Clone)]
pub enum Access {
    /// `--no-auth`: everything open.
    Open,
    /// Keys required as the route table says (no keys: only the open routes).
    Keys(Keys),
}

/// The access the settings ask for. With keys required and none configured,
/// a first admin key is created in the keys file and returned, to be shown
/// once (the file keeps only its hash; see [`announce_first_key`]).
pub fn access(s: &crate::settings::AuthSettings) -> Result<(Access, Option<String>), KeysError> {
    if s.no_auth {
        return Ok((Access::Open, None));
    }
    let policy = Policy::from(s);
    let keys = Keys::load(Some(&s.api_keys_file), s.api_keys.as_deref())?.with_policy(policy.clone());
    if !keys.is_empty() {
        return Ok((Access::Keys(keys), None));
    }
    let key = add_key(&s.api_keys_file, "admin", &[Role::Admin])?;
    let keys = Keys::load(Some(&s.api_keys_file), s.api_keys.as_deref())?.with_policy(policy);
    Ok((Access::Keys(keys), Some(key)))
}

/// The file a first-start admin key is written to when there is no terminal
/// to show it on: `first-admin-key` beside the key file (0600).
pub fn first_key_file(keys_file: &Path) -> PathBuf {
    keys_file.with_file_name("first-admin-key")
}

/// Show a first-start admin key once, never through the log: on the terminal
/// when standard error is one (`tty`), else written to [`first_key_file`]
/// (0600), with only that file's path in the log. Returns that file, if written.
pub fn announce_first_key(key: &str, keys_file: &Path, tty: bool) -> std::io::Result<Option<PathBuf>> {
    if tty {
        eprintln!(
            "\nkesu: no API keys were configured, so an admin key was created in {}:\n\n    {key}\n\nIt is shown only now. Add keys per person and role with `kesu keys add --name NAME --role reviewer`.\n",
            keys_file.display()
        );
        return Ok(None);
    }
    let out = first_key_file(keys_file);
    write_private(
        &out,
        format!(
            "{key}\n# kesu's first admin key (its hash is in {}). Keep it, then delete this file.\n",
            keys_file.display()
        )
        .as_bytes(),
    )?;
    tracing::warn!(
        file = %out.display(),
        keys_file = %keys_file.display(),
        "no API keys were configured: an admin key was created; it is in the file named here (readable by this user only), not in the log: read it, then delete the file"
    );
    Ok(Some(out))
}

/// The key a request presents: `Authorization: Bearer <key>`, else `X-Api-Key`.
/// (Never a cookie: the console pages use a session, [`session`].)
pub fn presented_key(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_env_and_file_authenticate_by_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        let k1 = add_key(&file, "alice", &[Role::Reviewer]).unwrap();
        let stored = std::fs::read_to_string(&file).unwrap();
        assert!(!stored.contains(&k1), "the key itself is never written");
        assert!(stored.contains(&hash_key(&k1)));
        let k2 = generate_key();
        let env = format!("bot:intake+agent:{}", hash_key(&k2));
        let keys = Keys::load(Some(&file), Some(&env)).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.authenticate(&k1).unwrap().name, "alice");
        let bot = keys.authenticate(&k2).unwrap();
        assert!(bot.may(Role::Intake) && bot.may(Role::Agent) && !bot.may(Role::Reviewer));
        assert!(keys.authenticate("kesu_wrong").is_none());
        assert!(keys.authenticate(&hash_key(&k1)).is_none(), "the hash is not a key");
    }

    #[test]
    fn admin_may_everything_others_only_their_role() {
        let admin = Principal { name: "a".into(), roles: vec![Role::Admin] };
        let rev = Principal { name: "r".into(), roles: vec![Role::Reviewer] };
        for r in Role::ALL {
            assert!(admin.may(r));
            assert_eq!(rev.may(r), r == Role::Reviewer);
        }
    }

    #[test]
    fn bad_configuration_is_an_error_naming_the_source() {
        let e = Keys::load(None, Some("x:boss:00")).unwrap_err().to_string();
        assert!(e.contains("KESU_API_KEYS entry 1") && e.contains("unknown role"), "{e}");
        let e = Keys::load(None, Some("x:intake:abc")).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let h = hash_key("k");
        let e = Keys::load(None, Some(&format!("x:intake:{h};x:agent:{}", hash_key("j")))).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "[[keys]]\nname = 'a'\nroles = ['intake']\n").unwrap();
        let e = Keys::load(Some(&f), None).unwrap_err().to_string();
        assert!(e.contains("k.toml") && e.contains("sha256"), "{e}");
        assert!(Keys::load(Some(&dir.path().join("missing.toml")), None).unwrap().is_empty());
    }

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key_never_a_cookie() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(HeaderName::from_static("x-api-key"), HeaderValue::from_static(" k2 "));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        let mut c = HeaderMap::new();
        c.insert(actix_web::http::header::COOKIE, HeaderValue::from_static("a=1; kesu_key=k3; b=2"));
        assert_eq!(presented_key(&c), None, "a key in a cookie is not accepted");
    }

    #[test]
    fn the_same_key_under_two_names_is_refused_naming_both() {
        let h = hash_key("shared");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.toml");
        std::fs::write(
            &f,
            format!("[[keys]]\nname = 'alice'\nroles = ['reviewer']\nsha256 = '{h}'\n[[keys]]\nname = 'bob'\nroles = ['admin']\nsha256 = '{}'\n", h.to_uppercase()),
        )
        .unwrap();
        // (file, env, names the error must contain)
        let cases: Vec<(Option<&Path>, Option<String>, [&str; 2])> = vec![
            (Some(&f), None, ["\"alice\"", "\"bob\""]),
            (
                None,
                Some(format!("a:intake:{h};b:admin:{h}")),
                ["\"a\" (KESU_API_KEYS entry 1)", "\"b\" (KESU_API_KEYS entry 2)"],
            ),
        ];
        for (file, env, names) in cases {
            let e = Keys::load(file, env.as_deref()).unwrap_err().to_string();
            assert!(e.contains("same key") && names.iter().all(|n| e.contains(n)), "{e}");
        }
        // across the file and the environment
        let only_alice = dir.path().join("one.toml");
        std::fs::write(&only_alice, format!("[[keys]]\nname = 'alice'\nroles = ['reviewer']\nsha256 = '{h}'\n"))
            .unwrap();
        let e = Keys::load(Some(&only_alice), Some(&format!("ci:admin:{h}"))).unwrap_err().to_string();
        assert!(e.contains("\"alice\"") && e.contains("\"ci\"") && e.contains("one.toml"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_written_0600_by_rename() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/keys.toml");
        add_key(&file, "a", &[Role::Intake]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        // an existing 0644 file is replaced by a 0600 one, not rewritten in place
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let keep = std::fs::File::open(&file).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = keep.metadata().unwrap().ino();
        add_key(&file, "b", &[Role::Agent]).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), ino, "renamed over, not written in place");
        let keys = Keys::load(Some(&file), None).unwrap();
        assert_eq!(keys.len(), 2);
        // no temporary file is left behind
        let left: Vec<_> =
            std::fs::read_dir(file.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn rate_limit_false_exempts_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.toml");
        let cases = [("", true), ("rate_limit = true\n", true), ("rate_limit = false\n", false)];
        for (line, limited) in cases {
            std::fs::write(
                &f,
                format!("[[keys]]\nname = 'a'\nroles = ['intake']\nsha256 = '{}'\n{line}", hash_key("k")),
            )
            .unwrap();
            let keys = Keys::load(Some(&f), None).unwrap();
            let k = keys.by_hash(&key_hash("k")).unwrap();
            assert_eq!(k.rate_limit, limited, "{line:?}");
            assert_eq!(keys.policy().rate_of(k).is_unlimited(), !limited);
        }
        let keys = Keys::load(None, Some(&format!("ci:admin:{}:unlimited", hash_key("k")))).unwrap();
        assert!(!keys.by_hash(&key_hash("k")).unwrap().rate_limit);
        assert!(Keys::load(None, Some(&format!("ci:admin:{}:fast", hash_key("k")))).is_err());
    }

    #[test]
    fn a_key_gets_its_most_generous_roles_rate() {
        use limit::Rate;
        let p = Policy {
            session_ttl: Duration::from_secs(1),
            rates: [
                Rate::new(50.0, 200.0),
                Rate::new(5.0, 10.0),
                Rate::new(2.0, 20.0),
                Rate::new(1.0, 5.0),
                Rate::UNLIMITED,
            ],
            bytes_per_token: 1,
        };
        let info = |roles: &[Role]| KeyInfo {
            principal: Principal { name: "x".into(), roles: roles.to_vec() },
            rate_limit: true,
        };
        let cases: &[(&[Role], Rate)] = &[
            (&[Role::Intake], Rate::new(50.0, 200.0)),
            (&[Role::Agent, Role::Reviewer], Rate::new(5.0, 20.0)),
            (&[Role::Agent, Role::Admin], Rate::UNLIMITED),
            (&[Role::Analyst], Rate::new(1.0, 5.0)),
        ];
        for (roles, want) in cases {
            assert_eq!(p.rate_of(&info(roles)), *want, "{roles:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn without_a_terminal_the_first_key_goes_to_a_0600_file_not_the_log() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys_file = dir.path().join("keys.toml");
        let out = announce_first_key("kesu_abc", &keys_file, false).unwrap().expect("written to a file");
        assert_eq!(out, dir.path().join("first-admin-key"));
        assert!(std::fs::read_to_string(&out).unwrap().starts_with("kesu_abc\n"));
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(announce_first_key("kesu_abc", &keys_file, true).unwrap(), None);
    }

    #[test]
    fn a_toml_error_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.toml");
        std::fs::write(&f, "[[keys]]\nname = 'a'\nroles = ['intake'\n").unwrap();
        let e = Keys::load(Some(&f), None).unwrap_err();
        assert_eq!(e.file(), f.display().to_string());
        assert_eq!(e.line(), Some(3), "{e}");
    }
}
