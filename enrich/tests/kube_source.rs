//! The Kubernetes source against an in-memory API server (behind `tower_test::mock::pair`): the
//! real kube-runtime watchers list and watch it, and the updates feed a real `IdentityIndex`.
//!
//! The fake keeps a resource version and an event history like the API server: a watch resumed
//! from a version it still has replays what came after; one from before a compaction (events
//! lost in a gap) gets `410 Gone`, and the watcher re-lists. Faults (e.g. 500) can be injected
//! on the next list of a resource.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use netstream_enrich::kube::{KubeSourceConfig, spawn};
use netstream_enrich::{IdentityIndex, MemberKind, Resource, SourceStats, Update};
use serde_json::{Value, json};

// ---- the fake API server ----------------------------------------------------------------------

type RespBody = BoxBody<Bytes, Infallible>;

/// Where an object lives: (API group, plural, namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kind {
    group: String,
    resource: String,
    namespace: Option<String>,
}

/// `/api/v1/[namespaces/NS/]pods[/name]` and `/apis/G/V/...` -> kind and name.
fn parse(path: &str) -> Option<(Kind, Option<String>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match *parts.first()? {
        "api" => (String::new(), parts.get(2..)?),
        "apis" => (parts.get(1)?.to_string(), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some((
        Kind {
            group,
            resource: rest.first()?.to_string(),
            namespace,
        },
        rest.get(1).map(|s| s.to_string()),
    ))
}

/// The canonical path of an object (from its apiVersion, kind, namespace and name).
fn key(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap();
    match obj["kind"].as_str().unwrap() {
        "Pod" => format!("/api/v1/namespaces/{ns}/pods/{name}"),
        "Service" => format!("/api/v1/namespaces/{ns}/services/{name}"),
        "Node" => format!("/api/v1/nodes/{name}"),
        "ReplicaSet" => format!("/apis/apps/v1/namespaces/{ns}/replicasets/{name}"),
        "Job" => format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
        k => panic!("unknown kind {k}"),
    }
}

fn matches(watch: &Kind, obj: &Kind) -> bool {
    watch.group == obj.group
        && watch.resource == obj.resource
        && (watch.namespace.is_none() || watch.namespace == obj.namespace)
}

struct Sub {
    kind: Kind,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    rv: u64,
    /// (resource version, object kind, event line).
    history: Vec<(u64, Kind, Bytes)>,
    /// Watches resuming from before this version get 410 Gone.
    compacted: u64,
    subs: Vec<Sub>,
    /// (resource, status code) for the next list of that resource.
    faults: VecDeque<(String, u16)>,
    /// Every request: path, query and Accept header.
    log: Vec<(String, String, String)>,
}

fn line(type_: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": type_, "object": obj})).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

impl State {
    fn event(&mut self, type_: &str, path: &str, obj: &Value) {
        let (kind, _) = parse(path).unwrap();
        let l = line(type_, obj);
        self.history.push((self.rv, kind.clone(), l.clone()));
        self.subs
            .retain(|s| !matches(&s.kind, &kind) || s.tx.unbounded_send(l.clone()).is_ok());
    }

    fn put(&mut self, mut obj: Value, silently: bool) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let path = key(&obj);
        let type_ = if self.objects.contains_key(&path) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(path.clone(), obj.clone());
        if silently {
            self.compacted = self.rv;
        } else {
            self.event(type_, &path, &obj);
        }
    }

    fn delete(&mut self, path: &str, silently: bool) {
        let mut obj = self.objects.remove(path).expect("object to delete");
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if silently {
            self.compacted = self.rv;
        } else {
            self.event("DELETED", path, &obj);
        }
    }

    fn list(&mut self, kind: &Kind) -> (u16, Value) {
        if let Some(i) = self.faults.iter().position(|(r, _)| *r == kind.resource) {
            let (_, code) = self.faults.remove(i).unwrap();
            return (code, status(code, "InternalError"));
        }
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(k, _)| parse(k).is_some_and(|(o, _)| matches(kind, &o)))
            .map(|(_, v)| v.clone())
            .collect();
        (
            200,
            json!({"kind": "List", "apiVersion": "v1",
                   "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
        )
    }
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn start() -> (kube::Client, Fake) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<RespBody>>();
        let fake = Fake {
            state: Arc::new(Mutex::new(State::default())),
        };
        let state = fake.state.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let accept = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let mut st = state.lock().unwrap();
                st.log.push((path.clone(), query.clone(), accept));
                let Some((kind, None)) = parse(&path) else {
                    send.send_response(json_response(404, &status(404, "NotFound")));
                    continue;
                };
                if !query.contains("watch=true") {
                    let (code, body) = st.list(&kind);
                    send.send_response(json_response(code, &body));
                    continue;
                }
                let from: u64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = mpsc::unbounded::<Bytes>();
                if from < st.compacted {
                    // Like the API server: 200, then an ERROR event, then the end.
                    let _ = tx.unbounded_send(line("ERROR", &status(410, "Expired")));
                    drop(tx);
                } else {
                    for (rv, k, l) in &st.history {
                        if *rv > from && matches(&kind, k) {
                            let _ = tx.unbounded_send(l.clone());
                        }
                    }
                    st.subs.push(Sub { kind, tx });
                }
                let frames = rx.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
                let body = BodyExt::boxed(StreamBody::new(frames));
                send.send_response(Response::builder().status(200).body(body).unwrap());
            }
        });
        (kube::Client::new(svc, "default"), fake)
    }

    fn put(&self, obj: Value) {
        self.state.lock().unwrap().put(obj, false);
    }

    fn delete(&self, obj: &Value) {
        self.state.lock().unwrap().delete(&key(obj), false);
    }

    /// Changes while the watches are disconnected: their events are lost (compacted away).
    fn put_unseen(&self, obj: Value) {
        self.state.lock().unwrap().put(obj, true);
    }

    fn delete_unseen(&self, obj: &Value) {
        self.state.lock().unwrap().delete(&key(obj), true);
    }

    /// Ends every open watch of `resource` (in `namespace`, if given).
    fn end_watches(&self, resource: &str, namespace: Option<&str>) {
        self.state.lock().unwrap().subs.retain(|s| {
            s.kind.resource != resource
                || namespace.is_some_and(|ns| s.kind.namespace.as_deref() != Some(ns))
        });
    }

    fn fail_next_list(&self, resource: &str, code: u16) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((resource.to_string(), code));
    }

    fn requests(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().log.clone()
    }
}

