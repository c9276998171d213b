//! librdkafka client configuration from flags: `k=v` pairs and credentials from the
//! environment (how the operator passes Secret values without putting them on a command line).

use std::collections::BTreeMap;

/// Parses a `key=value` librdkafka property. Used as a clap value parser.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "expected a librdkafka property as key=value (e.g. security.protocol=SASL_SSL), got {s:?}"
        )),
    }
}

/// Environment variables read as librdkafka properties, so Kubernetes Secrets can be mapped in
/// with `valueFrom.secretKeyRef` and never appear in a pod spec's args.
pub const SECRET_ENV: [(&str, &str); 3] = [
    ("NETSTREAM_KAFKA_SASL_USERNAME", "sasl.username"),
    ("NETSTREAM_KAFKA_SASL_PASSWORD", "sasl.password"),
    ("NETSTREAM_KAFKA_SSL_KEY_PASSWORD", "ssl.key.password"),
];

/// librdkafka properties only a producer reads (scope `P` in librdkafka 2.12's
/// CONFIGURATION.md, global and topic-level, less the callbacks that cannot be set as
/// strings). A consumer given one of them logs "is a producer property and will be ignored":
/// the operator leaves them out when it hands a NetProbe's producer settings to the
/// processors (`StreamAnalysis.spec.probeRef`). An operator test checks each entry against
/// librdkafka itself.
pub const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// Whether a consumer reads `key` (it is not in [`PRODUCER_ONLY`]).
pub fn applies_to_consumer(key: &str) -> bool {
    !PRODUCER_ONLY.contains(&key)
}

/// Properties whose values must never be logged.
pub fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".key.pem")
}

/// Merges defaults, then credentials from the environment, then user properties (last wins).
pub fn merge(
    defaults: &[(&str, String)],
    user: &[(String, String)],
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = defaults
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    for (var, prop) in SECRET_ENV {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            out.insert(prop.to_string(), v);
        }
    }
    for (k, v) in user {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The configuration as `k=v` lines with secrets masked, for logs.
pub fn redacted(config: &BTreeMap<String, String>) -> String {
    config
        .iter()
        .map(|(k, v)| {
            if is_secret(k) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_merges() {
        assert_eq!(parse_property("a.b=c=d"), Ok(("a.b".into(), "c=d".into())));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
        let merged = merge(
            &[("acks", "all".into()), ("linger.ms", "5".into())],
            &[("linger.ms".into(), "50".into())],
            |k| (k == "NETSTREAM_KAFKA_SASL_PASSWORD").then(|| "hunter2".to_string()),
        );
        assert_eq!(merged["acks"], "all");
        assert_eq!(merged["linger.ms"], "50");
        assert_eq!(merged["sasl.password"], "hunter2");
        let shown = redacted(&merged);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password=***"));
    }
}
