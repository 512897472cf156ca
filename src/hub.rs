//! Models from a hub: `--model hf://owner/repo/file.gguf` (or
//! `hf://owner/repo@revision/dir/file.gguf`) is fetched through the `hf-hub`
//! crate into its cache (`HF_HOME`, default `~/.cache/huggingface`) and
//! loaded from there; a file already cached is not fetched again. Any other
//! `--model` is a local path, and then nothing touches the network: offline
//! is the default. `HF_HUB_OFFLINE=1` loads `hf://` models from the cache
//! only; `HF_ENDPOINT` names another hub (a mirror); `HF_TOKEN` is sent when set.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// The scheme of hub model references.
pub const SCHEME: &str = "hf://";

/// A parsed `hf://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `owner/repo`.
    pub repo: String,
    pub revision: String,
    /// The file's path inside the repository.
    pub file: String,
}

/// Parse `hf://owner/repo[@revision]/path/to/file`; `None` when `s` is not
/// an `hf://` reference, an error when it is one but malformed.
pub fn parse(s: &str) -> Option<Result<HubModel, String>> {
    let rest = s.strip_prefix(SCHEME)?;
    let bad = || Err(format!("{s:?}: give hf://owner/repo/file (or hf://owner/repo@revision/dir/file)"));
    let mut parts = rest.splitn(3, '/');
    let (Some(owner), Some(repo), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Some(bad());
    };
    let (repo, revision) = match repo.split_once('@') {
        Some((r, rev)) => (r, rev),
        None => (repo, "main"),
    };
    let ok = |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains(['\\', '?', '#']);
    if !ok(owner) || !ok(repo) || !ok(revision) || file.is_empty() || !file.split('/').all(ok) {
        return Some(bad());
    }
    Some(Ok(HubModel { repo: format!("{owner}/{repo}"), revision: revision.to_string(), file: file.to_string() }))
}

/// The local file to load for `model`: itself, or for an `hf://` reference
/// the cached copy (fetched first unless cached or `HF_HUB_OFFLINE` is set).
pub fn resolve(model: &Path) -> Result<PathBuf, String> {
    let Some(parsed) = model.to_str().and_then(parse) else { return Ok(model.to_path_buf()) };
    let m = parsed?;
    let repo = Repo::with_revision(m.repo.clone(), RepoType::Model, m.revision.clone());
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if let Some(p) = Cache::from_env().repo(repo.clone()).get(&m.file) {
        tracing::info!(model = %model.display(), path = %p.display(), "model from the hub cache");
        return Ok(p);
    }
    if offline {
        return Err(format!("{}: not in the hub cache and HF_HUB_OFFLINE is set", model.display()));
    }
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| format!("{}: hub client: {e}", model.display()))?;
    tracing::info!(model = %model.display(), "fetching the model from the hub");
    let p = api.repo(repo).get(&m.file).map_err(|e| format!("{}: {e}", model.display()))?;
    tracing::info!(path = %p.display(), "model cached");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let ok = |s: &str, repo: &str, rev: &str, file: &str| {
            assert_eq!(
                parse(s).unwrap().unwrap(),
                HubModel { repo: repo.into(), revision: rev.into(), file: file.into() },
                "{s}"
            )
        };
        ok("hf://kesu/models/kesu.gguf", "kesu/models", "main", "kesu.gguf");
        ok("hf://kesu/models@v3/q8/kesu.gguf", "kesu/models", "v3", "q8/kesu.gguf");
        for bad in [
            "hf://",
            "hf://kesu",
            "hf://kesu/models",
            "hf://kesu/models/",
            "hf://kesu/../x.gguf",
            "hf://a/b/c/../d",
            "hf://a/b@/f",
            "hf:///b/f",
        ] {
            assert!(parse(bad).unwrap().is_err(), "{bad}");
        }
        assert!(parse("models/kesu.gguf").is_none());
        assert!(parse("/abs/hf://x").is_none());
        assert_eq!(resolve(Path::new("models/kesu.gguf")).unwrap(), PathBuf::from("models/kesu.gguf"));
    }
}