fn json_response(code: u16, body: &Value) -> Response<RespBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())).boxed())
        .unwrap()
}

// ---- objects ----------------------------------------------------------------------------------

/// Seconds of the test's epoch (2027-01-15T08:00:00Z) and ns helpers.
const T0: u64 = 1_800_000_000;
const NS: u64 = 1_000_000_000;

fn rfc(sec: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(sec as i64)
        .unwrap()
        .to_string()
}

fn owner(kind: &str, name: &str) -> Value {
    let api = match kind {
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    };
    json!([{"apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"),
            "controller": true, "blockOwnerDeletion": true}])
}

/// A running pod with `ip` whose sandbox got its network at `ready` (seconds).
fn pod(ns: &str, name: &str, ip: &str, ready: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
                     "creationTimestamp": rfc(ready - 2)},
        "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "img"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "startTime": rfc(ready - 1),
                   "conditions": [{"type": "PodReadyToStartContainers", "status": "True",
                                   "lastTransitionTime": rfc(ready)}]}
    })
}

fn owned(mut p: Value, kind: &str, name: &str) -> Value {
    p["metadata"]["ownerReferences"] = owner(kind, name);
    p
}

/// The pod, finished at `at` (its container exited then).
fn finished(mut p: Value, at: u64) -> Value {
    p["status"]["phase"] = json!("Failed");
    p["status"]["containerStatuses"] = json!([{"name": "main", "image": "img", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "finishedAt": rfc(at)}}}]);
    p
}

fn replicaset(ns: &str, name: &str, deployment: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": {"selector": {}}});
    if let Some(d) = deployment {
        v["metadata"]["ownerReferences"] = owner("Deployment", d);
    }
    v
}

