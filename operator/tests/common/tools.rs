//! Locating the Python validation tools (kubernetes-validate, jsonschema).
//!
//! `NETSTREAM_VENV` names a virtualenv (default `<repo>/.tools/venv`). When the tools are
//! missing the calling test is skipped with a message, unless `NETSTREAM_REQUIRE_TOOLS=1`,
//! in which case it fails.

use std::path::{Path, PathBuf};

use serde_json::Value;
use std::process::Command;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub struct Tools {
    pub python: PathBuf,
    pub kubernetes_validate: PathBuf,
}

/// The tools, or `None` (after printing why) when the test should be skipped.
pub fn tools(test: &str) -> Option<Tools> {
    let venv = std::env::var_os("NETSTREAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools").join("venv"));
    let python = venv.join("bin").join("python");
    let kubernetes_validate = venv.join("bin").join("kubernetes-validate");
    let ok = kubernetes_validate.exists()
        && Command::new(&python)
            .args(["-c", "import jsonschema, yaml"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if ok {
        return Some(Tools {
            python,
            kubernetes_validate,
        });
    }
    let msg = format!(
        "{test}: validation tools not found in {} (need kubernetes-validate, jsonschema, pyyaml; set NETSTREAM_VENV)",
        venv.display()
    );
    if std::env::var("NETSTREAM_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg} and NETSTREAM_REQUIRE_TOOLS=1");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// Runs `schema_check.py` over `(label, schema, instance)` cases; returns its report.
pub fn python_schema_check(python: &Path, cases: &[(String, Value, Value)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cases.json");
    let cases: Vec<Value> = cases
        .iter()
        .map(|(l, s, i)| serde_json::json!({"label": l, "schema": s, "instance": i}))
        .collect();
    std::fs::write(&input, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("schema_check.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&input)
        .output()
        .unwrap();
    (
        out.status.success(),
        netstream_testkit::process::output_text(&out),
    )
}
