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
/// The operator fills them from the StreamAnalysis' or NetProbe's SASL Secret.
pub const SECRET_ENV: [(&str, &str); 3] = [
    (SASL_USERNAME_ENV, "sasl.username"),
    (SASL_PASSWORD_ENV, "sasl.password"),
    (SSL_KEY_PASSWORD_ENV, "ssl.key.password"),
];
/// Environment variable carrying `sasl.username`.
pub const SASL_USERNAME_ENV: &str = "NETSTREAM_KAFKA_SASL_USERNAME";
/// Environment variable carrying `sasl.password`.
pub const SASL_PASSWORD_ENV: &str = "NETSTREAM_KAFKA_SASL_PASSWORD";
/// Environment variable carrying `ssl.key.password`.
pub const SSL_KEY_PASSWORD_ENV: &str = "NETSTREAM_KAFKA_SSL_KEY_PASSWORD";

/// librdkafka properties that carry credentials: never logged, and never accepted from a
/// custom resource's plain-text `properties` (the operator's CRDs reject them; CRs are
/// readable by far more people than Secrets are).
pub const CREDENTIAL_PROPERTIES: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.certificate.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
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

/// Properties whose values must never be logged: the credentials, and anything named like a
/// password, secret or private key.
pub fn is_secret(key: &str) -> bool {
    CREDENTIAL_PROPERTIES.contains(&key)
        || key.contains("password")
        || key.contains("secret")
        || key.ends_with(".key.pem")
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
    fn every_credential_and_secret_env_property_is_masked() {
        for p in CREDENTIAL_PROPERTIES {
            assert!(is_secret(p), "{p}");
        }
        for (_, p) in SECRET_ENV {
            assert!(is_secret(p) && CREDENTIAL_PROPERTIES.contains(&p), "{p}");
        }
        assert!(!is_secret("bootstrap.servers"));
    }

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
