//! Reconcilers, the running controllers and leader election against a fake API server
//! (tower-test), plus the RBAC check: the (verb, resource) pairs all these scenarios use must
//! equal what `rbac/clusterrole.yaml` grants.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use netstream_operator::context::{Context, StaticPartitions};
use netstream_operator::crd::*;
use netstream_operator::defaults::Defaults;
use netstream_operator::desired::{probe, processor, rbac};
use netstream_operator::leader::{LeaderElector, LeaseConfig};
use netstream_operator::metrics::Metrics;
use netstream_operator::reconcile::{netprobe as np_rec, streamanalysis as sa_rec};
use serde_json::{Value, json};

use common::api::*;
use common::fake::{Call, Fake};
use common::fixtures::*;

/// Reads the CR back (with the status the reconciler wrote), as the next watch event would.
fn reload_np(fake: &Fake, name: &str) -> NetProbe {
    serde_json::from_value(fake.get(&format!("{NP_BASE}/{name}")).unwrap()).unwrap()
}

fn reload_sa(fake: &Fake, name: &str) -> StreamAnalysis {
    serde_json::from_value(fake.get(&format!("{SA_BASE}/{name}")).unwrap()).unwrap()
}

fn secrets(fake: &Fake, tls_keys: &[&str]) {
    let data = |keys: &[&str]| -> BTreeMap<String, ByteString> {
        keys.iter()
            .map(|k| (k.to_string(), ByteString(b"x".to_vec())))
            .collect()
    };
    for (name, keys) in [
        ("kafka-tls", tls_keys),
        ("kafka-user", &["username", "password"][..]),
    ] {
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            data: Some(data(keys)),
            ..Default::default()
        };
        fake.put(&format!("{SECRET_BASE}/{name}"), v(&s));
    }
}

fn status_body(calls: &[Call]) -> Value {
    calls
        .iter()
        .rev()
        .find(|c| c.path.ends_with("/status"))
        .expect("a status patch")
        .body
        .clone()
        .unwrap()["status"]
        .clone()
}

fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

fn events(calls: &[Call]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| c.body.clone().unwrap())
        .collect()
}

fn assert_ssa(calls: &[Call]) {
    for c in calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.contains("/events"))
    {
        assert!(
            c.content_type.contains("apply-patch"),
            "{} is server-side apply",
            c.path
        );
        assert!(
            c.query.contains("fieldManager=netstream-operator") && c.query.contains("force=true"),
            "{}?{}",
            c.path,
            c.query
        );
    }
}

// ---------------------------------------------------------------- NetProbe scenarios

async fn np_create() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = netprobe("edge", minimal_probe_spec());
    store_np(&fake, &np);
    let action = np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        [
            "PATCH serviceaccounts/edge-probe",
            "PATCH daemonsets/edge-probe",
            "PATCH netprobes/edge/status",
            "POST events"
        ]
    );
    assert_ssa(&calls);
    assert_eq!(
        calls[0].body.clone().unwrap(),
        v(&probe::service_account(&np))
    );
    assert_eq!(
        calls[1].body.clone().unwrap(),
        v(&probe::daemonset(&np, &Defaults::default()))
    );
    let st = status_body(&calls);
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(cond(&st, "Ready")["status"], "False");
    assert_eq!(cond(&st, "Ready")["reason"], "RolloutPending");
    assert_eq!(cond(&st, "Progressing")["status"], "True");
    assert_eq!(cond(&st, "Degraded")["status"], "False");
    let ev = &events(&calls)[0];
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("RolloutPending"))
    );
    assert_eq!(ev["regarding"]["name"], "edge");
    assert_eq!(ev["reportingController"], "netstream-operator");
    assert!(fake.get(&format!("{DS_BASE}/edge-probe")).is_some());
    calls
}

async fn np_ready_from_daemonset_status() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = netprobe("edge", minimal_probe_spec());
    store_np(&fake, &np);
    let mut ds = v(&probe::daemonset(&np, &Defaults::default()));
    ds["metadata"]["generation"] = json!(1);
    ds["status"] = json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberMisscheduled": 0,
        "numberReady": 3, "updatedNumberScheduled": 3, "numberAvailable": 3, "observedGeneration": 1});
    fake.put(&format!("{DS_BASE}/edge-probe"), ds);

    np_rec::reconcile(Arc::new(np), ctx.clone()).await.unwrap();
    let mut calls = fake.take_log();
    let st = status_body(&calls);
    assert_eq!(
        (st["desiredNodes"].as_i64(), st["readyNodes"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(cond(&st, "Ready")["status"], "True");
    assert_eq!(cond(&st, "Ready")["reason"], "AllNodesReady");
    assert_eq!(cond(&st, "Progressing")["reason"], "RolloutComplete");
    assert_eq!(cond(&st, "Degraded")["status"], "False");
    assert_eq!(events(&calls)[0]["type"], "Normal");

    // Next reconcile (triggered by our own status write): identical status, no new Event.
    let np = reload_np(&fake, "edge");
    np_rec::reconcile(Arc::new(np), ctx.clone()).await.unwrap();
    let again = fake.take_log();
    assert_eq!(
        status_body(&again),
        st,
        "stable status (lastTransitionTime kept) so no write loop"
    );
    assert!(events(&again).is_empty(), "no Event without a transition");
    calls.extend(again);
    calls
}

async fn np_update_after_spec_change() -> Vec<Call> {
    let (ctx, fake) = setup();
    let mut np = netprobe("edge", minimal_probe_spec());
    store_np(&fake, &np);
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    let mut calls = fake.take_log();

    np.spec.filter = Some("udp port 4789".into());
    np.spec.interfaces.push("eth1".into());
    np.metadata.generation = Some(2);
    store_np(&fake, &np);
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    let second = fake.take_log();
    let ds = second
        .iter()
        .find(|c| c.path.ends_with("/daemonsets/edge-probe"))
        .unwrap()
        .body
        .clone()
        .unwrap();
    let args = ds["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--filter", "udp port 4789"]),
        "{args:?}"
    );
    assert!(
        args.windows(2).any(|w| w == ["--interface", "eth1"]),
        "{args:?}"
    );
    assert_eq!(
        fake.get(&format!("{DS_BASE}/edge-probe")).unwrap()["metadata"]["generation"],
        2
    );
    assert_eq!(status_body(&second)["observedGeneration"], 2);
    calls.extend(second);
    calls
}

async fn np_deleted_child_restored() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = netprobe("edge", minimal_probe_spec());
    store_np(&fake, &np);
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    let ds_path = format!("{DS_BASE}/edge-probe");
    let first = fake.get(&ds_path).unwrap();
    // The owner reference is what routes the DaemonSet's delete event (owns() watch) back here.
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("NetProbe"), Some("uid-np-edge"), Some(true))
    );
    // kubectl delete daemonset edge-probe; and an edit of the ServiceAccount.
    fake.remove(&ds_path);
    let sa_path = "/api/v1/namespaces/netstream/serviceaccounts/edge-probe";
    let mut sa = fake.get(sa_path).unwrap();
    sa["automountServiceAccountToken"] = json!(true);
    fake.put(sa_path, sa);

    np_rec::reconcile(Arc::new(reload_np(&fake, "edge")), ctx.clone())
        .await
        .unwrap();
    let restored = fake.get(&ds_path).expect("DaemonSet recreated");
    assert_eq!(restored["spec"], first["spec"]);
    assert_eq!(
        fake.get(sa_path).unwrap()["automountServiceAccountToken"],
        false,
        "edit reverted"
    );
    fake.take_log()
}

async fn np_invalid_filter() -> Vec<Call> {
    let (ctx, fake) = setup();
    let mut np = netprobe("edge", minimal_probe_spec());
    store_np(&fake, &np);
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    let good_ds = fake.get(&format!("{DS_BASE}/edge-probe")).unwrap();
    let mut calls = fake.take_log();

    np.spec.filter = Some("tcp prot 80".into());
    np.metadata.generation = Some(2);
    np.status = reload_np(&fake, "edge").status;
    store_np(&fake, &np);
    let action = np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .expect("spec problems are not errors");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let bad = fake.take_log();
    assert_eq!(
        Fake::shorts(&bad),
        ["PATCH netprobes/edge/status", "POST events"],
        "nothing rolled out"
    );
    assert_eq!(
        fake.get(&format!("{DS_BASE}/edge-probe")).unwrap(),
        good_ds,
        "running probes untouched"
    );
    let st = status_body(&bad);
    assert_eq!(cond(&st, "Ready")["reason"], "InvalidFilter");
    assert_eq!(cond(&st, "Degraded")["status"], "True");
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("spec.filter \"tcp prot 80\" does not compile"),
        "{st}"
    );
    assert_eq!(st["observedGeneration"], 2);
    let ev = &events(&bad)[0];
    assert_eq!(
        (ev["type"].as_str(), ev["reason"].as_str()),
        (Some("Warning"), Some("InvalidFilter"))
    );
    assert!(ctx.metrics.render().contains("reason=\"InvalidFilter\""));
    calls.extend(bad);

    // Fixed, then broken again: the repeated InvalidFilter Event is patched as a series.
    np.spec.filter = Some("tcp port 80".into());
    np.status = reload_np(&fake, "edge").status;
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    np.spec.filter = Some("tcp prot 80".into());
    np.status = reload_np(&fake, "edge").status;
    np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    let more = fake.take_log();
    assert!(
        more.iter()
            .any(|c| c.method == "PATCH" && c.path.contains("/events/")),
        "{:?}",
        Fake::shorts(&more)
    );
    calls.extend(more);
    calls
}

