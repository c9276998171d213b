//! Autoscaling of the processor Deployment: a CPU HorizontalPodAutoscaler, or a KEDA
//! ScaledObject on consumer-group lag.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};

use super::processor::{self, Source, consumer_group, replica_bounds};
use super::thirdparty::{
    AuthenticationRef, ScaleTargetRef, ScaleTrigger, ScaledObject, ScaledObjectSpec,
    SecretTargetRef, TriggerAuthentication, TriggerAuthenticationSpec,
};
use crate::crd::{SaslMechanism, StreamAnalysis};
use crate::labels::{Component, child_meta};

/// autoscaling/v2 HPA on average CPU utilization.
pub fn hpa(sa: &StreamAnalysis, source: &Source) -> HorizontalPodAutoscaler {
    let (min, max) = replica_bounds(sa, source.partitions);
    HorizontalPodAutoscaler {
        metadata: child_meta(sa, Component::Processor, processor::name(sa)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: processor::name(sa),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(sa.spec.autoscaling.target_cpu_utilization),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        },
        status: None,
    }
}

/// Name of the KEDA TriggerAuthentication.
pub fn trigger_authentication_name(sa: &StreamAnalysis) -> String {
    format!("{}-kafka", processor::name(sa))
}

/// KEDA ScaledObject with the Kafka lag trigger on the consumer group.
pub fn scaled_object(sa: &StreamAnalysis, source: &Source) -> ScaledObject {
    let (min, max) = replica_bounds(sa, source.partitions);
    let kafka = &source.kafka;
    let mut metadata = BTreeMap::from([
        (
            "bootstrapServers".to_string(),
            kafka.bootstrap_servers.join(","),
        ),
        ("consumerGroup".to_string(), consumer_group(sa)),
        ("topic".to_string(), kafka.topic.clone()),
        (
            "lagThreshold".to_string(),
            sa.spec.autoscaling.lag_threshold.to_string(),
        ),
        // A new group has no committed offsets; count lag from the end like the processor.
        ("offsetResetPolicy".to_string(), "latest".to_string()),
    ]);
    if let Some(sasl) = &kafka.sasl {
        let mech = match sasl.mechanism {
            SaslMechanism::Plain => "plaintext",
            SaslMechanism::ScramSha256 => "scram_sha256",
            SaslMechanism::ScramSha512 => "scram_sha512",
        };
        metadata.insert("sasl".into(), mech.into());
    }
    if kafka.tls.is_some() {
        metadata.insert("tls".into(), "enable".into());
    }
    let authentication_ref = trigger_authentication(sa, source).map(|_| AuthenticationRef {
        name: trigger_authentication_name(sa),
    });
    let mut so = ScaledObject::new(
        &processor::name(sa),
        ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: processor::name(sa),
            },
            polling_interval: Some(15),
            cooldown_period: Some(300),
            min_replica_count: min,
            max_replica_count: max,
            triggers: vec![ScaleTrigger {
                type_: "kafka".into(),
                metadata,
                authentication_ref,
            }],
        },
    );
    so.metadata = child_meta(sa, Component::Processor, processor::name(sa));
    so
}

/// TriggerAuthentication handing KEDA the same Secret-held credentials the processors use;
/// `None` when the Kafka connection needs none.
pub fn trigger_authentication(
    sa: &StreamAnalysis,
    source: &Source,
) -> Option<TriggerAuthentication> {
    let kafka = &source.kafka;
    let mut refs = Vec::new();
    let r = |parameter: &str, name: &str, key: &str| SecretTargetRef {
        parameter: parameter.into(),
        name: name.into(),
        key: key.into(),
    };
    if let Some(sasl) = &kafka.sasl {
        refs.push(r("username", &sasl.secret_name, &sasl.username_key));
        refs.push(r("password", &sasl.secret_name, &sasl.password_key));
    }
    if let Some(tls) = &kafka.tls {
        refs.push(r("ca", &tls.secret_name, &tls.ca_key));
        if let (Some(cert), Some(key)) = (&tls.cert_key, &tls.key_key) {
            refs.push(r("cert", &tls.secret_name, cert));
            refs.push(r("key", &tls.secret_name, key));
        }
    }
    if refs.is_empty() {
        return None;
    }
    let mut ta = TriggerAuthentication::new(
        &trigger_authentication_name(sa),
        TriggerAuthenticationSpec {
            secret_target_ref: refs,
        },
    );
    ta.metadata = child_meta(sa, Component::Processor, trigger_authentication_name(sa));
    Some(ta)
}
