//! Locating external tools (tansu, prometheus, ...).

use std::path::{Path, PathBuf};

/// The repository root (the workspace this crate lives in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds `name` via env var `env`, then `<repo>/.tools/bin`, then `PATH`.
pub fn find(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let local = repo_root().join(".tools/bin").join(name);
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether missing tools must fail tests instead of skipping them (CI sets this).
pub fn required() -> bool {
    std::env::var("NETSTREAM_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Call when a test cannot run: prints why and returns, or panics when tools are required.
pub fn skip(why: &str) {
    if required() {
        panic!("required for this test: {why} (NETSTREAM_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIPPED: {why}");
}

/// The shared real captures (`../shared/pcaps` beside the repo, or `NETSTREAM_PCAPS`).
/// These are never required: a user's clone does not have them.
pub fn shared_pcaps() -> Option<PathBuf> {
    let dir = std::env::var_os("NETSTREAM_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/pcaps"));
    dir.is_dir().then_some(dir)
}
