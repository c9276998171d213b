//! Logging: human-readable on a terminal, JSON in a cluster (or when asked).

use std::io::IsTerminal;

/// Log format asked for by `NETSTREAM_LOG_FORMAT` (or a binary's `--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON in a pod (`KUBERNETES_SERVICE_HOST` set) or when stderr is not a terminal.
    #[default]
    Auto,
    Json,
    Text,
}

impl Format {
    /// `json`, `text` (or `plain`), case-insensitive; anything else is [`Format::Auto`].
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "text" | "plain" => Format::Text,
            _ => Format::Auto,
        }
    }

    /// From `NETSTREAM_LOG_FORMAT`; unset is [`Format::Auto`].
    pub fn from_env() -> Self {
        std::env::var("NETSTREAM_LOG_FORMAT")
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    /// Whether to log JSON, given whether we run in a pod and whether stderr is a terminal.
    pub fn use_json(self, in_pod: bool, is_tty: bool) -> bool {
        match self {
            Format::Json => true,
            Format::Text => false,
            Format::Auto => in_pod || !is_tty,
        }
    }
}

/// [`init_with`] the format from `NETSTREAM_LOG_FORMAT` and filter `info`.
pub fn init() {
    init_with(Format::from_env(), "info");
}

/// Installs the global subscriber on stderr. Filter with `RUST_LOG`; `default_filter` (an
/// `EnvFilter` directive such as `info,kube=warn`) applies when it is unset or invalid.
pub fn init_with(format: Format, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let json = format.use_json(
        std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        std::io::stderr().is_terminal(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: ignore the error.
    let _ = if json {
        // The current span is the last of "spans" already: don't repeat it.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn parses_case_insensitively_unknown_is_auto() {
        assert_eq!(Format::parse("json"), Format::Json);
        assert_eq!(Format::parse("JSON"), Format::Json);
        assert_eq!(Format::parse("text"), Format::Text);
        assert_eq!(Format::parse("plain"), Format::Text);
        assert_eq!(Format::parse("auto"), Format::Auto);
        assert_eq!(Format::parse("yaml"), Format::Auto);
    }

    #[test]
    fn json_in_a_pod_or_without_terminal_unless_overridden() {
        assert!(Format::Auto.use_json(false, false), "no TTY");
        assert!(
            Format::Auto.use_json(true, true),
            "in a pod, even with a TTY"
        );
        assert!(!Format::Auto.use_json(false, true), "on a terminal");
        assert!(Format::Json.use_json(false, true), "forced");
        assert!(!Format::Text.use_json(true, false), "forced");
    }
}