async fn np_missing_secret() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = netprobe("full", full_probe_spec());
    store_np(&fake, &np);
    let action = np_rec::reconcile(Arc::new(np.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(60)),
        "Secrets are polled"
    );
    let mut calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        [
            "GET secrets/kafka-tls",
            "PATCH netprobes/full/status",
            "POST events"
        ]
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Ready")["reason"], "SecretNotFound");
    assert!(
        cond(&st, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("Secret netstream/kafka-tls")
    );

    secrets(&fake, &["ca.crt", "tls.crt"]);
    np_rec::reconcile(Arc::new(reload_np(&fake, "full")), ctx.clone())
        .await
        .unwrap();
    let second = fake.take_log();
    let st = status_body(&second);
    assert_eq!(cond(&st, "Ready")["reason"], "SecretKeyMissing");
    assert!(
        cond(&st, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("tls.key"),
        "{st}"
    );
    calls.extend(second);

    secrets(&fake, &["ca.crt", "tls.crt", "tls.key"]);
    np_rec::reconcile(Arc::new(reload_np(&fake, "full")), ctx.clone())
        .await
        .unwrap();
    let third = fake.take_log();
    assert_eq!(
        Fake::shorts(&third)[..4],
        [
            "GET secrets/kafka-tls",
            "GET secrets/kafka-user",
            "PATCH serviceaccounts/full-probe",
            "PATCH daemonsets/full-probe"
        ]
    );
    calls.extend(third);
    calls
}

async fn np_api_errors_retry() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = Arc::new(netprobe("edge", minimal_probe_spec()));
    store_np(&fake, &np);

    fake.fault("PATCH", "/daemonsets/edge-probe", 409);
    let err = np_rec::reconcile(np.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "Conflict");
    assert!(
        err.to_string().contains("applying DaemonSet edge-probe"),
        "{err}"
    );
    assert_eq!(
        np_rec::error_policy(np.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );

    fake.fault("PATCH", "/netprobes/edge/status", 500);
    let err = np_rec::reconcile(np.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "ServerError");
    assert_eq!(
        np_rec::error_policy(np.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10)),
        "backoff grows"
    );

    np_rec::reconcile(np.clone(), ctx.clone())
        .await
        .expect("retry succeeds once the API recovers");
    assert!(fake.get(&format!("{DS_BASE}/edge-probe")).is_some());
    assert_eq!(
        ctx.backoff.fail("netprobe/netstream/edge"),
        Duration::from_secs(5),
        "success resets the backoff"
    );
    let m = ctx.metrics.render();
    assert!(
        m.contains("controller=\"netprobe\",reason=\"Conflict\"} 1")
            && m.contains("reason=\"ServerError\"} 1"),
        "{m}"
    );
    fake.take_log()
}

// ---------------------------------------------------------- StreamAnalysis scenarios

async fn sa_create_hpa() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let sa = analysis("flows", minimal_analysis_spec());
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        [
            "PATCH serviceaccounts/flows-processor",
            "PATCH services/flows-processor-metrics",
            "PATCH configmaps/flows-processor-config",
            "PATCH clusterrolebindings/netstream-processor-reader:netstream:flows",
            "GET clusterrolebindings",
            "GET rolebindings",
            "GET deployments/flows-processor",
            "PATCH deployments/flows-processor",
            "PATCH deployments/flows-processor",
            "GET /apis/keda.sh/v1alpha1",
            "GET /apis/monitoring.coreos.com/v1",
            "PATCH horizontalpodautoscalers/flows-processor",
            "PATCH streamanalyses/flows/status",
            "POST events",
        ]
    );
    assert_ssa(&calls);
    // The second Deployment apply sets only the initial replicas, under its own manager.
    assert_eq!(
        calls[8].body.clone().unwrap()["spec"],
        json!({"replicas": sa.spec.min_replicas})
    );
    assert!(
        calls[8].query.contains(&format!(
            "fieldManager={}",
            sa_rec::INITIAL_REPLICAS_MANAGER
        )),
        "{}",
        calls[8].query
    );
    let src = processor::Source {
        kafka: sa.spec.kafka.clone().unwrap(),
        partitions: None,
    };
    assert_eq!(
        calls[7].body.clone().unwrap(),
        v(&processor::deployment(&sa, &src, &Defaults::default()))
    );
    assert_eq!(
        calls[2].body.clone().unwrap(),
        v(&processor::config_map(&sa))
    );
    assert_eq!(
        calls[3].body.clone().unwrap(),
        v(&rbac::bindings(&sa).cluster[0]),
        "enrichment is on by default: cluster-wide reader binding"
    );
    let st = status_body(&calls);
    assert_eq!(st["topic"], "netstream.packets");
    assert_eq!(st["consumerGroup"], "netstream.netstream.flows");
    assert!(st.get("partitions").is_none(), "partitions unknown");
    assert_eq!(cond(&st, "Ready")["reason"], "NoProcessorsReady");
    calls
}

async fn sa_ready_and_partition_cap() -> Vec<Call> {
    let (client, fake) = Fake::start();
    let ctx = Arc::new(
        Context::new(client, Defaults::default(), Metrics::new().unwrap(), None).with_partitions(
            Arc::new(StaticPartitions(
                [("netstream.packets".to_string(), 3)].into(),
            )),
        ),
    );
    let mut spec = minimal_analysis_spec();
    spec.max_replicas = 12;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    let src = processor::Source {
        kafka: sa.spec.kafka.clone().unwrap(),
        partitions: Some(3),
    };
    let mut dep = v(&processor::deployment(&sa, &src, &Defaults::default()));
    dep["metadata"]["generation"] = json!(1);
    dep["spec"]["replicas"] = json!(2); // set by the HPA, not by us
    dep["status"] = json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 1});
    fake.put(&format!("{DEP_BASE}/flows-processor"), dep);

    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let calls = fake.take_log();
    let hpa = calls
        .iter()
        .find(|c| {
            c.path
                .ends_with("/horizontalpodautoscalers/flows-processor")
        })
        .unwrap()
        .body
        .clone()
        .unwrap();
    assert_eq!(
        hpa["spec"]["maxReplicas"], 3,
        "capped at the partition count"
    );
    assert_eq!(
        fake.get(&format!("{DEP_BASE}/flows-processor")).unwrap()["spec"]["replicas"],
        2,
        "HPA's replicas kept"
    );
    let st = status_body(&calls);
    assert_eq!(
        (
            st["replicas"].as_i64(),
            st["readyReplicas"].as_i64(),
            st["partitions"].as_i64()
        ),
        (Some(2), Some(2), Some(3))
    );
    assert_eq!(cond(&st, "Ready")["reason"], "ProcessorsReady");
    assert_eq!(cond(&st, "Ready")["status"], "True");
    calls
}

async fn sa_probe_ref() -> Vec<Call> {
    let (ctx, fake) = setup();
    let np = netprobe("full", full_probe_spec());
    store_np(&fake, &np);
    secrets(&fake, &["ca.crt", "tls.crt", "tls.key"]);
    let mut spec = minimal_analysis_spec();
    spec.kafka = None;
    spec.probe_ref = Some(ProbeRef {
        name: "full".into(),
    });
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls)[..3],
        [
            "GET netprobes/full",
            "GET secrets/kafka-tls",
            "GET secrets/kafka-user"
        ]
    );
    let dep = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/deployments/flows-processor"))
        .unwrap()
        .body
        .clone()
        .unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["args"][1], "kafka-0:9093,kafka-1:9093",
        "brokers from the NetProbe"
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "kafka-user"
    );
    assert_eq!(status_body(&calls)["topic"], "packets.secure");
    calls
}

async fn sa_probe_ref_missing() -> Vec<Call> {
    let (ctx, fake) = setup();
    let mut spec = minimal_analysis_spec();
    spec.kafka = None;
    spec.probe_ref = Some(ProbeRef {
        name: "ghost".into(),
    });
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        [
            "GET netprobes/ghost",
            "PATCH streamanalyses/flows/status",
            "POST events"
        ]
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Ready")["reason"], "ProbeNotFound");
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("NetProbe netstream/ghost")
    );
    calls
}