fn job(ns: &str, name: &str, cronjob: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": {"template": {}}});
    if let Some(c) = cronjob {
        v["metadata"]["ownerReferences"] = owner("CronJob", c);
    }
    v
}

fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-svc-{name}"),
                     "creationTimestamp": rfc(T0 - 3600)},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip]}})
}

fn node(name: &str, internal: &str, external: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": format!("uid-node-{name}"),
                     "creationTimestamp": rfc(T0 - 86400)},
        "status": {"addresses": [{"type": "InternalIP", "address": internal},
                                 {"type": "ExternalIP", "address": external},
                                 {"type": "Hostname", "address": name}]}})
}

// ---- the harness ------------------------------------------------------------------------------

struct Harness {
    fake: Fake,
    index: Arc<Mutex<IdentityIndex>>,
    updates: Arc<Mutex<Vec<Update>>>,
    stats: Arc<SourceStats>,
    /// The source's "now", in ns.
    clock: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(namespaces: &[&str], objects: Vec<Value>) -> Harness {
        Harness::start_with(namespaces, objects, &[], Duration::from_secs(10))
    }

    /// With `faults` (resource, status code) answering the first lists, in order.
    fn start_with(
        namespaces: &[&str],
        objects: Vec<Value>,
        faults: &[(&str, u16)],
        owner_wait: Duration,
    ) -> Harness {
        let (client, fake) = Fake::start();
        for o in objects {
            fake.put(o);
        }
        for (resource, code) in faults {
            fake.fail_next_list(resource, *code);
        }
        let index = Arc::new(Mutex::new(IdentityIndex::default()));
        let updates = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(SourceStats::default());
        let clock = Arc::new(AtomicU64::new((T0 + 100) * NS));
        let sink = {
            let (index, updates) = (index.clone(), updates.clone());
            Arc::new(move |u: Update| {
                updates.lock().unwrap().push(u.clone());
                index.lock().unwrap().apply(u);
            })
        };
        let c = clock.clone();
        let cfg = KubeSourceConfig {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            owner_wait,
        };
        let task = spawn(client, cfg, sink, stats.clone());
        Harness {
            fake,
            index,
            updates,
            stats,
            clock,
            task,
        }
    }

    fn set_now(&self, sec: u64) {
        self.clock.store(sec * NS, Ordering::SeqCst);
    }

    /// Waits (bounded) until `cond` holds; the source runs concurrently.
    async fn until(&self, what: &str, cond: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what}\nupdates: {:#?}",
                self.updates.lock().unwrap()
            );
            assert!(!self.task.is_finished(), "the source task ended");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// `namespace/kind/name` of the workload `ip` resolved to at `sec`, and the member's name.
    fn who(&self, ip: &str, sec: u64) -> String {
        let index = self.index.lock().unwrap();
        let r = index.resolve(ip.parse::<IpAddr>().unwrap(), sec * NS);
        let w = index.workload(r.workload).expect("a named workload");
        match index.member(r.member) {
            Some(m) => format!("{w} ({})", m.name),
            None => w.to_string(),
        }
    }

