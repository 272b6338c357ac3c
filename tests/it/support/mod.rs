//! Shared test support: real registries, container engines and test environments.
#![allow(dead_code)]

pub mod engine;
pub mod registry;

use std::path::PathBuf;

/// Full path of executable `name` found on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether executable `name` is on `PATH` (tests skip or fail loudly on missing tools).
pub fn tool_available(name: &str) -> bool {
    which(name).is_some()
}

/// Panics with a hint when a tool the harness cannot do without is missing.
pub fn require_tool(name: &str) {
    assert!(
        tool_available(name),
        "required test tool `{name}` is not on PATH; run .ci/install.sh"
    );
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
