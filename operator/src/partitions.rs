//! Partition counts from Kafka itself: rdkafka metadata with the StreamAnalysis' own Kafka
//! settings and credentials (read from the referenced Secrets), bounded in time and cached.
//!
//! The count caps `maxReplicas` (consumers beyond the partition count sit idle) and fills
//! `status.partitions`. A failure is reported as a condition (the processors still roll out)
//! and keeps the last known count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use netstream_runtime::kafka_config;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::context::PartitionSource;
use crate::crd::KafkaSpec;
use crate::kafka::security_protocol;

/// How long one metadata request may take (connect included).
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a count is reused; a topic's partitions change rarely and only upwards.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// How long a failure is reused before Kafka is asked again (below the 60 s recheck).
pub const FAILURE_TTL: Duration = Duration::from_secs(30);

/// Namespace, brokers, topic and the credential Secrets' names.
type Key = (String, String, String, Option<String>, Option<String>);
/// When a lookup was made and what it gave.
type Entry = (Instant, Result<i32, String>);

/// [`PartitionSource`] asking the brokers.
pub struct KafkaPartitions {
    client: Client,
    timeout: Duration,
    cache: Mutex<HashMap<Key, Entry>>,
}

impl KafkaPartitions {
    /// A source that reads credentials through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            timeout: METADATA_TIMEOUT,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Same, with another metadata timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn lookup(&self, namespace: &str, kafka: &KafkaSpec) -> Result<i32, String> {
        let config = self.client_config(namespace, kafka).await?;
        let topic = kafka.topic.clone();
        let timeout = self.timeout;
        let brokers = kafka.bootstrap_servers.join(",");
        // librdkafka's metadata call blocks; keep it off the reconcile runtime's threads.
        let task =
            tokio::task::spawn_blocking(move || metadata_partitions(&config, &topic, timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(2), task).await {
            Ok(Ok(r)) => r.map_err(|e| {
                format!(
                    "reading the partitions of topic {:?} from {brokers}: {e}",
                    kafka.topic
                )
            }),
            Ok(Err(e)) => Err(format!("metadata task failed: {e}")),
            Err(_) => Err(format!(
                "reading the partitions of topic {:?} from {brokers} timed out after {timeout:?}; check the brokers and the NetworkPolicies between the operator and Kafka",
                kafka.topic
            )),
        }
    }

    /// The client settings a processor would use, with credentials inline instead of files.
    async fn client_config(
        &self,
        namespace: &str,
        kafka: &KafkaSpec,
    ) -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new();
        for (k, v) in &kafka.properties {
            if kafka_config::applies_to_consumer(k) {
                c.set(k, v);
            }
        }
        c.set("bootstrap.servers", kafka.bootstrap_servers.join(","))
            .set("security.protocol", security_protocol(kafka))
            .set("allow.auto.create.topics", "false")
            .set("socket.timeout.ms", self.timeout.as_millis().to_string())
            .set("log.connection.close", "false");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        if let Some(tls) = &kafka.tls {
            let s = read_secret(&secrets, namespace, &tls.secret_name).await?;
            c.set(
                "ssl.ca.pem",
                key(&s, namespace, &tls.secret_name, &tls.ca_key)?,
            );
            if let (Some(cert), Some(k)) = (&tls.cert_key, &tls.key_key) {
                c.set(
                    "ssl.certificate.pem",
                    key(&s, namespace, &tls.secret_name, cert)?,
                );
                c.set("ssl.key.pem", key(&s, namespace, &tls.secret_name, k)?);
            }
        }
        if let Some(sasl) = &kafka.sasl {
            let s = read_secret(&secrets, namespace, &sasl.secret_name).await?;
            c.set("sasl.mechanisms", sasl.mechanism.as_str())
                .set(
                    "sasl.username",
                    key(&s, namespace, &sasl.secret_name, &sasl.username_key)?,
                )
                .set(
                    "sasl.password",
                    key(&s, namespace, &sasl.secret_name, &sasl.password_key)?,
                );
        }
        Ok(c)
    }
}

impl PartitionSource for KafkaPartitions {
    fn partitions<'a>(
        &'a self,
        namespace: &'a str,
        kafka: &'a KafkaSpec,
    ) -> BoxFuture<'a, Result<Option<i32>, String>> {
        Box::pin(async move {
            let key: Key = (
                namespace.to_string(),
                kafka.bootstrap_servers.join(","),
                kafka.topic.clone(),
                kafka.tls.as_ref().map(|t| t.secret_name.clone()),
                kafka.sasl.as_ref().map(|s| s.secret_name.clone()),
            );
            {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((at, r)) = cache.get(&key) {
                    let ttl = if r.is_ok() { CACHE_TTL } else { FAILURE_TTL };
                    if at.elapsed() < ttl {
                        return r.clone().map(Some);
                    }
                }
            }
            let r = self.lookup(namespace, kafka).await;
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, (Instant::now(), r.clone()));
            r.map(Some)
        })
    }
}

async fn read_secret(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, String> {
    match crate::reconcile::get_opt(api, name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(format!("Secret {namespace}/{name} does not exist")),
        Err(e) => Err(format!("reading Secret {namespace}/{name}: {e}")),
    }
}

fn key(secret: &Secret, namespace: &str, name: &str, key: &str) -> Result<String, String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key}"))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("Secret {namespace}/{name} key {key} is not UTF-8 text"))
}

/// librdkafka logs every failed connection attempt; the failure reaches the user as a
/// condition, so its log lines go to debug.
struct QuietContext;

impl rdkafka::consumer::ConsumerContext for QuietContext {}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(
            ?level,
            facility = fac,
            detail = log_message,
            "librdkafka (metadata)"
        );
    }
}

/// Partition count of `topic`, or why it is not known.
pub fn metadata_partitions(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<i32, String> {
    let consumer: BaseConsumer<QuietContext> = config
        .create_with_context(QuietContext)
        .map_err(|e| format!("invalid Kafka client settings: {e}"))?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("the brokers returned no metadata for topic {topic:?}"))?;
    if let Some(err) = t.error() {
        return Err(match err {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => format!(
                "topic {topic:?} does not exist; create it (the probes do not create topics)"
            ),
            e => format!("topic {topic:?}: {e:?}"),
        });
    }
    i32::try_from(t.partitions().len()).map_err(|_| "partition count out of range".to_string())
}