    fn resyncs(&self, kind: MemberKind) -> usize {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .filter(|u| matches!(u, Update::Resync { kind: k, .. } if *k == kind))
            .count()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn synced(h: &Harness) -> bool {
    h.stats.synced()
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn pods_services_and_nodes_are_labelled_by_their_workloads() {
    let t = T0 + 10;
    let mut host = pod("kube-system", "kube-proxy-abc", "192.168.1.10", t);
    host["spec"]["hostNetwork"] = json!(true);
    let mut pending = pod("shop", "pending", "", t);
    pending["status"] = json!({"phase": "Pending"});
    let mut hashed = owned(
        pod("shop", "web-5d8f-aaaaa", "10.0.0.1", t),
        "ReplicaSet",
        "web-5d8f",
    );
    hashed["metadata"]["labels"] = json!({"pod-template-hash": "5d8f"});
    let h = Harness::start(
        &[],
        vec![
            replicaset("shop", "web-5d8f", Some("web")),
            replicaset("shop", "lone-rs", None),
            job("shop", "backup-29000", Some("backup")),
            job("shop", "migrate", None),
            hashed,
            owned(
                pod("shop", "backup-29000-x", "10.0.0.2", t),
                "Job",
                "backup-29000",
            ),
            owned(pod("shop", "db-0", "10.0.0.3", t), "StatefulSet", "db"),
            owned(pod("shop", "agent-q", "10.0.0.4", t), "DaemonSet", "agent"),
            owned(
                pod("shop", "lone-rs-z", "10.0.0.7", t),
                "ReplicaSet",
                "lone-rs",
            ),
            owned(pod("shop", "migrate-y", "10.0.0.8", t), "Job", "migrate"),
            owned(
                pod("shop", "kafka-0", "10.0.0.9", t),
                "StrimziPodSet",
                "kafka",
            ),
            pod("shop", "debug", "10.0.0.6", t),
            host,
            pending,
            service("shop", "web", "10.96.0.10"),
            service("shop", "db", "None"),
            node("node-1", "192.168.1.10", "203.0.113.10"),
        ],
    );
    h.until("synced", synced).await;
    let at = T0 + 100;
    assert_eq!(
        h.who("10.0.0.1", at),
        "shop/deployment/web (web-5d8f-aaaaa)"
    );
    assert_eq!(
        h.who("10.0.0.2", at),
        "shop/cronjob/backup (backup-29000-x)"
    );
    assert_eq!(h.who("10.0.0.3", at), "shop/statefulset/db (db-0)");
    assert_eq!(h.who("10.0.0.4", at), "shop/daemonset/agent (agent-q)");
    assert_eq!(h.who("10.0.0.7", at), "shop/replicaset/lone-rs (lone-rs-z)");
    assert_eq!(h.who("10.0.0.8", at), "shop/job/migrate (migrate-y)");
    // A controller kind we do not name: the pod is its own workload.
    assert_eq!(h.who("10.0.0.9", at), "shop/pod/kafka-0 (kafka-0)");
    assert_eq!(h.who("10.0.0.6", at), "shop/pod/debug (debug)");
    assert_eq!(h.who("10.96.0.10", at), "shop/service/web (web)");
    // The host-network pod's address is its node's.
    assert_eq!(h.who("192.168.1.10", at), "node/node-1 (node-1)");
    assert_eq!(h.who("203.0.113.10", at), "node/node-1 (node-1)");
    assert_eq!(h.who("10.0.0.99", at), "external/external");
    // Before the pod's sandbox had its network (beyond the index's tolerance): not its.
    assert_eq!(h.who("10.0.0.6", t - 60), "external/external");
    {
        let index = h.index.lock().unwrap();
        let r = index.resolve("10.0.0.1".parse().unwrap(), at * NS);
        assert_eq!(index.member(r.member).unwrap().node.as_ref(), "node-1");
        // 8 pods with addresses of their own (not the host-network or pending one), one
        // service (the headless one has no address), one node.
        assert_eq!(index.stats().members_live, 8 + 1 + 1);
    }
    assert_eq!(h.resyncs(MemberKind::Pod), 1);
    for r in Resource::ALL {
        assert_eq!(h.stats.restarts(r), 1, "{r:?} listed once");
        assert_eq!(h.stats.errors(r), 0, "{r:?}");
    }
    assert_eq!(h.stats.events(Resource::Pod), 10);
    assert_eq!(h.stats.events(Resource::Service), 2);
    assert_eq!(h.stats.events(Resource::Node), 1);

    // Deletions close at the time they are seen; earlier traffic keeps its names.
    h.set_now(T0 + 200);
    h.fake.delete(&pod("shop", "debug", "10.0.0.6", t));
    h.fake.delete(&service("shop", "web", "10.96.0.10"));
    h.until("deletions applied", |h| {
        h.who("10.0.0.6", T0 + 300) == "external/external"
            && h.who("10.96.0.10", T0 + 300) == "external/external"
    })
    .await;
    assert_eq!(h.who("10.0.0.6", T0 + 150), "shop/pod/debug (debug)");
    assert_eq!(h.who("10.96.0.10", T0 + 150), "shop/service/web (web)");

    // A pod whose ReplicaSet (no hash label) or Job arrives after it is relabelled then.
    h.fake.put(owned(
        pod("shop", "api-77-q", "10.0.0.20", T0 + 210),
        "ReplicaSet",
        "api-77",
    ));
    h.fake.put(owned(
        pod("shop", "report-1-q", "10.0.0.21", T0 + 210),
        "Job",
        "report-1",
    ));
    h.until("new pods", |h| {
        h.who("10.0.0.20", T0 + 220) == "shop/replicaset/api-77 (api-77-q)"
            && h.who("10.0.0.21", T0 + 220) == "shop/job/report-1 (report-1-q)"
    })
    .await;
    h.fake.put(replicaset("shop", "api-77", Some("api")));
    h.fake.put(job("shop", "report-1", Some("report")));
    h.until("relabelled by their owners", |h| {
        h.who("10.0.0.20", T0 + 220) == "shop/deployment/api (api-77-q)"
            && h.who("10.0.0.21", T0 + 220) == "shop/cronjob/report (report-1-q)"
    })
    .await;
    assert!(!h.task.is_finished());
}

#[tokio::test]
async fn a_reused_address_resolves_by_capture_time_whatever_the_event_order() {
    let a = pod("shop", "a", "10.0.0.5", T0);
    let c = pod("shop", "c", "10.0.0.15", T0);
    let h = Harness::start(&[], vec![a.clone(), c.clone()]);
    h.until("synced", synced).await;

    // In order: A finishes at T0+60 (and is deleted later), B gets its address at T0+61.
    h.set_now(T0 + 70);
    h.fake.put(finished(a.clone(), T0 + 60));
    h.set_now(T0 + 80);
    h.fake.delete(&finished(a.clone(), T0 + 60));
    h.fake.put(pod("shop", "b", "10.0.0.5", T0 + 61));
    // Out of order: D is reported with C's address before C's end is.
    h.fake.put(pod("shop", "d", "10.0.0.15", T0 + 61));
    h.set_now(T0 + 90);
    h.fake.put(finished(c.clone(), T0 + 60));
    h.until("all applied", |h| {
        h.stats.events(Resource::Pod) == 2 + 5 && h.who("10.0.0.5", T0 + 90) == "shop/pod/b (b)"
    })
    .await;
    assert_eq!(h.who("10.0.0.5", T0 + 30), "shop/pod/a (a)");
    assert_eq!(h.who("10.0.0.5", T0 + 90), "shop/pod/b (b)");
    assert_eq!(h.who("10.0.0.15", T0 + 30), "shop/pod/c (c)");
    assert_eq!(h.who("10.0.0.15", T0 + 90), "shop/pod/d (d)");
    let index = h.index.lock().unwrap();
    assert!(!index.member_by_uid("uid-shop-a").unwrap().live);
    assert!(!index.member_by_uid("uid-shop-c").unwrap().live);
}

#[tokio::test]
async fn a_watch_restart_relists_and_closes_only_what_vanished_in_the_gap() {
    let p1 = pod("shop", "p1", "10.0.1.1", T0);
    let p2 = pod("shop", "p2", "10.0.1.2", T0);
    let h = Harness::start(&[], vec![p1.clone(), p2.clone()]);
    h.until("synced", synced).await;
    assert_eq!(h.resyncs(MemberKind::Pod), 1);

    // A disconnect: p2 is deleted, p5 takes its address and p3 is created while nobody
    // watches, and the API server has compacted those events away, so resuming the watch gets
    // 410 Gone.
    h.set_now(T0 + 500);
    h.fake.delete_unseen(&p2);
    h.fake.put_unseen(pod("shop", "p5", "10.0.1.2", T0 + 450));
    h.fake.put_unseen(pod("shop", "p3", "10.0.1.3", T0 + 450));
    h.fake.end_watches("pods", None);
    h.until("re-listed", |h| h.resyncs(MemberKind::Pod) == 2)
        .await;
    assert_eq!(h.stats.restarts(Resource::Pod), 2);
    // The 410 is the protocol's way to ask for a re-list, not an error.
    assert_eq!(h.stats.errors(Resource::Pod), 0);
    assert_eq!(h.who("10.0.1.1", T0 + 600), "shop/pod/p1 (p1)");
    // The reused address: p2's before p5 got it, p5's after.
    assert_eq!(h.who("10.0.1.2", T0 + 400), "shop/pod/p2 (p2)");
    assert_eq!(h.who("10.0.1.2", T0 + 460), "shop/pod/p5 (p5)");
    assert_eq!(h.who("10.0.1.2", T0 + 600), "shop/pod/p5 (p5)");
    assert!(
        !h.index
            .lock()
            .unwrap()
            .member_by_uid("uid-shop-p2")
            .unwrap()
            .live
    );
    assert_eq!(h.who("10.0.1.3", T0 + 600), "shop/pod/p3 (p3)");
    // Other resources were not restarted.
    assert_eq!(h.stats.restarts(Resource::Service), 1);

    // A watch that ends without losing events resumes where it was: no re-list.
    h.fake.end_watches("pods", None);
    h.fake.put(pod("shop", "p4", "10.0.1.4", T0 + 550));
    h.until("p4", |h| h.who("10.0.1.4", T0 + 600) == "shop/pod/p4 (p4)")
        .await;
    assert_eq!(h.stats.restarts(Resource::Pod), 2);
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff_and_counted() {
    let ip = "10.0.2.1";
    let h = Harness::start_with(
        &[],
        vec![pod("shop", "p1", ip, T0)],
        &[("pods", 500), ("nodes", 503)],
        Duration::from_secs(10),
    );
    h.until("synced after the retries", synced).await;
    assert_eq!(h.stats.errors(Resource::Pod), 1);
    assert_eq!(h.stats.errors(Resource::Node), 1);
    assert_eq!(h.stats.errors(Resource::Service), 0);
    assert_eq!(h.who(ip, T0 + 100), "shop/pod/p1 (p1)");
    let lists = |h: &Harness, path: &str| {
        h.fake
            .requests()
            .iter()
            .filter(|(p, q, _)| p == path && !q.contains("watch=true"))
            .count()
    };
    assert_eq!(lists(&h, "/api/v1/pods"), 2, "listed again after the 500");
    assert_eq!(lists(&h, "/api/v1/nodes"), 2);
    assert!(!h.task.is_finished());
}

#[tokio::test]
async fn namespaced_watches_read_only_their_namespaces_and_relist_one_at_a_time() {
    let a1 = pod("a", "a1", "10.1.0.1", T0);
    let a2 = pod("a", "a2", "10.1.0.2", T0);
    let b1 = owned(pod("b", "b1", "10.2.0.1", T0), "ReplicaSet", "web-1");
    let mut dual = pod("b", "dual", "10.2.0.2", T0);
    dual["status"]["podIPs"] = json!([{"ip": "10.2.0.2"}, {"ip": "fd00::2:2"}]);
    let mut dual_svc = service("b", "dual", "10.96.1.2");
    dual_svc["spec"]["clusterIPs"] = json!(["10.96.1.2", "fd00:96::1:2"]);
    let h = Harness::start(
        &["a", "b"],
        vec![
            a1.clone(),
            a2.clone(),
            b1.clone(),
            dual,
            dual_svc,
            replicaset("b", "web-1", Some("web")),
            pod("c", "c1", "10.3.0.1", T0),
            replicaset("c", "other", Some("other")),
            service("b", "api", "10.96.1.1"),
            service("c", "api", "10.96.2.1"),
            node("node-1", "192.168.1.10", "203.0.113.10"),
        ],
    );
    h.until("synced", synced).await;
    let at = T0 + 100;
    assert_eq!(h.who("10.1.0.1", at), "a/pod/a1 (a1)");
    assert_eq!(h.who("10.2.0.1", at), "b/deployment/web (b1)");
    assert_eq!(h.who("10.96.1.1", at), "b/service/api (api)");
    // Dual stack: both families of a pod and of a Service.
    assert_eq!(h.who("10.2.0.2", at), "b/pod/dual (dual)");
    assert_eq!(h.who("fd00::2:2", at), "b/pod/dual (dual)");
    assert_eq!(h.who("fd00:96::1:2", at), "b/service/dual (dual)");
    assert_eq!(h.who("10.3.0.1", at), "external/external");
    assert_eq!(h.who("10.96.2.1", at), "external/external");
    assert_eq!(h.who("192.168.1.10", at), "node/node-1 (node-1)");

    // Every request is in namespace a or b, but for nodes (cluster-wide).
    let mut seen = std::collections::BTreeSet::new();
    for (path, _, accept) in h.fake.requests() {
        let (kind, _) = parse(&path).unwrap();
        // ReplicaSets and Jobs are read as metadata only: their owners are all we need.
        let metadata_only = accept.contains("as=PartialObjectMetadata");
        assert_eq!(
            metadata_only,
            kind.resource == "replicasets" || kind.resource == "jobs",
            "{path}: {accept}"
        );
        if kind.resource == "nodes" {
            assert_eq!(kind.namespace, None);
        } else {
            let ns = kind.namespace.clone().unwrap_or_else(|| panic!("{path}"));
            assert!(ns == "a" || ns == "b", "{path}");
        }
        seen.insert((kind.resource, kind.namespace));
    }
    for r in ["pods", "services", "replicasets", "jobs"] {
        for ns in ["a", "b"] {
            assert!(
                seen.contains(&(r.to_string(), Some(ns.to_string()))),
                "{r} in {ns}"
            );
        }
    }

    // Namespace a's pod watch restarts after a gap in which a2 was deleted: only a2 is
    // closed (a `Resync` of all pods would close namespace b's too).
    h.set_now(T0 + 500);
    h.fake.delete_unseen(&a2);
    h.fake.end_watches("pods", Some("a"));
    h.until("a re-listed", |h| h.stats.restarts(Resource::Pod) == 3)
        .await;
    h.until("a2 closed", |h| {
        h.who("10.1.0.2", T0 + 600) == "external/external"
    })
    .await;
    assert_eq!(h.who("10.1.0.2", T0 + 400), "a/pod/a2 (a2)");
    assert_eq!(h.who("10.1.0.1", T0 + 600), "a/pod/a1 (a1)");
    assert_eq!(h.who("10.2.0.1", T0 + 600), "b/deployment/web (b1)");
    assert_eq!(h.resyncs(MemberKind::Pod), 0);
    assert_eq!(h.resyncs(MemberKind::Node), 1);
}

#[tokio::test]
async fn pods_are_read_even_when_their_owners_cannot_be_listed() {
    // No permission on ReplicaSets (the first lists are refused; the test ends before the
    // backoff has retried them all).
    let forbidden = [("replicasets", 403); 20];
    let mut hashed = owned(
        pod("shop", "web-5d8f-a", "10.0.3.1", T0),
        "ReplicaSet",
        "web-5d8f",
    );
    hashed["metadata"]["labels"] = json!({"pod-template-hash": "5d8f"});
    let h = Harness::start_with(
        &[],
        vec![
            replicaset("shop", "web-5d8f", Some("web")),
            replicaset("shop", "api-6c7b", Some("api")),
            hashed,
            owned(
                pod("shop", "api-6c7b-b", "10.0.3.2", T0),
                "ReplicaSet",
                "api-6c7b",
            ),
        ],
        &forbidden,
        Duration::from_millis(100),
    );
    h.until("pods read after the owner wait", |h| {
        h.stats.restarts(Resource::Pod) == 1 && h.resyncs(MemberKind::Pod) == 1
    })
    .await;
    // The pod-template-hash names the Deployment; without it, the ReplicaSet is the name.
    assert_eq!(
        h.who("10.0.3.1", T0 + 100),
        "shop/deployment/web (web-5d8f-a)"
    );
    assert_eq!(
        h.who("10.0.3.2", T0 + 100),
        "shop/replicaset/api-6c7b (api-6c7b-b)"
    );
    assert!(h.stats.errors(Resource::ReplicaSet) >= 1);
    // Not everything could be listed: the processor is not told the index is complete.
    assert!(!h.stats.synced());
}
