//! The repository's files and the Python tools of `scripts/requirements-dev.txt` (installed into
//! `.venv` by `scripts/dev-stack install`), for the deployment tests. Included with
//! `#[path = "common/tools.rs"] mod tools;` so those tests do not build the AWS harness.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A file of the repository, as text.
pub fn read(relative: &str) -> String {
    let path = Path::new(REPO).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A program of the project's venv, installing the venv first if needed (once per test
/// binary; `scripts/dev-stack install` is a no-op when it is up to date).
pub fn venv_bin(tool: &str) -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let status = Command::new(Path::new(REPO).join("scripts/dev-stack"))
            .arg("install")
            .status()
            .expect("scripts/dev-stack runs");
        assert!(status.success(), "scripts/dev-stack install failed");
    });
    Path::new(REPO).join(".venv/bin").join(tool)
}

/// Runs a command to completion: (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
