//! Helpers shared by the end-to-end test crates (`e2e.rs`, `campaign_e2e.rs`): the binary under
//! test, scenario paths and throw-away output directories.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `sparksim` binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_sparksim");

/// A scenario by its path under `scenarios/` (tests run in `sim/`, so go through the manifest).
pub fn scenario(rel: &str) -> String {
    format!("{}/../scenarios/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// A directory no other test (or test process) uses, removed when dropped.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory named after the test crate (`suite`), the test (`label`) and the process.
pub fn temp_dir(suite: &str, label: &str) -> TempDir {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sparksim-{suite}-{}-{label}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}
