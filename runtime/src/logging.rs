//! Logging: human-readable on a terminal, JSON in a cluster (or when asked).

use std::io::IsTerminal;

/// `NETSTREAM_LOG_FORMAT=json|text` forces a format; otherwise JSON when running in a pod
/// (`KUBERNETES_SERVICE_HOST` set) or when stderr is not a terminal. Filter with `RUST_LOG`
/// (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match std::env::var("NETSTREAM_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => {
            std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
                || !std::io::stderr().is_terminal()
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: ignore the error.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
