//! API keys and roles.
//!
//! A key is an opaque random string (`kesu_` + 64 hex digits) that the client
//! sends as `Authorization: Bearer <key>`, `X-Api-Key: <key>` or (the console
//! pages) a `kesu_key` cookie. kesu keeps
//! only each key's SHA-256, with a name (the actor in the audit log) and its
//! roles, read from a TOML file (`KESU_API_KEYS_FILE`) and/or the environment
//! (`KESU_API_KEYS`).
//!
//! Roles and what they open (each route's access is in the route table,
//! `crate::api::routes`):
//! * `intake`: `/v1/classify`, `/v1/flags`, `/v1/segment`;
//! * `agent`: `/v1/conversations/...` (the agent console's calls);
//! * `reviewer`: `/v1/reviews...` (the review console's calls);
//! * `admin`: `/admin/...`, `/metrics`, and everything the other roles open.
//!
//! Any valid key opens `/v1/info`. Open without a key: `/healthz`, `/readyz`,
//! `/openapi.json` and the two console pages (`/console`, `/review`), which are
//! static and fetch all their data with the key the user enters.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Intake,
    Agent,
    Reviewer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Intake, Role::Agent, Role::Reviewer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Intake => "intake",
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
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

/// One configured key: its name, roles and the hex SHA-256 of the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    pub roles: Vec<Role>,
    pub sha256: String,
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

/// The configured keys, by hash.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    by_hash: HashMap<[u8; 32], Principal>,
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
    /// Keys from the TOML `file` (`[[keys]] name, roles, sha256`; a missing
    /// file is no keys) and from `env` (`name:role+role:sha256`, separated by
    /// `;` or `,`). A malformed entry, an unknown role, a bad hash or a name
    /// given twice is an error naming the source.
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
                let [name, roles, sha] = bits[..] else {
                    return Err(KeysError::Invalid {
                        file: src,
                        message: "expected name:role[+role...]:sha256".into(),
                    });
                };
                let roles = roles
                    .split('+')
                    .map(Role::from_str)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| KeysError::Invalid { file: src.clone(), message: m })?;
                entries.push((src, KeyEntry { name: name.to_string(), roles, sha256: sha.to_string() }));
            }
        }
        let mut keys = Keys::default();
        let mut names = std::collections::HashSet::new();
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
            keys.by_hash.insert(h, Principal { name: k.name, roles: k.roles });
        }
        Ok(keys)
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
        let h: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        self.by_hash.get(&h)
    }
}

/// Append a new key for `name` with `roles` to the TOML `file` (created with
/// its folder if missing). Returns the key, which is shown once and never stored.
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
    kf.keys.push(KeyEntry { name: name.to_string(), roles: roles.to_vec(), sha256: hash_key(&key) });
    let text = format!(
        "# kesu API keys: SHA-256 of each key, never the key itself.\n# Add one with `kesu keys add --name NAME --role ROLE`.\n\n{}",
        toml::to_string(&kf).map_err(|e| KeysError::Invalid { file: fname.clone(), message: e.to_string() })?
    );
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeysError::Io { file: fname.clone(), source })?;
    }
    std::fs::write(file, text).map_err(|source| KeysError::Io { file: fname, source })?;
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
/// once (the file keeps only its hash).
pub fn access(s: &crate::settings::AuthSettings) -> Result<(Access, Option<String>), KeysError> {
    if s.no_auth {
        return Ok((Access::Open, None));
    }
    let keys = Keys::load(Some(&s.api_keys_file), s.api_keys.as_deref())?;
    if !keys.is_empty() {
        return Ok((Access::Keys(keys), None));
    }
    let key = add_key(&s.api_keys_file, "admin", &[Role::Admin])?;
    let keys = Keys::load(Some(&s.api_keys_file), s.api_keys.as_deref())?;
    Ok((Access::Keys(keys), Some(key)))
}

/// The key a request presents: `Authorization: Bearer <key>`, else
/// `X-Api-Key`, else the `kesu_key` cookie (which the two console pages set,
/// `SameSite=Strict`, so that the browser's `EventSource` and download links
/// carry it).
pub fn presented_key(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()) {
        return Some(k);
    }
    headers
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("kesu_key="))
        .find(|k| !k.is_empty())
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
    fn keys_are_read_from_bearer_or_x_api_key() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(HeaderName::from_static("x-api-key"), HeaderValue::from_static(" k2 "));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        let mut c = HeaderMap::new();
        c.insert(actix_web::http::header::COOKIE, HeaderValue::from_static("a=1; kesu_key=k3; b=2"));
        assert_eq!(presented_key(&c), Some("k3"));
    }
}