async fn sa_keda_not_installed() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let mut spec = minimal_analysis_spec();
    spec.autoscaling.mode = AutoscalingMode::Keda;
    spec.min_replicas = 3;
    spec.max_replicas = 8;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(60)),
        "look for KEDA again soon"
    );
    let calls = fake.take_log();
    let keda_calls: Vec<String> = Fake::shorts(&calls)
        .into_iter()
        .filter(|c| c.contains("scaledobjects") || c.contains("triggerauthentications"))
        .collect();
    assert!(
        keda_calls.is_empty(),
        "KEDA kinds called without KEDA: {keda_calls:?}"
    );
    let dep = fake.get(&format!("{DEP_BASE}/flows-processor"));
    assert!(dep.is_some(), "processors still run");
    assert_eq!(
        dep.unwrap()["spec"]["replicas"],
        json!(3),
        "started at minReplicas, not the API default of 1"
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Degraded")["status"], "True");
    assert_eq!(cond(&st, "Degraded")["reason"], "KedaNotInstalled");
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("install KEDA or use mode: hpa")
    );
    assert!(ctx.metrics.render().contains("reason=\"KedaNotInstalled\""));
    calls
}

async fn sa_switch_hpa_keda_hpa() -> Vec<Call> {
    let (ctx, fake) = setup();
    secrets(&fake, &["ca.crt", "tls.crt", "tls.key"]);
    let mut spec = minimal_analysis_spec();
    spec.kafka = Some(kafka_secure());
    let mut sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    assert!(fake.get(&format!("{HPA_BASE}/flows-processor")).is_some());
    let mut calls = fake.take_log();

    sa.spec.autoscaling.mode = AutoscalingMode::Keda;
    sa.metadata.generation = Some(2);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let to_keda = fake.take_log();
    let shorts = Fake::shorts(&to_keda);
    let pos = |s: &str| {
        shorts
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} not in {shorts:?}"))
    };
    assert!(
        pos("DELETE horizontalpodautoscalers/flows-processor")
            < pos("PATCH scaledobjects/flows-processor"),
        "HPA removed before KEDA takes over"
    );
    assert!(
        pos("PATCH triggerauthentications/flows-processor-kafka")
            < pos("PATCH scaledobjects/flows-processor")
    );
    assert!(fake.get(&format!("{HPA_BASE}/flows-processor")).is_none());
    let so = fake.get(&format!("{SO_BASE}/flows-processor")).unwrap();
    assert_eq!(
        so["spec"]["triggers"][0]["authenticationRef"]["name"],
        "flows-processor-kafka"
    );
    assert_eq!(
        cond(&status_body(&to_keda), "Degraded")["reason"],
        "AsExpected"
    );
    calls.extend(to_keda);

    sa.spec.autoscaling.mode = AutoscalingMode::Hpa;
    sa.metadata.generation = Some(3);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let back = fake.take_log();
    assert!(fake.get(&format!("{SO_BASE}/flows-processor")).is_none());
    assert!(
        fake.get(&format!("{TA_BASE}/flows-processor-kafka"))
            .is_none()
    );
    assert!(fake.get(&format!("{HPA_BASE}/flows-processor")).is_some());
    calls.extend(back);
    calls
}

async fn sa_foreign_objects_untouched() -> Vec<Call> {
    let (ctx, fake) = setup();
    fake.missing_group("monitoring.coreos.com");
    // Same name, not ours (no controller owner reference): must survive.
    let foreign = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "flows-processor", "namespace": NS},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "other"}, "maxReplicas": 2}});
    fake.put(&format!("{HPA_BASE}/flows-processor"), foreign);
    let foreign = fake.get(&format!("{HPA_BASE}/flows-processor")).unwrap();
    let mut spec = minimal_analysis_spec();
    spec.autoscaling.mode = AutoscalingMode::Keda;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let calls = fake.take_log();
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "{:?}",
        Fake::shorts(&calls)
    );
    assert_eq!(
        fake.get(&format!("{HPA_BASE}/flows-processor")).unwrap(),
        foreign
    );
    calls
}

async fn sa_service_monitor() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let mut spec = minimal_analysis_spec();
    spec.service_monitor = Some(ServiceMonitorSpec {
        enabled: true,
        interval: "30s".into(),
        labels: BTreeMap::new(),
    });
    let mut sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let mut calls = fake.take_log();
    assert_eq!(
        cond(&status_body(&calls), "Degraded")["reason"],
        "ServiceMonitorCrdMissing"
    );

    fake.state
        .lock()
        .unwrap()
        .missing_groups
        .remove("monitoring.coreos.com");
    ctx.apis.invalidate(); // as when the discovery TTL has passed
    sa.status = reload_sa(&fake, "flows").status;
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let installed = fake.take_log();
    assert!(fake.get(&format!("{SM_BASE}/flows-processor")).is_some());
    assert_eq!(
        cond(&status_body(&installed), "Degraded")["reason"],
        "AsExpected"
    );
    calls.extend(installed);

    sa.spec.service_monitor = None;
    sa.metadata.generation = Some(2);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let disabled = fake.take_log();
    assert!(
        Fake::shorts(&disabled).contains(&"DELETE servicemonitors/flows-processor".to_string())
    );
    assert!(fake.get(&format!("{SM_BASE}/flows-processor")).is_none());
    calls.extend(disabled);
    calls
}

async fn sa_api_error_retry() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let sa = Arc::new(analysis("flows", minimal_analysis_spec()));
    store_sa(&fake, &sa);
    fake.fault("PATCH", "/deployments/flows-processor", 500);
    let err = sa_rec::reconcile(sa.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "ServerError");
    assert_eq!(
        sa_rec::error_policy(sa.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    fake.fault("PATCH", "/horizontalpodautoscalers/flows-processor", 409);
    assert_eq!(
        sa_rec::reconcile(sa.clone(), ctx.clone())
            .await
            .unwrap_err()
            .metric_reason(),
        "Conflict"
    );
    sa_rec::reconcile(sa.clone(), ctx.clone()).await.unwrap();
    assert!(fake.get(&format!("{HPA_BASE}/flows-processor")).is_some());
    fake.take_log()
}

// ------------------------------------------------------ enrichment RBAC bindings

const CRB_BASE: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

fn rb_path(ns: &str, name: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}")
}

/// Names of the stored bindings (`ClusterRoleBinding name` / `ns/RoleBinding name`).
fn stored_bindings(fake: &Fake) -> BTreeSet<String> {
    let st = fake.state.lock().unwrap();
    st.objects
        .keys()
        .filter_map(|k| {
            let r = common::fake::parse_path(k)?;
            match (r.resource.as_str(), r.namespace) {
                ("clusterrolebindings", _) => r.name,
                ("rolebindings", Some(ns)) => Some(format!("{ns}/{}", r.name?)),
                _ => None,
            }
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pod_spec(fake: &Fake, name: &str) -> Value {
    fake.get(&format!("{DEP_BASE}/{name}")).unwrap()["spec"]["template"]["spec"].clone()
}

/// The config file the processors of Deployment `name` read (from its applied ConfigMap).
fn processor_config(fake: &Fake, name: &str) -> Value {
    let cm = fake.get(&format!("{CM_BASE}/{name}-config")).unwrap();
    serde_yaml::from_str(cm["data"]["processor.yaml"].as_str().unwrap()).unwrap()
}

/// Bindings follow `spec.enrichment` through enabled/cluster-wide/namespaced/disabled, stale
/// ones are deleted, and bindings that are not this StreamAnalysis' are never touched.
async fn sa_enrichment_bindings() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    // Someone else's binding, and the binding of another StreamAnalysis: both must survive.
    fake.put(
        &format!("{CRB_BASE}/foreign"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "foreign"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}),
    );
    let other = analysis("other", minimal_analysis_spec());
    fake.put(
        &format!("{CRB_BASE}/netstream-processor-reader:netstream:other"),
        v(&rbac::bindings(&other).cluster[0]),
    );
    let untouched = set(&["foreign", "netstream-processor-reader:netstream:other"]);

    let mut sa = analysis("flows", minimal_analysis_spec());
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let mut calls = fake.take_log();
    let mut want = untouched.clone();
    want.insert("netstream-processor-reader:netstream:flows".into());
    assert_eq!(stored_bindings(&fake), want, "cluster-wide");
    let crb = fake
        .get(&format!(
            "{CRB_BASE}/netstream-processor-reader:netstream:flows"
        ))
        .unwrap();
    assert_eq!(crb["roleRef"]["name"], "netstream-processor-reader");
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "flows-processor", "namespace": NS}])
    );
    let pod = pod_spec(&fake, "flows-processor");
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "token for the watches"
    );
    let config = processor_config(&fake, "flows-processor");
    assert_eq!(config["enrichment"]["mode"], "kubernetes", "{config}");
    assert!(config["analyses"]["workloads"].is_object(), "{config}");

    // Limited to two namespaces: reader per namespace, nodes cluster-wide.
    sa.spec.enrichment.namespaces = vec!["team-b".into(), "team-a".into()];
    sa.metadata.generation = Some(2);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    let namespaced = fake.take_log();
    let mut want = untouched.clone();
    want.extend([
        "netstream-processor-nodes:netstream:flows".to_string(),
        "team-a/netstream-processor-reader:netstream:flows".to_string(),
        "team-b/netstream-processor-reader:netstream:flows".to_string(),
    ]);
    assert_eq!(stored_bindings(&fake), want, "namespaced");
    assert!(
        Fake::shorts(&namespaced).contains(
            &"DELETE clusterrolebindings/netstream-processor-reader:netstream:flows".into()
        ),
        "the cluster-wide grant is withdrawn"
    );
    let rb = fake
        .get(&rb_path(
            "team-a",
            "netstream-processor-reader:netstream:flows",
        ))
        .unwrap();
    assert_eq!(
        (
            rb["roleRef"]["kind"].as_str(),
            rb["roleRef"]["name"].as_str()
        ),
        (Some("ClusterRole"), Some("netstream-processor-reader"))
    );
    assert_eq!(rb["subjects"][0]["namespace"], NS);
    assert_eq!(
        processor_config(&fake, "flows-processor")["enrichment"]["namespaces"],
        json!(["team-b", "team-a"])
    );
    calls.extend(namespaced);

    // One namespace dropped from the list: its RoleBinding goes.
    sa.spec.enrichment.namespaces = vec!["team-b".into()];
    sa.metadata.generation = Some(3);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    calls.extend(fake.take_log());
    let mut want = untouched.clone();
    want.extend([
        "netstream-processor-nodes:netstream:flows".to_string(),
        "team-b/netstream-processor-reader:netstream:flows".to_string(),
    ]);
    assert_eq!(stored_bindings(&fake), want, "team-a removed");

    // Disabled: no bindings, no token, no enrichment in the config.
    sa.spec.enrichment.enabled = false;
    sa.metadata.generation = Some(4);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    calls.extend(fake.take_log());
    assert_eq!(stored_bindings(&fake), untouched, "disabled");
    let pod = pod_spec(&fake, "flows-processor");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let config = processor_config(&fake, "flows-processor");
    assert!(
        config.get("enrichment").is_none() && config["analyses"].get("workloads").is_none(),
        "{config}"
    );
    calls
}

