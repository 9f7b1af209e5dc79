//! Shared by the integration tests.

use std::path::PathBuf;

/// The models cache the tests read: `$EDGEVOX_CACHE`, else `models/cache` in the checkout.
pub fn cache() -> PathBuf {
    std::env::var_os("EDGEVOX_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/cache"))
}
