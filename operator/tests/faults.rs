//! Operator faults against the fake API server (tower-test): watches that end or fail, a spec
//! changed in the middle of a reconcile, repeated server errors, conflicts on status writes.
//! The operator must converge with backoff and never exit or panic. Plus: the contents of the
//! Kafka Secrets a CR references never leave the operator, neither in a request nor in a log
//! line.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use netstream_operator::context::Context;
use netstream_operator::controller::{self, OptionalApis};
use netstream_operator::crd::*;
use netstream_operator::desired::processor;
use netstream_operator::reconcile::{netprobe as np_rec, streamanalysis as sa_rec};
use serde_json::{Value, json};

use common::api::*;
use common::fake::{Call, Fake, State};
use common::fixtures::*;

fn reload_sa(fake: &Fake, name: &str) -> StreamAnalysis {
    serde_json::from_value(fake.get(&format!("{SA_BASE}/{name}")).unwrap()).unwrap()
}

/// The config a Deployment rolls out, by its pod template's hash of the config file.
fn config_of(dep: &Value) -> String {
    dep["spec"]["template"]["metadata"]["annotations"][processor::CONFIG_HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_until(fake: &Fake, what: &str, cond: impl Fn(&State) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Starts the real controllers; returns their task and the sender that stops them.
fn start_controllers(
    ctx: Arc<Context>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown: Shutdown = async move {
        let _ = rx.await;
    }
    .boxed()
    .shared();
    let optional = OptionalApis {
        keda: true,
        service_monitor: true,
    };
    (tokio::spawn(controller::run(ctx, optional, shutdown)), tx)
}

async fn stop(run: tokio::task::JoinHandle<()>, tx: tokio::sync::oneshot::Sender<()>) {
    assert!(
        !run.is_finished(),
        "the controllers must never exit on their own"
    );
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("graceful shutdown")
        .unwrap();
}

fn has_status(st: &State, path: &str) -> bool {
    st.objects
        .get(path)
        .is_some_and(|o| o.get("status").is_some())
}

fn count(st: &State, f: impl Fn(&Call) -> bool) -> usize {
    st.log.iter().filter(|c| f(c)).count()
}

fn is_watch(c: &Call, resource: &str) -> bool {
    c.method == "GET" && c.query.contains("watch=true") && c.res().resource == resource
}

fn is_list(c: &Call, resource: &str) -> bool {
    c.method == "GET"
        && !c.query.contains("watch=true")
        && c.res().name.is_none()
        && c.res().resource == resource
}

/// Watches that end (API server restart, idle timeout) are re-established; a watch ERROR
/// (410 Gone) makes the controller re-list, and a failing re-list is retried with backoff.
/// Throughout, changes keep being reconciled and the controller task never ends.
#[tokio::test]
async fn controllers_survive_watch_disconnects_and_errors() {
    let (ctx, fake) = setup();
    store_sa(&fake, &analysis("flows", minimal_analysis_spec()));
    let (run, tx) = start_controllers(ctx.clone());
    let dep_path = format!("{DEP_BASE}/flows-processor");
    let sa_path = format!("{SA_BASE}/flows");
    // 3 watches for the NetProbe controller, 11 for the StreamAnalysis one.
    let all = 14;
    wait_until(&fake, "first reconcile and every watch open", |st| {
        has_status(st, &sa_path) && count(st, |c| c.query.contains("watch=true")) >= all
    })
    .await;
    let watches = |st: &State| count(st, |c| c.query.contains("watch=true"));

    // 1. Every watch stream ends at once: all are re-established, and a deletion made after
    // that is repaired.
    let before = watches(&fake.state.lock().unwrap());
    let closed = fake.state.lock().unwrap().close_watches();
    assert!(closed >= all, "{closed} watches were open");
    wait_until(&fake, "watches re-established", |st| {
        watches(st) >= before + all && st.open_watches() >= all
    })
    .await;
    fake.remove(&dep_path);
    wait_until(
        &fake,
        "Deployment deleted after the reconnect is restored",
        |st| st.objects.contains_key(&dep_path),
    )
    .await;

    // 2. 410 Gone on the Deployment watch, and the re-list then fails once with a 500: the
    // watcher backs off, re-lists, re-watches, and an edit afterwards is reverted.
    let (lists, dep_watches) = {
        let st = fake.state.lock().unwrap();
        (
            count(&st, |c| is_list(c, "deployments")),
            count(&st, |c| is_watch(c, "deployments")),
        )
    };
    fake.fault("GET", "/deployments", 500);
    let started = std::time::Instant::now();
    assert_eq!(
        fake.state.lock().unwrap().watch_error("deployments", 410),
        1
    );
    wait_until(&fake, "failed re-list retried, then watched again", |st| {
        count(st, |c| is_list(c, "deployments")) >= lists + 2
            && count(st, |c| is_watch(c, "deployments")) > dep_watches
    })
    .await;
    println!(
        "410 + failed re-list: watching Deployments again after {:?} (watcher backoff)",
        started.elapsed()
    );
    let mut dep = fake.get(&dep_path).unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    fake.put(&dep_path, dep);
    wait_until(&fake, "edit after the re-list is reverted", |st| {
        st.objects[&dep_path]["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:latest"
    })
    .await;

    // 3. The custom resource's own watch errors; a spec change afterwards still lands.
    let sa_watches = count(&fake.state.lock().unwrap(), |c| {
        is_watch(c, "streamanalyses")
    });
    assert_eq!(
        fake.state
            .lock()
            .unwrap()
            .watch_error("streamanalyses", 410),
        1
    );
    wait_until(&fake, "streamanalyses watched again", |st| {
        count(st, |c| is_watch(c, "streamanalyses")) > sa_watches
    })
    .await;
    let mut sa = reload_sa(&fake, "flows");
    sa.spec.flow_idle_timeout = Some("45s".into());
    sa.metadata.generation = Some(2);
    store_sa(&fake, &sa);
    let want = processor::config_hash(&sa);
    wait_until(&fake, "new spec rolled out", |st| {
        config_of(&st.objects[&dep_path]) == want
            && st.objects[&sa_path]["status"]["observedGeneration"] == 2
    })
    .await;
    stop(run, tx).await;
}

/// The spec changes after the reconcile read it and before it applied the Deployment. That
/// pass finishes with what it read and reports the generation it applied (1), never the newer
/// one it did not roll out; the watch event of the change drives the next pass, which
/// converges to generation 2.
#[tokio::test]
async fn spec_changed_mid_reconcile_converges_and_reports_applied_generation() {
    let (ctx, fake) = setup();
    let sa = analysis("flows", minimal_analysis_spec());
    store_sa(&fake, &sa);
    let mut changed = sa.clone();
    changed.spec.flow_idle_timeout = Some("7m".into());
    changed.metadata.generation = Some(2);
    let want = processor::config_hash(&changed);
    let changed = v(&changed);
    let sa_path = format!("{SA_BASE}/flows");
    let key = sa_path.clone();
    fake.hook("PATCH", "/deployments/flows-processor", move |st| {
        // Another client (kubectl edit) writes between our read and our apply.
        let status = st.objects[&key].get("status").cloned();
        let mut obj = changed;
        if let Some(s) = status {
            obj["status"] = s;
        }
        st.put(&key, obj);
    });

    let (run, tx) = start_controllers(ctx.clone());
    let dep_path = format!("{DEP_BASE}/flows-processor");
    wait_until(&fake, "converged on generation 2", |st| {
        st.objects
            .get(&dep_path)
            .is_some_and(|d| config_of(d) == want)
            && st.objects[&sa_path]["status"]["observedGeneration"] == 2
    })
    .await;
    stop(run, tx).await;

    // Each status write names the generation whose Deployment the same pass applied.
    let log = fake.take_log();
    let mut last_args = None;
    let mut seen = Vec::new();
    for c in &log {
        if c.method == "PATCH" && c.path == dep_path {
            last_args = Some(config_of(c.body.as_ref().unwrap()));
        }
        if c.method == "PATCH" && c.path == format!("{sa_path}/status") {
            let generation = c.body.as_ref().unwrap()["status"]["observedGeneration"]
                .as_i64()
                .unwrap();
            let args = last_args.clone().expect("Deployment applied before status");
            assert_eq!(
                args == want,
                generation == 2,
                "observedGeneration {generation} written after applying {args}"
            );
            seen.push(generation);
        }
    }
    assert_eq!(
        seen.first(),
        Some(&1),
        "the interrupted pass reports what it applied"
    );
    assert_eq!(seen.last(), Some(&2), "{seen:?}");
}

/// Repeated 500s: every pass fails cleanly (no panic), the requeue delay grows 5s, 10s, 20s …
/// up to the 5-minute cap, and the first success resets it.
#[tokio::test]
async fn repeated_server_errors_back_off_and_recover() {
    let (ctx, fake) = setup_bare();
    let sa = Arc::new(analysis("flows", minimal_analysis_spec()));
    store_sa(&fake, &sa);
    let rounds = 9;
    for _ in 0..rounds {
        fake.fault("PATCH", "/deployments/flows-processor", 500);
    }
    let mut delays = Vec::new();
    for _ in 0..rounds {
        let err = sa_rec::reconcile(sa.clone(), ctx.clone())
            .await
            .unwrap_err();
        assert_eq!(err.metric_reason(), "ServerError");
        match sa_rec::error_policy(sa.clone(), &err, ctx.clone()) {
            a if a == Action::requeue(Duration::from_secs(5)) => delays.push(5),
            a => delays.push(
                (1..=300)
                    .find(|s| a == Action::requeue(Duration::from_secs(*s)))
                    .unwrap_or_else(|| panic!("unexpected action {a:?}")),
            ),
        }
    }
    println!("backoff after {rounds} consecutive 500s (s): {delays:?}");
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert!(
        fake.get(&format!("{SA_BASE}/flows"))
            .unwrap()
            .get("status")
            .is_none(),
        "no status written from a failed pass"
    );
    assert!(ctx.metrics.render().contains(&format!(
        "controller=\"streamanalysis\",reason=\"ServerError\"}} {rounds}"
    )));

    sa_rec::reconcile(sa.clone(), ctx.clone())
        .await
        .expect("recovers once the API does");
    assert!(fake.get(&format!("{DEP_BASE}/flows-processor")).is_some());
    assert_eq!(
        ctx.backoff.fail("streamanalysis/netstream/flows"),
        Duration::from_secs(5),
        "success resets the backoff"
    );
}

/// A 409 on the status subresource is an ordinary retryable error, for both kinds, and the
/// next pass writes the status.
#[tokio::test]
async fn conflict_on_status_patch_is_retried() {
    let (ctx, fake) = setup_bare();
    let sa = Arc::new(analysis("flows", minimal_analysis_spec()));
    store_sa(&fake, &sa);
    fake.fault("PATCH", "/streamanalyses/flows/status", 409);
    let err = sa_rec::reconcile(sa.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "Conflict");
    assert!(
        err.to_string()
            .contains("updating status of StreamAnalysis flows"),
        "{err}"
    );
    assert_eq!(
        sa_rec::error_policy(sa.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    sa_rec::reconcile(sa.clone(), ctx.clone()).await.unwrap();
    assert_eq!(
        reload_sa(&fake, "flows")
            .status
            .unwrap()
            .observed_generation,
        Some(1)
    );

    let np = Arc::new(netprobe("edge", minimal_probe_spec()));
    fake.put(&format!("{NP_BASE}/edge"), v(np.as_ref()));
    fake.fault("PATCH", "/netprobes/edge/status", 409);
    let err = np_rec::reconcile(np.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(err.metric_reason(), "Conflict");
    assert_eq!(
        np_rec::error_policy(np.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    np_rec::reconcile(np, ctx.clone()).await.unwrap();
    assert!(
        fake.get(&format!("{NP_BASE}/edge"))
            .unwrap()
            .get("status")
            .is_some()
    );
}

// ------------------------------------------------------------------ secrets

/// A `MakeWriter` collecting all log output of the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const PLANTED: &str = "PLANTED-s3cr3t-7f9c2e";

fn plant_secrets(fake: &Fake, tls_keys: &[&str]) -> Vec<String> {
    let mut values = Vec::new();
    let mut put = |name: &str, keys: &[&str]| {
        let data: BTreeMap<String, ByteString> = keys
            .iter()
            .map(|k| {
                let value = format!("{PLANTED}-{name}-{k}");
                values.push(value.clone());
                (k.to_string(), ByteString(value.into_bytes()))
            })
            .collect();
        let s = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        fake.put(&format!("{SECRET_BASE}/{name}"), v(&s));
    };
    put("kafka-tls", tls_keys);
    put("kafka-user", &["username", "password"]);
    values
}

/// Base64 as the API server encodes Secret data (standard alphabet, padded).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// With TLS and SASL Secrets referenced by a NetProbe and StreamAnalyses (directly, through
/// probeRef, and in KEDA mode whose TriggerAuthentication points at the Secret), across
/// successful passes, missing keys, injected API errors and the running controllers: no request
/// the operator sends (path, query or body: applied objects, status, Events) and no log line
/// at any level contains a Secret value, plain or base64.
#[tokio::test]
async fn secret_values_never_leave_the_operator() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // current-thread runtime: every task of this test runs under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (ctx, fake) = setup();
    let mut values = plant_secrets(&fake, &["ca.crt", "tls.crt"]);
    let np = netprobe("full", full_probe_spec());
    fake.put(&format!("{NP_BASE}/full"), v(&np));
    let (_, keda) = analysis_matrix()
        .into_iter()
        .find(|(n, _)| *n == "keda-secure")
        .unwrap();
    let (_, monitored) = analysis_matrix()
        .into_iter()
        .find(|(n, _)| *n == "monitored")
        .unwrap();

    // Missing key first (the message names keys, never values), then an API error.
    let sa = Arc::new(keda.clone());
    store_sa(&fake, &sa);
    sa_rec::reconcile(sa.clone(), ctx.clone()).await.unwrap();
    let st = reload_sa(&fake, "keda-secure").status.unwrap();
    assert!(
        st.conditions.iter().any(|c| c.reason == "SecretKeyMissing"),
        "{st:?}"
    );
    values.extend(plant_secrets(&fake, &["ca.crt", "tls.crt", "tls.key"]));
    fake.fault("PATCH", "/triggerauthentications/", 500);
    let err = sa_rec::reconcile(sa.clone(), ctx.clone())
        .await
        .unwrap_err();
    sa_rec::error_policy(sa.clone(), &err, ctx.clone());
    let np_arc = Arc::new(np.clone());
    fake.fault("PATCH", "/daemonsets/full-probe", 500);
    let err = np_rec::reconcile(np_arc.clone(), ctx.clone())
        .await
        .unwrap_err();
    np_rec::error_policy(np_arc, &err, ctx.clone());

    // The running controllers reconcile everything, including the probeRef analysis.
    store_sa(&fake, &monitored);
    let (run, tx) = start_controllers(ctx.clone());
    wait_until(&fake, "all three reconciled", |st| {
        ["keda-secure", "monitored"]
            .iter()
            .all(|n| st.objects[&format!("{SA_BASE}/{n}")]["status"]["observedGeneration"] == 1)
            && has_status(st, &format!("{NP_BASE}/full"))
            && st.objects.contains_key("/apis/keda.sh/v1alpha1/namespaces/netstream/triggerauthentications/keda-secure-processor-kafka")
    })
    .await;
    stop(run, tx).await;

    let calls = fake.take_log();
    let secret_reads = calls
        .iter()
        .filter(|c| c.method == "GET" && c.path.starts_with(SECRET_BASE))
        .count();
    assert!(
        secret_reads >= 4,
        "the Secrets were actually read ({secret_reads})"
    );
    let sent: Vec<String> = calls
        .iter()
        .map(|c| {
            format!(
                "{} {}?{} {}",
                c.method,
                c.path,
                c.query,
                c.body.as_ref().map(|b| b.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("reconcile failed") && logged.contains("injected fault"),
        "the capture works and includes the error paths:\n{}",
        &logged[..logged.len().min(2000)]
    );
    println!(
        "checked {} requests ({} bytes) and {} log bytes against {} planted values",
        sent.len(),
        sent.iter().map(String::len).sum::<usize>(),
        logged.len(),
        values.len()
    );
    // Plain text, and the bytes as `{:?}` of a `ByteString` would print them.
    let debug_bytes = format!("{:?}", PLANTED.as_bytes());
    let mut needles: Vec<String> = vec![
        PLANTED.to_string(),
        debug_bytes.trim_matches(['[', ']']).to_string(),
    ];
    for value in &values {
        needles.push(base64(value.as_bytes()));
    }
    for needle in &needles {
        for s in &sent {
            assert!(!s.contains(needle.as_str()), "request leaks {needle}: {s}");
        }
        assert!(
            !logged.contains(needle.as_str()),
            "log leaks {needle}:\n{}",
            logged
                .lines()
                .filter(|l| l.contains(needle.as_str()))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn base64_matches_the_api_encoding() {
    assert_eq!(base64(b"password"), "cGFzc3dvcmQ=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    let s = serde_json::to_value(ByteString(b"password".to_vec())).unwrap();
    assert_eq!(s, json!("cGFzc3dvcmQ="));
}