/// kube-runtime's finalizer: added on first sight (nothing else happens in that pass), and on
/// deletion the bindings are removed before the finalizer is released. A failing cleanup keeps
/// the finalizer (and the object) until a retry succeeds.
async fn sa_finalizer_lifecycle() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let mut spec = minimal_analysis_spec();
    spec.enrichment.namespaces = vec!["team-a".into()];
    let sa = analysis_new("flows", spec);
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let mut calls = fake.take_log();
    assert_eq!(Fake::shorts(&calls), ["PATCH streamanalyses/flows"]);
    assert!(
        calls[0].content_type.contains("json-patch"),
        "{:?}",
        calls[0]
    );
    assert_eq!(
        reload_sa(&fake, "flows").metadata.finalizers,
        Some(vec![sa_rec::FINALIZER.to_string()])
    );

    // The finalizer's own write comes back as a watch event: now the real pass.
    sa_rec::reconcile(Arc::new(reload_sa(&fake, "flows")), ctx.clone())
        .await
        .unwrap();
    calls.extend(fake.take_log());
    assert_eq!(
        stored_bindings(&fake),
        set(&[
            "netstream-processor-nodes:netstream:flows",
            "team-a/netstream-processor-reader:netstream:flows"
        ])
    );

    // kubectl delete: the API server only sets deletionTimestamp while the finalizer is there.
    let mut obj = fake.get(&format!("{SA_BASE}/flows")).unwrap();
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(&format!("{SA_BASE}/flows"), obj);

    fake.fault("DELETE", "/rolebindings/", 500);
    let err = sa_rec::reconcile(Arc::new(reload_sa(&fake, "flows")), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "ServerError");
    assert!(
        err.to_string().contains("deleting RoleBinding team-a/"),
        "{err}"
    );
    assert!(
        reload_sa(&fake, "flows").metadata.finalizers.is_some(),
        "finalizer kept while cleanup fails"
    );
    calls.extend(fake.take_log());

    let action = sa_rec::reconcile(Arc::new(reload_sa(&fake, "flows")), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let cleanup = fake.take_log();
    let shorts = Fake::shorts(&cleanup);
    assert_eq!(
        shorts.last().map(String::as_str),
        Some("PATCH streamanalyses/flows"),
        "finalizer released last: {shorts:?}"
    );
    assert!(
        stored_bindings(&fake).is_empty(),
        "{:?}",
        stored_bindings(&fake)
    );
    assert!(
        fake.get(&format!("{SA_BASE}/flows")).is_none(),
        "the API server deletes the object once its last finalizer is gone"
    );
    assert!(
        !shorts
            .iter()
            .any(|s| s.contains("deployments") || s.contains("status")),
        "nothing is applied during deletion: {shorts:?}"
    );
    calls.extend(cleanup);
    calls
}

/// A subnet label whose IPv6 range has the right shape for the CRD pattern but does not
/// parse blocks the rollout with a condition instead of crash-looping the processors.
async fn sa_invalid_subnet_blocked() -> Vec<Call> {
    let (ctx, fake) = setup();
    let mut spec = minimal_analysis_spec();
    spec.enrichment.subnet_labels = vec![SubnetLabel {
        cidr: "2001:db8:::1/64".into(),
        name: "lab".into(),
    }];
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        ["PATCH streamanalyses/flows/status", "POST events"]
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Ready")["reason"], "InvalidSubnetLabel");
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("2001:db8:::1/64")
    );
    calls
}

/// `spec.analyses` the processors would refuse (workloads without enrichment) blocks the
/// rollout with a condition naming the fix; nothing is applied.
async fn sa_invalid_analyses_blocked() -> Vec<Call> {
    let (ctx, fake) = setup();
    let mut spec = minimal_analysis_spec();
    spec.enrichment.enabled = false;
    spec.analyses = Some(serde_json::from_value(json!({"flows": {}, "workloads": {}})).unwrap());
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = fake.take_log();
    assert_eq!(
        Fake::shorts(&calls),
        ["PATCH streamanalyses/flows/status", "POST events"]
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Ready")["reason"], sa_rec::INVALID_ANALYSES);
    let message = cond(&st, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("spec.enrichment.enabled"), "{message}");
    calls
}

/// A listed namespace that does not exist (the API server 404s the RoleBinding) degrades the
/// StreamAnalysis with a condition; the rest still rolls out and the check repeats.
async fn sa_enrichment_namespace_missing() -> Vec<Call> {
    let (ctx, fake) = setup_bare();
    let mut spec = minimal_analysis_spec();
    spec.enrichment.namespaces = vec!["ghost".into(), "team-a".into()];
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    fake.fault("PATCH", "/namespaces/ghost/rolebindings/", 404);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = fake.take_log();
    assert!(fake.get(&format!("{DEP_BASE}/flows-processor")).is_some());
    assert_eq!(
        stored_bindings(&fake),
        set(&[
            "netstream-processor-nodes:netstream:flows",
            "team-a/netstream-processor-reader:netstream:flows"
        ])
    );
    let st = status_body(&calls);
    assert_eq!(cond(&st, "Degraded")["status"], "True");
    assert_eq!(
        cond(&st, "Degraded")["reason"],
        "EnrichmentNamespaceNotFound"
    );
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("do not exist: ghost;"),
        "{st}"
    );
    calls
}

// ------------------------------------------------------------ leader election

fn elector(client: kube::Client, id: &str) -> LeaderElector {
    LeaderElector::new(
        client,
        LeaseConfig {
            name: "netstream-operator".into(),
            namespace: "ops".into(),
            identity: id.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        },
    )
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/netstream-operator";

async fn leader_election() -> Vec<Call> {
    let (client, fake) = Fake::start();
    let a = elector(client.clone(), "a");
    let b = elector(client.clone(), "b");
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the lease"
    );
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["holderIdentity"], "a");
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b follows while a's lease is fresh"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    assert_eq!(fake.get(LEASE).unwrap()["spec"]["leaseTransitions"], 0);

    // a stops renewing: make its lease stale.
    let mut lease = fake.get(LEASE).unwrap();
    lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    fake.put(LEASE, lease);
    // b races someone else and loses the optimistic-concurrency check.
    fake.fault("PUT", "/leases/netstream-operator", 409);
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "conflict = not leader"
    );
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes over the expired lease"
    );
    let held = fake.get(LEASE).unwrap();
    assert_eq!(
        (
            held["spec"]["holderIdentity"].as_str(),
            held["spec"]["leaseTransitions"].as_i64()
        ),
        (Some("b"), Some(1))
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");

    a.release().await.unwrap();
    assert_eq!(
        fake.get(LEASE).unwrap()["spec"]["holderIdentity"],
        "b",
        "only the holder releases"
    );
    b.release().await.unwrap();
    assert!(
        fake.get(LEASE).unwrap()["spec"]
            .get("holderIdentity")
            .is_none()
    );
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "released lease is taken at once"
    );

    fake.fault("GET", "/leases/netstream-operator", 500);
    assert!(
        a.try_acquire_or_renew().await.is_err(),
        "API errors surface to the caller"
    );
    fake.take_log()
}

