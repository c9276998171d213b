//! The operator's logging defaults on top of `netstream_runtime::logging`.

use netstream_runtime::logging::{Format, init_with};

/// kube's per-request and watcher chatter is noise at `info`; `RUST_LOG` overrides this.
pub const DEFAULT_FILTER: &str = "info,kube=warn";

/// Installs logging for `--log-format` / `NETSTREAM_LOG_FORMAT` (`json`, `text`, else auto).
pub fn init(format: &str) {
    init_with(Format::parse(format), DEFAULT_FILTER);
}
