//! Hugging Face hub model ids (`owner/name`, optionally `@revision`), resolved offline from
//! the local Hugging Face cache in the layout `huggingface_hub` writes
//! (`models--owner--name/{refs,snapshots,blobs}`), and fetched into that cache through the
//! `hf-hub` crate only when the caller allows downloads.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// The revision an id without `@revision` names.
const DEFAULT_REVISION: &str = "main";

/// A model id on the hub and the revision asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// The repository id (`owner/name`).
    pub id: String,
    /// A branch, tag or commit (`main` when not given).
    pub revision: String,
}

impl HubId {
    /// `owner/name` or `owner/name@revision`, spelt as the hub allows (letters, digits, `-`,
    /// `_`, `.`; neither part starting with `.`); None for anything else.
    pub fn parse(spec: &str) -> Option<HubId> {
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) if !rev.is_empty() && !rev.contains(['\\', '@']) => (id, rev),
            Some(_) => return None,
            None => (spec, DEFAULT_REVISION),
        };
        let (owner, name) = id.split_once('/')?;
        let part = |p: &str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (part(owner) && part(name)).then(|| HubId {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The cache's folder for this model: `models--owner--name`.
    fn folder(&self) -> String {
        format!("models--{}", self.id.replace('/', "--"))
    }
}

/// The hub cache `huggingface_hub` uses: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME").unwrap_or_else(|| {
        var("HOME")
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache")
    });
    cache.join("huggingface").join("hub")
}

/// The snapshot directory of `hub` in `cache`: `refs/REVISION` names the commit (a revision
/// that is itself a commit hash may name the snapshot directly), and the snapshot must hold a
/// config.json. The error names the cache and what was missing in it.
pub fn snapshot(cache: &Path, hub: &HubId) -> Result<PathBuf> {
    let repo = cache.join(hub.folder());
    let missing = |what: String| {
        Error::Hub {
        id: format!("{}@{}", hub.id, hub.revision),
        reason: format!(
            "no such file, and not in the Hugging Face cache {} ({what}); download it with `huggingface-cli download {}` or pass --allow-download",
            cache.display(),
            hub.id
        ),
    }
    };
    let reference = repo.join("refs").join(&hub.revision);
    let commit = match std::fs::read_to_string(&reference) {
        Ok(text) => text.trim().to_string(),
        Err(_) if is_commit(&hub.revision) => hub.revision.clone(),
        Err(_) => {
            return Err(missing(format!(
                "no {}",
                Path::new(&hub.folder())
                    .join("refs")
                    .join(&hub.revision)
                    .display()
            )))
        }
    };
    let dir = repo.join("snapshots").join(&commit);
    if !dir.join("config.json").is_file() {
        return Err(missing(format!(
            "no config.json in {}",
            Path::new(&hub.folder())
                .join("snapshots")
                .join(&commit)
                .display()
        )));
    }
    Ok(dir)
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// The files of a model directory fairlm reads, as named in the hub's file list.
fn wanted(file: &str) -> bool {
    matches!(
        file,
        "config.json"
            | "tokenizer.json"
            | "tokenizer_config.json"
            | "special_tokens_map.json"
            | "generation_config.json"
            | "model.safetensors.index.json"
    ) || (file.ends_with(".safetensors") && !file.contains('/'))
}

/// Fetches the model's configuration, tokenizer and safetensors weights into `cache` through
/// `hf-hub` (its endpoint from `$HF_ENDPOINT`, its token from the cache's `token` file), then
/// returns the snapshot as `snapshot` would. `progress` counts the files fetched.
pub fn download(cache: &Path, hub: &HubId, progress: &dyn Progress) -> Result<PathBuf> {
    let failed = |reason: String| Error::Hub {
        id: format!("{}@{}", hub.id, hub.revision),
        reason: format!("download failed: {reason}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    runtime.block_on(async {
        let mut builder =
            hf_hub::api::tokio::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
                .with_progress(false);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        let api = builder.build().map_err(|e| failed(e.to_string()))?;
        let repo = api.repo(hf_hub::Repo::with_revision(
            hub.id.clone(),
            hf_hub::RepoType::Model,
            hub.revision.clone(),
        ));
        let info = repo.info().await.map_err(|e| failed(e.to_string()))?;
        let files: Vec<&str> = info
            .siblings
            .iter()
            .map(|s| s.rfilename.as_str())
            .filter(|f| wanted(f))
            .collect();
        if !files.contains(&"config.json") {
            return Err(failed("the repository has no config.json".into()));
        }
        progress.message(&format!(
            "fetching {} files of {}@{} into {}",
            files.len(),
            hub.id,
            hub.revision,
            cache.display()
        ));
        let fetched = progress.stage("files", files.len() as u64);
        for file in files {
            repo.get(file)
                .await
                .map_err(|e| failed(format!("{file}: {e}")))?;
            fetched.advance(1);
        }
        Ok(())
    })?;
    snapshot(cache, hub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_the_hub_spells_them() {
        let id = HubId::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(id.id, "HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!(id.revision, "main");
        assert_eq!(HubId::parse("a/b@v1.0").unwrap().revision, "v1.0");
        for bad in [
            "gpt2",
            "a/b/c",
            "./x",
            "/abs/path",
            "a/",
            "a/b@",
            "../b",
            "a b/c",
        ] {
            assert_eq!(HubId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn snapshot_follows_the_ref_and_names_the_cache_when_missing() {
        let cache = std::env::temp_dir().join(format!("fairlm-hub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let hub = HubId::parse("o/m").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let err = snapshot(&cache, &hub).unwrap_err().to_string();
        assert!(err.contains(&cache.display().to_string()), "{err}");
        assert!(err.contains("models--o--m/refs/main"), "{err}");
        let snap = cache.join("models--o--m/snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(cache.join("models--o--m/refs")).unwrap();
        std::fs::write(cache.join("models--o--m/refs/main"), commit).unwrap();
        let err = snapshot(&cache, &hub).unwrap_err().to_string();
        assert!(err.contains("no config.json"), "{err}");
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(snapshot(&cache, &hub).unwrap(), snap);
        let pinned = HubId::parse(&format!("o/m@{commit}")).unwrap();
        assert_eq!(snapshot(&cache, &pinned).unwrap(), snap);
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