// ----------------------------------------------------------- controller wiring

async fn wait_until(fake: &Fake, what: &str, cond: impl Fn(&common::fake::State) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        {
            let st = fake.state.lock().unwrap();
            if cond(&st) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}\n{:?}",
                Fake::shorts(&st.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The real kube-runtime controllers against the fake: they list and watch exactly
/// `controller::WATCHED`, reconcile both CRs into children and status, restore deleted or
/// edited children through `owns()`, follow NetProbe edits through `watches()`, and stop
/// gracefully.
async fn controllers_end_to_end() -> Vec<Call> {
    use futures::FutureExt;
    let (ctx, fake) = setup();
    store_np(&fake, &netprobe("edge", minimal_probe_spec()));
    store_sa(&fake, &analysis("flows", minimal_analysis_spec()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    }
    .shared();
    let optional = netstream_operator::controller::OptionalApis {
        keda: true,
        service_monitor: true,
    };
    let run = tokio::spawn(netstream_operator::controller::run(ctx, optional, shutdown));

    let expected: BTreeSet<(String, String)> = netstream_operator::controller::WATCHED
        .iter()
        .map(|(g, r)| (g.to_string(), r.to_string()))
        .collect();
    let watched = |calls: &[Call]| -> BTreeSet<(String, String)> {
        calls
            .iter()
            .filter(|c| c.method == "GET" && c.query.contains("watch=true"))
            .map(|c| (c.res().group, c.res().resource))
            .collect()
    };
    let done = || {
        let st = fake.state.lock().unwrap();
        let np_ready = st
            .objects
            .get(&format!("{NP_BASE}/edge"))
            .is_some_and(|o| o.get("status").is_some());
        let sa_ready = st
            .objects
            .get(&format!("{SA_BASE}/flows"))
            .is_some_and(|o| o.get("status").is_some());
        np_ready && sa_ready && watched(&st.log) == expected
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "controllers did not converge: {:?}",
            Fake::shorts(&fake.state.lock().unwrap().log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // owns(): a deleted DaemonSet and an edited Deployment are put back.
    fake.remove(&format!("{DS_BASE}/edge-probe"));
    let dep_path = format!("{DEP_BASE}/flows-processor");
    let mut dep = fake.get(&dep_path).unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    fake.put(&dep_path, dep);
    wait_until(
        &fake,
        "deleted DaemonSet restored and edited Deployment reverted",
        |st| {
            st.objects.contains_key(&format!("{DS_BASE}/edge-probe"))
                && st.objects[&dep_path]["spec"]["template"]["spec"]["containers"][0]["image"]
                    != "evil:latest"
        },
    )
    .await;

    // watches(): a StreamAnalysis follows the NetProbe it references.
    let mut by_ref = minimal_analysis_spec();
    by_ref.kafka = None;
    by_ref.probe_ref = Some(ProbeRef {
        name: "edge".into(),
    });
    // Created without the finalizer, as by kubectl: the controller adds it first.
    store_sa(&fake, &analysis_new("byref", by_ref));
    let byref_args = |st: &common::fake::State| -> String {
        st.objects
            .get(&format!("{DEP_BASE}/byref-processor"))
            .map(|d| d["spec"]["template"]["spec"]["containers"][0]["args"].to_string())
            .unwrap_or_default()
    };
    wait_until(&fake, "byref processors use the probe's brokers", |st| {
        byref_args(st).contains("kafka:9092")
    })
    .await;
    let mut np = netprobe("edge", minimal_probe_spec());
    np.spec.kafka.bootstrap_servers = vec!["kafka-new:9092".into()];
    np.metadata.generation = Some(2);
    store_np(&fake, &np);
    wait_until(&fake, "NetProbe edit propagated to DaemonSet and referencing StreamAnalysis", |st| {
        byref_args(st).contains("kafka-new:9092")
            && st.objects[&format!("{DS_BASE}/edge-probe")]["spec"]["template"]["spec"]["containers"][0]["args"]
                .to_string()
                .contains("kafka-new:9092")
    })
    .await;

    // Enrichment bindings have no owner references; their label-mapped watch still routes a
    // deletion behind the operator's back to the StreamAnalysis, which recreates it.
    let crb = format!("{CRB_BASE}/netstream-processor-reader:netstream:flows");
    wait_until(&fake, "binding created", |st| st.objects.contains_key(&crb)).await;
    fake.remove(&crb);
    wait_until(&fake, "deleted ClusterRoleBinding restored", |st| {
        st.objects.contains_key(&crb)
    })
    .await;

    // Deleting a StreamAnalysis: the finalizer removes its bindings, then lets it go.
    let byref_crb = format!("{CRB_BASE}/netstream-processor-reader:netstream:byref");
    wait_until(&fake, "byref binding created", |st| {
        st.objects.contains_key(&byref_crb)
    })
    .await;
    let mut obj = fake.get(&format!("{SA_BASE}/byref")).unwrap();
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!([sa_rec::FINALIZER]),
        "added by the operator"
    );
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(&format!("{SA_BASE}/byref"), obj);
    wait_until(&fake, "byref bindings and object gone", |st| {
        !st.objects.contains_key(&byref_crb)
            && !st.objects.contains_key(&format!("{SA_BASE}/byref"))
    })
    .await;
    assert!(fake.get(&crb).is_some(), "other StreamAnalyses keep theirs");

    // Quiescence: the operator's own writes (status, no-op applies) must not keep
    // re-triggering reconciles.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = usize::MAX;
    loop {
        let now = fake.state.lock().unwrap().log.len();
        if now == last {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controllers never went quiet ({now} requests)"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("graceful shutdown")
        .unwrap();

    let calls = fake.take_log();
    let listed: BTreeSet<(String, String)> = calls
        .iter()
        .filter(|c| {
            c.method == "GET"
                && c.res().name.is_none()
                && !c.res().resource.is_empty() // discovery
                && !c.query.contains("watch=true")
        })
        .map(|c| (c.res().group, c.res().resource))
        .collect();
    assert_eq!(listed, expected, "initial lists");
    assert_eq!(watched(&calls), expected, "watches");
    for c in calls.iter().filter(|c| {
        c.res().name.is_none()
            && c.method == "GET"
            && !matches!(
                c.res().resource.as_str(),
                "netprobes" | "streamanalyses" | ""
            )
    }) {
        assert!(
            c.query
                .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dnetstream-operator"),
            "children are watched by label: {}?{}",
            c.path,
            c.query
        );
    }
    assert!(fake.get(&format!("{DS_BASE}/edge-probe")).is_some());
    assert!(fake.get(&format!("{DEP_BASE}/flows-processor")).is_some());
    assert!(fake.get(&format!("{HPA_BASE}/flows-processor")).is_some());
    calls
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn netprobe_create() {
    np_create().await;
}
#[tokio::test]
async fn netprobe_ready_from_daemonset_status() {
    np_ready_from_daemonset_status().await;
}
#[tokio::test]
async fn netprobe_update_after_spec_change() {
    np_update_after_spec_change().await;
}
#[tokio::test]
async fn netprobe_deleted_child_restored() {
    np_deleted_child_restored().await;
}
#[tokio::test]
async fn netprobe_invalid_filter_condition() {
    np_invalid_filter().await;
}
#[tokio::test]
async fn netprobe_missing_secret_condition() {
    np_missing_secret().await;
}
#[tokio::test]
async fn netprobe_api_errors_retry() {
    np_api_errors_retry().await;
}
#[tokio::test]
async fn streamanalysis_create_hpa() {
    sa_create_hpa().await;
}
#[tokio::test]
async fn streamanalysis_ready_and_partition_cap() {
    sa_ready_and_partition_cap().await;
}
#[tokio::test]
async fn streamanalysis_probe_ref() {
    sa_probe_ref().await;
}
#[tokio::test]
async fn streamanalysis_probe_ref_missing() {
    sa_probe_ref_missing().await;
}
#[tokio::test]
async fn streamanalysis_keda_not_installed() {
    sa_keda_not_installed().await;
}
#[tokio::test]
async fn streamanalysis_switch_hpa_keda_hpa() {
    sa_switch_hpa_keda_hpa().await;
}
#[tokio::test]
async fn streamanalysis_foreign_objects_untouched() {
    sa_foreign_objects_untouched().await;
}
#[tokio::test]
async fn streamanalysis_service_monitor() {
    sa_service_monitor().await;
}
#[tokio::test]
async fn streamanalysis_api_error_retry() {
    sa_api_error_retry().await;
}
#[tokio::test]
async fn streamanalysis_enrichment_bindings() {
    sa_enrichment_bindings().await;
}
#[tokio::test]
async fn streamanalysis_finalizer_lifecycle() {
    sa_finalizer_lifecycle().await;
}
#[tokio::test]
async fn streamanalysis_enrichment_namespace_missing() {
    sa_enrichment_namespace_missing().await;
}
#[tokio::test]
async fn streamanalysis_invalid_subnet_blocked() {
    sa_invalid_subnet_blocked().await;
}
#[tokio::test]
async fn streamanalysis_invalid_analyses_blocked() {
    sa_invalid_analyses_blocked().await;
}
#[tokio::test]
async fn controllers_list_watch_and_reconcile() {
    controllers_end_to_end().await;
}
#[tokio::test]
async fn leader_election_lease() {
    leader_election().await;
}

#[test]
fn probe_edits_reach_referencing_analyses() {
    let np = netprobe("full", full_probe_spec());
    let mut by_ref = minimal_analysis_spec();
    by_ref.kafka = None;
    by_ref.probe_ref = Some(ProbeRef {
        name: "full".into(),
    });
    let mut other_ns = analysis("b", by_ref.clone());
    other_ns.metadata.namespace = Some("elsewhere".into());
    let all = vec![
        Arc::new(analysis("a", by_ref.clone())),
        Arc::new(other_ns),
        Arc::new(analysis("c", minimal_analysis_spec())),
    ];
    let refs: Vec<String> = netstream_operator::controller::referencing(&all, &np)
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(refs, ["a"]);
}

type Rule = (String, String, String);

/// `resourceNames` of the operator ClusterRole's `bind` rule (the only rule with names).
fn bind_resource_names() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rbac")
        .join("clusterrole.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value = serde_yaml::Deserializer::from_str(&text)
        .next()
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .unwrap();
    let rules: Vec<&Value> = doc["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("resourceNames").is_some())
        .collect();
    assert_eq!(rules.len(), 1, "only the bind rule is limited by name");
    assert_eq!(rules[0]["verbs"], json!(["bind"]));
    rules[0]["resourceNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// The processor ClusterRoles grant get/list/watch only, on exactly what enrichment reads, and
/// their names are the ones the operator binds.
#[test]
fn processor_cluster_roles_are_read_only_and_minimal() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rbac")
        .join("processor-clusterroles.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut roles = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        assert_eq!(doc["kind"], "ClusterRole");
        let mut grants = BTreeSet::new();
        for rule in doc["rules"].as_array().unwrap() {
            assert_eq!(rule["verbs"], json!(["get", "list", "watch"]), "read-only");
            assert!(rule.get("resourceNames").is_none());
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    grants.insert(format!("{}/{}", g.as_str().unwrap(), r.as_str().unwrap()));
                }
            }
        }
        roles.insert(
            doc["metadata"]["name"].as_str().unwrap().to_string(),
            grants,
        );
    }
    assert_eq!(
        roles,
        BTreeMap::from([
            (
                rbac::READER_ROLE.to_string(),
                set(&[
                    "/pods",
                    "/services",
                    "/nodes",
                    "apps/replicasets",
                    "batch/jobs"
                ])
            ),
            (rbac::NODES_ROLE.to_string(), set(&["/nodes"])),
        ])
    );
}

fn granted_rules() -> BTreeSet<Rule> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rbac")
        .join("clusterrole.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        kinds.push(doc["kind"].as_str().unwrap().to_string());
        for rule in doc["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let verb = verb.as_str().unwrap();
                        assert_ne!(verb, "*", "no wildcards");
                        out.insert((
                            verb.to_string(),
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(kinds, ["ClusterRole", "Role"]);
    out
}

/// RBAC: everything the scenarios and the running controllers call is granted, and nothing
/// else is.
#[tokio::test]
async fn rbac_grants_exactly_what_is_used() {
    let mut calls = Vec::new();
    calls.extend(np_create().await);
    calls.extend(np_ready_from_daemonset_status().await);
    calls.extend(np_update_after_spec_change().await);
    calls.extend(np_deleted_child_restored().await);
    calls.extend(np_invalid_filter().await);
    calls.extend(np_missing_secret().await);
    calls.extend(np_api_errors_retry().await);
    calls.extend(sa_create_hpa().await);
    calls.extend(sa_ready_and_partition_cap().await);
    calls.extend(sa_probe_ref().await);
    calls.extend(sa_probe_ref_missing().await);
    calls.extend(sa_keda_not_installed().await);
    calls.extend(sa_switch_hpa_keda_hpa().await);
    calls.extend(sa_foreign_objects_untouched().await);
    calls.extend(sa_service_monitor().await);
    calls.extend(sa_api_error_retry().await);
    calls.extend(sa_enrichment_bindings().await);
    calls.extend(sa_finalizer_lifecycle().await);
    calls.extend(sa_invalid_subnet_blocked().await);
    calls.extend(sa_invalid_analyses_blocked().await);
    calls.extend(sa_enrichment_namespace_missing().await);
    calls.extend(leader_election().await);
    // list/watch come from running the real controllers.
    calls.extend(controllers_end_to_end().await);

    let used: BTreeSet<Rule> = calls.iter().flat_map(Call::rbac).collect();
    let granted = granted_rules();
    // `bind` is limited by resourceNames to exactly the roles the operator binds.
    let bound: BTreeSet<String> = calls.iter().filter_map(Call::bound_role).collect();
    assert_eq!(bound, bind_resource_names());
    assert_eq!(
        bound,
        BTreeSet::from([rbac::READER_ROLE.to_string(), rbac::NODES_ROLE.to_string()])
    );
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "RBAC drift\n missing (used, not granted): {missing:#?}\n unused (granted, never used): {unused:#?}"
    );
}

// ------------------------------------------- what a real API server shows (issue 18)

/// A kind whose CRD is not installed answers `text/plain` `404 page not found`: kube's own
/// `get_opt` fails on it (its `Status::is_not_found` wants reason NotFound), the operator's
/// helpers take it for "absent".
#[tokio::test]
async fn plain_text_404_of_a_missing_crd_is_absent() {
    use kube::api::Api;
    use netstream_operator::desired::thirdparty::ScaledObject;
    use netstream_operator::reconcile::{delete_owned, get_opt};
    let (client, fake) = Fake::start();
    fake.missing_group("keda.sh");
    let api: Api<ScaledObject> = Api::namespaced(client, NS);
    match api.get_opt("flows-processor").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.message.as_str()), (404, "404 page not found"));
        }
        other => panic!("kube's get_opt on a plain-text 404: {other:?}"),
    }
    assert!(get_opt(&api, "flows-processor").await.unwrap().is_none());
    delete_owned(&api, "flows-processor", "uid-1")
        .await
        .unwrap();
}

/// The default StreamAnalysis (mode hpa, no ServiceMonitor) on a cluster with neither KEDA
/// nor prometheus-operator: reconciled, status written, neither group called beyond
/// discovery. Before the fix every reconcile failed on the plain-text 404.
#[tokio::test]
async fn streamanalysis_ready_without_keda_and_servicemonitor_crds() {
    let (ctx, fake) = setup_bare();
    let sa = analysis("flows", minimal_analysis_spec());
    store_sa(&fake, &sa);
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let calls = fake.take_log();
    let third_party: Vec<String> = Fake::shorts(&calls)
        .into_iter()
        .filter(|c| {
            (c.contains("keda.sh") || c.contains("monitoring.coreos.com"))
                && !c.starts_with("GET /apis/")
                || c.contains("scaledobjects")
                || c.contains("servicemonitors")
        })
        .collect();
    assert!(third_party.is_empty(), "{third_party:?}");
    let st = status_body(&calls);
    assert_eq!(st["observedGeneration"], 1);
    assert_eq!(cond(&st, "Degraded")["reason"], "AsExpected");
    // A second pass reuses the discovery answer.
    let sa = reload_sa(&fake, "flows");
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let again = Fake::shorts(&fake.take_log());
    assert!(
        !again.iter().any(|c| c.starts_with("GET /apis/keda.sh")),
        "{again:?}"
    );
}

/// KEDA uninstalled between discovery and the apply: reported as missing, not retried as an
/// error, and discovery is asked again next time.
#[tokio::test]
async fn keda_removed_after_discovery_is_reported() {
    let (ctx, fake) = setup();
    fake.missing_group("monitoring.coreos.com");
    let mut spec = minimal_analysis_spec();
    spec.autoscaling.mode = AutoscalingMode::Keda;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa.clone()), ctx.clone())
        .await
        .unwrap();
    assert!(fake.get(&format!("{SO_BASE}/flows-processor")).is_some());
    fake.take_log();
    fake.missing_group("keda.sh");
    let sa = reload_sa(&fake, "flows");
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let calls = fake.take_log();
    assert_eq!(
        cond(&status_body(&calls), "Degraded")["reason"],
        "KedaNotInstalled"
    );
    let sa = reload_sa(&fake, "flows");
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert!(
        Fake::shorts(&fake.take_log()).contains(&"GET /apis/keda.sh/v1alpha1".to_string()),
        "discovery asked again"
    );
}

/// A name admitted before the CRD's name rule existed: a condition saying what to do, no
/// children (which the API server would refuse forever).
#[tokio::test]
async fn names_children_cannot_carry_are_reported() {
    let (ctx, fake) = setup();
    for name in ["1st-flows", "edge.flows"] {
        let sa = analysis(name, minimal_analysis_spec());
        store_sa(&fake, &sa);
        sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
        let calls = fake.take_log();
        assert!(
            !calls
                .iter()
                .any(|c| c.method == "PATCH" && !c.path.ends_with("/status")),
            "{name}: {:?}",
            Fake::shorts(&calls)
        );
        let st = status_body(&calls);
        assert_eq!(cond(&st, "Ready")["reason"], "InvalidName", "{name}");
        assert!(
            cond(&st, "Degraded")["message"]
                .as_str()
                .unwrap()
                .contains("a lower-case letter first")
        );
    }
    let np = netprobe("edge.probe", full_probe_spec());
    store_np(&fake, &np);
    secrets(&fake, &["ca.crt", "tls.crt", "tls.key"]);
    np_rec::reconcile(Arc::new(np), ctx.clone()).await.unwrap();
    let calls = fake.take_log();
    assert!(!calls.iter().any(|c| c.path.contains("/daemonsets/")));
    assert_eq!(cond(&status_body(&calls), "Ready")["reason"], "InvalidName");
}

/// `spec.replicas` is set from `minReplicas` once, at creation, under its own field manager;
/// later applies never carry it (the autoscaler owns it).
#[tokio::test]
async fn initial_replicas_only_at_creation() {
    let (ctx, fake) = setup_bare();
    let mut spec = minimal_analysis_spec();
    spec.min_replicas = 4;
    spec.max_replicas = 9;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let first = fake.take_log();
    let dep_path = format!("{DEP_BASE}/flows-processor");
    assert_eq!(fake.get(&dep_path).unwrap()["spec"]["replicas"], 4);
    let managers: Vec<&str> = first
        .iter()
        .filter(|c| c.method == "PATCH" && c.path == dep_path)
        .map(|c| c.query.as_str())
        .collect();
    assert_eq!(managers.len(), 2, "{managers:?}");
    // The HPA scales to 7; the next reconcile leaves that alone.
    {
        let mut st = fake.state.lock().unwrap();
        let mut dep = st.objects[&dep_path].clone();
        dep["spec"]["replicas"] = json!(7);
        st.put(&dep_path, dep);
    }
    let sa = reload_sa(&fake, "flows");
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let second = fake.take_log();
    let dep_applies: Vec<&Call> = second
        .iter()
        .filter(|c| c.method == "PATCH" && c.path == dep_path)
        .collect();
    assert_eq!(dep_applies.len(), 1);
    assert!(
        dep_applies[0].body.as_ref().unwrap()["spec"]
            .get("replicas")
            .is_none()
    );
    assert_eq!(fake.get(&dep_path).unwrap()["spec"]["replicas"], 7);
}

// ------------------------------------------------- Kafka: partitions, consumer settings

fn plain_kafka(bootstrap: &str, topic: &str) -> KafkaSpec {
    serde_json::from_value(json!({"bootstrapServers": [bootstrap], "topic": topic})).unwrap()
}

/// `status.partitions` and the `maxReplicas` cap come from the topic's real partition count
/// (tansu); a missing topic and an unreachable broker are conditions, not errors, and keep
/// the last known count.
#[tokio::test]
async fn partitions_read_from_kafka_cap_replicas() {
    use netstream_operator::context::PartitionSource;
    use netstream_operator::partitions::KafkaPartitions;
    let Some(broker) = netstream_testkit::broker::Broker::start() else {
        return;
    };
    broker.create_topic("six", 6).unwrap();
    let (client, fake) = Fake::start();
    fake.missing_group("keda.sh");
    fake.missing_group("monitoring.coreos.com");
    let source =
        Arc::new(KafkaPartitions::new(client.clone()).with_timeout(Duration::from_secs(3)));
    let kafka = plain_kafka(&broker.bootstrap(), "six");
    assert_eq!(source.partitions(NS, &kafka).await, Ok(Some(6)));
    let missing = source
        .partitions(NS, &plain_kafka(&broker.bootstrap(), "nope"))
        .await;
    assert!(
        missing.as_ref().unwrap_err().contains("does not exist"),
        "{missing:?}"
    );

    let ctx = Arc::new(
        Context::new(client, Defaults::default(), Metrics::new().unwrap(), None)
            .with_partitions(source.clone()),
    );
    let mut spec = minimal_analysis_spec();
    spec.kafka = Some(kafka.clone());
    spec.max_replicas = 10;
    let sa = analysis("flows", spec);
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let calls = fake.take_log();
    assert_eq!(status_body(&calls)["partitions"], 6);
    let hpa = fake.get(&format!("{HPA_BASE}/flows-processor")).unwrap();
    assert_eq!(
        hpa["spec"]["maxReplicas"], 6,
        "capped at the partition count"
    );

    // Unreachable brokers: reported with what to check, the last count kept.
    let mut sa = reload_sa(&fake, "flows");
    sa.spec.kafka = Some(plain_kafka("127.0.0.1:1", "six"));
    store_sa(&fake, &sa);
    let started = std::time::Instant::now();
    let action = sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let st = status_body(&fake.take_log());
    assert_eq!(cond(&st, "Degraded")["reason"], "KafkaMetadataUnavailable");
    assert!(
        cond(&st, "Degraded")["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1")
    );
    assert_eq!(st["partitions"], 6, "last known count kept");

    // Cached: asked again within the TTL, the answer does not need the broker.
    drop(broker);
    assert_eq!(source.partitions(NS, &kafka).await, Ok(Some(6)));
}

/// librdkafka's own warnings of a consumer (no broker needed: they are logged when the client
/// is created).
fn consumer_warnings(props: &[(&str, &str)]) -> Vec<String> {
    use rdkafka::ClientContext;
    use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
    use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<String>>>);
    impl ClientContext for Capture {
        fn log(&self, level: RDKafkaLogLevel, _fac: &str, msg: &str) {
            // Configuration warnings only (not the refused connections to 127.0.0.1:1).
            if (level as i32) <= (RDKafkaLogLevel::Warning as i32) && msg.contains("property") {
                self.0.lock().unwrap().push(msg.to_string());
            }
        }
    }
    impl ConsumerContext for Capture {}
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "127.0.0.1:1")
        .set("group.id", "g");
    for (k, v) in props {
        c.set(*k, *v);
    }
    let ctx = Capture::default();
    let consumer: BaseConsumer<Capture> = c.create_with_context(ctx.clone()).unwrap();
    // Topic-level properties are checked when a topic handle is made, as on assignment.
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("t", 0);
    consumer.assign(&tpl).unwrap();
    // librdkafka delivers its log lines from its own threads: give them a moment.
    let deadline = std::time::Instant::now() + Duration::from_millis(700);
    while std::time::Instant::now() < deadline && ctx.0.lock().unwrap().is_empty() {
        let _ = consumer.poll(Duration::from_millis(20));
    }
    drop(consumer);
    ctx.0.lock().unwrap().clone()
}

/// Every entry of the producer-only list is one librdkafka itself ignores in a consumer (so
/// the operator drops nothing a consumer reads), and what remains draws no warning.
#[test]
fn producer_only_properties_match_librdkafka() {
    use netstream_runtime::kafka_config::PRODUCER_ONLY;
    let value = |k: &str| match k {
        "compression.codec" | "compression.type" => "lz4",
        "partitioner" => "murmur2_random",
        "queuing.strategy" => "fifo",
        "transactional.id" => "t",
        "acks" | "request.required.acks" => "1",
        "enable.idempotence" => "true",
        "enable.gapless.guarantee" | "produce.offset.report" | "delivery.report.only.error" => {
            "false"
        }
        "compression.level" | "queue.buffering.backpressure.threshold" => "1",
        _ => "1000",
    };
    for k in PRODUCER_ONLY {
        let warnings = consumer_warnings(&[(k, value(k))]);
        assert!(
            // Alone in the config, so the warning is about it (named by its canonical
            // name when `k` is an alias, e.g. compression.type -> compression.codec).
            warnings
                .iter()
                .any(|w| w.contains("is a producer property")),
            "{k}: librdkafka does not call it a producer property: {warnings:?}"
        );
    }
    let consumer_side = [
        ("fetch.min.bytes", "1"),
        ("socket.keepalive.enable", "true"),
        ("client.id", "x"),
    ];
    assert_eq!(consumer_warnings(&consumer_side), Vec::<String>::new());
}

/// A StreamAnalysis with `probeRef` shares the NetProbe's producer tuning; what the operator
/// renders for the processor runs through the real processor binary's config merge without
/// a single librdkafka warning about producer properties.
#[test]
fn probe_ref_producer_settings_do_not_reach_the_consumer() {
    use std::io::BufRead;
    let Some(broker) = netstream_testkit::broker::Broker::start() else {
        return;
    };
    broker.create_topic("netstream.packets", 1).unwrap();
    let mut probe_kafka = plain_kafka(&broker.bootstrap(), "netstream.packets");
    probe_kafka.properties = BTreeMap::from([
        ("compression.type".into(), "lz4".into()),
        ("linger.ms".into(), "20".into()),
        ("acks".into(), "all".into()),
        ("batch.size".into(), "1000000".into()),
        ("socket.keepalive.enable".into(), "true".into()),
    ]);
    let mut spec = minimal_analysis_spec();
    spec.kafka = None;
    spec.probe_ref = Some(ProbeRef {
        name: "edge".into(),
    });
    spec.enrichment.enabled = false;
    let sa = analysis("flows", spec);
    let src = processor::Source {
        kafka: probe_kafka,
        partitions: None,
    };
    let mut args = processor::args(&sa, &src);
    let joined = args.join(" ");
    assert!(joined.contains("socket.keepalive.enable=true"), "{joined}");
    for p in ["compression.type", "linger.ms", "acks=", "batch.size"] {
        assert!(!joined.contains(p), "{p} handed to the consumer: {joined}");
    }
    // Run it with the rendered flags and config file (on a free metrics port) until it has its
    // partition: by then librdkafka has checked the global and the topic-level properties.
    let i = args.iter().position(|a| a == "--metrics-addr").unwrap();
    args[i + 1] = "127.0.0.1:0".into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("processor.yaml");
    std::fs::write(
        &file,
        &processor::config_map(&sa).data.unwrap()["processor.yaml"],
    )
    .unwrap();
    let i = args.iter().position(|a| a == "--config").unwrap();
    args[i + 1] = file.display().to_string();
    args.extend(["--consumer-config".into(), "fetch.wait.max.ms=10".into()]);
    let Some(bin) = processor_binary() else {
        return;
    };
    let mut child = std::process::Command::new(&bin)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    for pipe in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let assigned = line.contains("partitions assigned");
                log.push(line);
                if assigned {
                    // Topic-level warnings follow the assignment closely.
                    std::thread::sleep(Duration::from_millis(500));
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(
        log.contains("partitions assigned"),
        "the processor did not start consuming:\n{log}"
    );
    assert!(!log.contains("producer property"), "{log}");
}

/// The processor binary built beside this test (`cargo test --workspace` builds it), or
/// `NETSTREAM_PROCESSOR_BIN`.
fn processor_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("NETSTREAM_PROCESSOR_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("netstream-processor");
    if bin.is_file() {
        return Some(bin);
    }
    netstream_testkit::tools::skip(
        "netstream-processor not built (cargo build -p netstream-processor)",
    );
    None
}

/// The client the operator builds sends `User-Agent: netstream-operator/<version>` (the API
/// server derives Events' and Leases' field manager from it), over real HTTP.
#[tokio::test]
async fn requests_carry_the_operator_user_agent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            n += sock.read(&mut buf[n..]).await.unwrap();
        }
        let body = r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"keda.sh/v1alpha1","resources":[]}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(resp.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_lowercase()
    });
    let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    netstream_operator::client::identify(&mut config);
    let client = kube::Client::try_from(config).unwrap();
    client
        .list_api_group_resources("keda.sh/v1alpha1")
        .await
        .unwrap();
    let request = server.await.unwrap();
    let want = format!("user-agent: {}", netstream_operator::client::USER_AGENT);
    assert!(request.contains(&want), "{request}");
    assert!(netstream_operator::client::USER_AGENT.starts_with("netstream-operator/0."));
}

