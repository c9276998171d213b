//! Log format selection: JSON in a cluster (log collectors parse it), text on a terminal.

/// Whether to log JSON for `NETSTREAM_LOG_FORMAT` / `--log-format` value `format`
/// (`json`, `text`, anything else = auto) when stderr `is_tty`.
pub fn use_json(format: &str, is_tty: bool) -> bool {
    match format.to_ascii_lowercase().as_str() {
        "json" => true,
        "text" | "plain" => false,
        _ => !is_tty,
    }
}

#[cfg(test)]
mod tests {
    use super::use_json;

    #[test]
    fn json_unless_terminal_or_overridden() {
        assert!(use_json("auto", false), "in a cluster (no TTY)");
        assert!(!use_json("auto", true), "on a terminal");
        assert!(use_json("json", true), "forced");
        assert!(use_json("JSON", true));
        assert!(!use_json("text", false));
    }
}
