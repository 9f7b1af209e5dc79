//! Checks every model artefact against what its producer recorded before it is used.
//!
//! The converters in `models/` record each file's size and sha256; loading code calls
//! [`verify`] so that a truncated download or a corrupted cache fails with a message naming
//! the file, instead of a panic or garbage deep inside an inference library.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Size and checksum a producer recorded for one file.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Recorded {
    pub size: u64,
    pub sha256: String,
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What `models/fetch.py` recorded for a file it extracted into a cache: it writes
/// `CACHE/stamps/PACKAGE.json` with `files: {"dir/name": {size, sha256}}`. Looks for the record
/// of `path` (`CACHE/dir/name`) in every stamp; `None` when `path` is not a fetched file.
pub fn fetched_record(path: &Path) -> Option<Recorded> {
    let dir = path.parent()?;
    let cache = dir.parent()?;
    let key = format!(
        "{}/{}",
        dir.file_name()?.to_str()?,
        path.file_name()?.to_str()?
    );
    #[derive(Deserialize)]
    struct Stamp {
        files: std::collections::BTreeMap<String, Recorded>,
    }
    for entry in std::fs::read_dir(cache.join("stamps")).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Ok(stamp) = serde_json::from_str::<Stamp>(&text)
            && let Some(rec) = stamp.files.get(&key)
        {
            return Some(rec.clone());
        }
    }
    None
}

/// Fails unless `path` exists with the recorded size and sha256.
pub fn verify(path: &Path, want: &Recorded) -> Result<()> {
    verify_size(path, want)?;
    let got = sha256_file(path)?;
    if got != want.sha256 {
        bail!(
            "{} has sha256 {got} but {} was recorded: the file is corrupted \
             (run `make models` to rebuild it)",
            path.display(),
            want.sha256
        );
    }
    Ok(())
}

/// Fails unless `path` exists with the recorded size (the cheap half of [`verify`]).
pub fn verify_size(path: &Path, want: &Recorded) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{} is missing (run `make models`)", path.display()))?;
    if meta.len() != want.size {
        bail!(
            "{} is {} bytes but {} were recorded: the file is truncated or was replaced \
             (run `make models` to rebuild it)",
            path.display(),
            meta.len(),
            want.size
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("edgevox-artefact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn accepts_the_recorded_file_and_names_a_changed_one() {
        let path = temp_file("a.bin", b"hello");
        let want = Recorded {
            size: 5,
            sha256: sha256_file(&path).unwrap(),
        };
        verify(&path, &want).unwrap();
        assert_eq!(
            want.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );

        std::fs::write(&path, b"hell").unwrap();
        let err = verify(&path, &want).unwrap_err().to_string();
        assert!(err.contains("a.bin") && err.contains("truncated"), "{err}");

        std::fs::write(&path, b"jello").unwrap();
        let err = verify(&path, &want).unwrap_err().to_string();
        assert!(err.contains("corrupted"), "{err}");

        let err = verify(&path.with_extension("nope"), &want)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