/// Over TLS, the operator trusts the CA from the StreamAnalysis' Secret (read through the
/// API, never written to disk); a wrong CA and a missing Secret are reported with the cause.
#[tokio::test]
async fn partitions_over_tls_with_the_ca_from_the_secret() {
    use netstream_operator::context::PartitionSource;
    use netstream_operator::partitions::KafkaPartitions;
    use netstream_testkit::secure_broker::{SecureBroker, TestCa};
    let Some(ca) = TestCa::generate() else {
        return;
    };
    let Some(broker) = SecureBroker::start(Some(&ca), false) else {
        return;
    };
    broker.create_topic(Some(&ca), "four", 4).unwrap();
    let (client, fake) = Fake::start();
    let put_ca = |name: &str, pem: &std::path::Path| {
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "ca.crt".to_string(),
                ByteString(std::fs::read(pem).unwrap()),
            )])),
            ..Default::default()
        };
        fake.put(&format!("{SECRET_BASE}/{name}"), v(&s));
    };
    put_ca("kafka-ca", &ca.ca);
    put_ca("other-ca", &ca.other_ca);
    let kafka = |secret: &str| -> KafkaSpec {
        serde_json::from_value(
            json!({"bootstrapServers": [broker.bootstrap()], "topic": "four",
            "tls": {"secretName": secret, "caKey": "ca.crt"}}),
        )
        .unwrap()
    };
    let source = KafkaPartitions::new(client).with_timeout(Duration::from_secs(3));
    assert_eq!(source.partitions(NS, &kafka("kafka-ca")).await, Ok(Some(4)));
    let wrong = source.partitions(NS, &kafka("other-ca")).await;
    assert!(wrong.is_err(), "{wrong:?}");
    let missing = source.partitions(NS, &kafka("ghost")).await;
    assert!(
        missing
            .as_ref()
            .unwrap_err()
            .contains("Secret netstream/ghost does not exist"),
        "{missing:?}"
    );
    assert!(broker.handshakes().0 >= 1, "a TLS handshake completed");
}

