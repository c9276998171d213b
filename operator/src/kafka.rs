//! How Kafka settings reach the probe and processor pods.
//!
//! Convention (shared with the probe and processor binaries):
//! - brokers and topic are flags (`--brokers`, `--topic`);
//! - non-secret librdkafka settings are repeated `--producer-config k=v` /
//!   `--consumer-config k=v` flags, operator-derived ones first, then `kafka.properties`;
//! - SASL credentials are never put in the pod spec: they arrive as env vars
//!   `NETSTREAM_KAFKA_SASL_USERNAME` / `NETSTREAM_KAFKA_SASL_PASSWORD` via
//!   `valueFrom.secretKeyRef`, which the binaries map to `sasl.username` / `sasl.password`;
//! - TLS material is the referenced Secret mounted read-only at [`TLS_MOUNT_PATH`] with fixed
//!   file names, and `ssl.*.location` flags point at those files.

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};

use netstream_runtime::kafka_config;

use crate::crd::KafkaSpec;

/// Flag of the processor's librdkafka properties.
pub const CONSUMER_CONFIG_FLAG: &str = "--consumer-config";
/// Flag of the probe's librdkafka properties.
pub const PRODUCER_CONFIG_FLAG: &str = "--producer-config";

/// Where the TLS Secret is mounted.
pub const TLS_MOUNT_PATH: &str = "/etc/netstream/kafka-tls";
/// Env vars carrying the SASL credentials (the binaries read them as librdkafka properties).
pub use netstream_runtime::kafka_config::{SASL_PASSWORD_ENV, SASL_USERNAME_ENV};
const TLS_VOLUME: &str = "kafka-tls";
const CA_FILE: &str = "ca.crt";
const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";
/// 0440: readable by owner and the pod's fsGroup only.
const TLS_FILE_MODE: i32 = 0o440;

/// Container wiring derived from a [`KafkaSpec`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KafkaWiring {
    /// Command-line arguments (brokers, topic, client config).
    pub args: Vec<String>,
    /// Environment variables referencing Secrets.
    pub env: Vec<EnvVar>,
    /// Pod volumes.
    pub volumes: Vec<Volume>,
    /// Container volume mounts.
    pub mounts: Vec<VolumeMount>,
}

/// Librdkafka `security.protocol` implied by the TLS/SASL settings.
pub fn security_protocol(kafka: &KafkaSpec) -> &'static str {
    match (kafka.tls.is_some(), kafka.sasl.is_some()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    }
}

/// Builds the wiring; `config_flag` is `--producer-config` or `--consumer-config`.
pub fn wiring(kafka: &KafkaSpec, config_flag: &str) -> KafkaWiring {
    let mut w = KafkaWiring {
        args: vec![
            "--brokers".into(),
            kafka.bootstrap_servers.join(","),
            "--topic".into(),
            kafka.topic.clone(),
        ],
        ..KafkaWiring::default()
    };
    let mut config: Vec<(String, String)> = Vec::new();
    if kafka.tls.is_some() || kafka.sasl.is_some() {
        config.push(("security.protocol".into(), security_protocol(kafka).into()));
    }
    if let Some(sasl) = &kafka.sasl {
        config.push(("sasl.mechanisms".into(), sasl.mechanism.as_str().into()));
        w.env.push(secret_env(
            SASL_USERNAME_ENV,
            &sasl.secret_name,
            &sasl.username_key,
        ));
        w.env.push(secret_env(
            SASL_PASSWORD_ENV,
            &sasl.secret_name,
            &sasl.password_key,
        ));
    }
    if let Some(tls) = &kafka.tls {
        let mut items = vec![key_to_path(&tls.ca_key, CA_FILE)];
        config.push((
            "ssl.ca.location".into(),
            format!("{TLS_MOUNT_PATH}/{CA_FILE}"),
        ));
        if let (Some(cert), Some(key)) = (&tls.cert_key, &tls.key_key) {
            items.push(key_to_path(cert, CERT_FILE));
            items.push(key_to_path(key, KEY_FILE));
            config.push((
                "ssl.certificate.location".into(),
                format!("{TLS_MOUNT_PATH}/{CERT_FILE}"),
            ));
            config.push((
                "ssl.key.location".into(),
                format!("{TLS_MOUNT_PATH}/{KEY_FILE}"),
            ));
        }
        w.volumes.push(Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                items: Some(items),
                default_mode: Some(TLS_FILE_MODE),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        w.mounts.push(VolumeMount {
            name: TLS_VOLUME.into(),
            mount_path: TLS_MOUNT_PATH.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    // User properties last so they can tune (but, by schema, not carry credentials). A
    // consumer is not handed producer-only ones (a probeRef shares the NetProbe's producer
    // settings): librdkafka would warn about each at every processor start.
    let consumer = config_flag == CONSUMER_CONFIG_FLAG;
    config.extend(
        kafka
            .properties
            .iter()
            .filter(|(k, _)| !consumer || kafka_config::applies_to_consumer(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    for (k, v) in config {
        w.args.push(config_flag.to_string());
        w.args.push(format!("{k}={v}"));
    }
    w
}

/// Secrets (name, required keys) the Kafka settings reference.
pub fn referenced_secrets(kafka: &KafkaSpec) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(tls) = &kafka.tls {
        let mut keys = vec![tls.ca_key.clone()];
        keys.extend(tls.cert_key.iter().cloned());
        keys.extend(tls.key_key.iter().cloned());
        out.push((tls.secret_name.clone(), keys));
    }
    if let Some(sasl) = &kafka.sasl {
        let keys = vec![sasl.username_key.clone(), sasl.password_key.clone()];
        match out.iter_mut().find(|(name, _)| *name == sasl.secret_name) {
            Some((_, existing)) => existing.extend(keys),
            None => out.push((sasl.secret_name.clone(), keys)),
        }
    }
    out
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn key_to_path(key: &str, path: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: path.into(),
        mode: None,
        user: None,
    }
}