/// The fake models server-side apply conflicts, so a dropped `force` would show: another
/// manager's unforced apply of `spec.replicas` conflicts with the initial-replicas manager,
/// a forced one takes the field over, and the operator's next (forced) applies succeed
/// without touching it.
#[tokio::test]
async fn apply_conflicts_are_modelled_and_the_operator_forces() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    let (ctx, fake) = setup_bare();
    let sa = analysis("flows", minimal_analysis_spec());
    store_sa(&fake, &sa);
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), NS);
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "flows-processor"}, "spec": {"replicas": 5}});
    let err = api
        .patch(
            "flows-processor",
            &PatchParams::apply("kubectl"),
            &Patch::Apply(&body),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains(sa_rec::INITIAL_REPLICAS_MANAGER),
                "{}",
                s.message
            );
            assert!(s.message.contains(".spec.replicas"), "{}", s.message);
        }
        e => panic!("{e:?}"),
    }
    api.patch(
        "flows-processor",
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap();
    let sa = reload_sa(&fake, "flows");
    sa_rec::reconcile(Arc::new(sa), ctx.clone()).await.unwrap();
    let dep = fake.get(&format!("{DEP_BASE}/flows-processor")).unwrap();
    assert_eq!(dep["spec"]["replicas"], 5);
    let owners = fake.state.lock().unwrap().owners[&format!("{DEP_BASE}/flows-processor")].clone();
    assert_eq!(owners[".spec.replicas"], "kubectl");
    assert_eq!(
        owners[".spec.template.spec.serviceAccountName"],
        "netstream-operator"
    );
}

/// `/readyz` is 503 until both controllers' caches have done their first list (a synced
/// NetProbe cache alone is not enough), then 200.
#[tokio::test]
async fn readyz_waits_for_both_controller_caches() {
    use futures::FutureExt;
    use netstream_operator::http::Health;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn readyz(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    let (ctx, fake) = setup();
    store_np(&fake, &netprobe("edge", minimal_probe_spec()));
    // Every StreamAnalysis list fails (and is retried) until the faults are cleared.
    for _ in 0..10_000 {
        fake.fault("GET", "/streamanalyses", 500);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    }
    .shared();
    let health = Health::new();
    let (addr, server) = netstream_operator::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        &ctx.metrics,
        health.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert!(readyz(addr).await.starts_with("HTTP/1.1 503"));
    let run = tokio::spawn(netstream_operator::controller::run_with_health(
        ctx,
        netstream_operator::controller::OptionalApis::default(),
        shutdown,
        health,
    ));

    let sa_lists = |st: &common::fake::State| {
        st.log
            .iter()
            .filter(|c| {
                c.method == "GET"
                    && c.res().resource == "streamanalyses"
                    && !c.query.contains("watch=true")
            })
            .count()
    };
    wait_until(
        &fake,
        "NetProbe reconciled while StreamAnalysis lists keep failing",
        |st| {
            st.objects
                .get(&format!("{NP_BASE}/edge"))
                .is_some_and(|o| o.get("status").is_some())
                && sa_lists(st) >= 2
        },
    )
    .await;
    let r = readyz(addr).await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.ends_with("not ready\n"),
        "{r}"
    );

    fake.state.lock().unwrap().faults.clear();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = readyz(addr).await;
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let watching = fake
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|c| c.res().resource == "streamanalyses" && c.query.contains("watch=true"));
    assert!(
        watching,
        "the StreamAnalysis list succeeded (its watch follows it)"
    );

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("graceful shutdown")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap();
}
