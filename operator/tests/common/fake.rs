//! An in-memory Kubernetes API server behind `tower_test::mock::pair`, in the spirit of
//! controller-rs's `ApiServerVerifier`: it records every request (so tests can assert the exact
//! calls and the RBAC test can derive the verbs used) and keeps objects so that a sequence of
//! reconciles sees consistent state (server-side apply creates/updates, status patches,
//! deletes, optimistic concurrency on PUT). Watches stream ADDED/MODIFIED/DELETED events for
//! every change (no-op writes produce none, like the real API server), so the real
//! kube-runtime controllers can run against it. Faults (e.g. 409, 500) can be injected.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type RespBody = BoxBody<Bytes, Infallible>;

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type.
    pub content_type: String,
    /// JSON body, if any.
    pub body: Option<Value>,
}

/// Parsed resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResPath {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub sub: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/g/v/...` paths.
pub fn parse_path(path: &str) -> Option<ResPath> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match *parts.first()? {
        "api" => (String::new(), parts.get(2..).unwrap_or_default()),
        "apis" => (
            parts.get(1)?.to_string(),
            parts.get(3..).unwrap_or_default(),
        ),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(ResPath {
        group,
        // Empty for a discovery path (`/api/v1`, `/apis/g/v`).
        resource: rest.first().map(|s| s.to_string()).unwrap_or_default(),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

impl Call {
    /// Parsed path.
    pub fn res(&self) -> ResPath {
        parse_path(&self.path).unwrap_or_else(|| panic!("unparseable path {}", self.path))
    }

    /// RBAC `(verb, group, resource[/sub])` pairs this request needs. An apply PATCH may
    /// create the object, which the API server authorizes as `create` too.
    pub fn rbac(&self) -> Vec<(String, String, String)> {
        let r = self.res();
        if r.resource.is_empty() {
            // Discovery: allowed to every authenticated user (`system:discovery`).
            return Vec::new();
        }
        let resource = match &r.sub {
            Some(s) => format!("{}/{}", r.resource, s),
            None => r.resource.clone(),
        };
        let watch = self.query.contains("watch=true");
        let verbs: Vec<&str> = match (self.method.as_str(), r.name.is_some()) {
            ("GET", true) => vec!["get"],
            ("GET", false) if watch => vec!["watch"],
            ("GET", false) => vec!["list"],
            ("POST", _) => vec!["create"],
            ("PUT", _) => vec!["update"],
            ("DELETE", true) => vec!["delete"],
            ("DELETE", false) => vec!["deletecollection"],
            ("PATCH", _) if self.content_type.contains("apply-patch") && r.sub.is_none() => {
                vec!["patch", "create"]
            }
            ("PATCH", _) => vec!["patch"],
            (m, _) => panic!("unexpected method {m}"),
        };
        let mut rules: Vec<(String, String, String)> = verbs
            .into_iter()
            .map(|v| (v.to_string(), r.group.clone(), resource.clone()))
            .collect();
        // Creating or changing a binding is authorized only with `bind` on the role it refers
        // to (or holding all of that role's permissions); the operator relies on `bind`.
        if self.method == "PATCH"
            && r.group == "rbac.authorization.k8s.io"
            && matches!(r.resource.as_str(), "clusterrolebindings" | "rolebindings")
        {
            rules.push((
                "bind".into(),
                "rbac.authorization.k8s.io".into(),
                "clusterroles".into(),
            ));
        }
        rules
    }

    /// The role a binding apply refers to (`roleRef.name`), for `bind` resourceNames checks.
    pub fn bound_role(&self) -> Option<String> {
        let r = self.res();
        (self.method == "PATCH"
            && matches!(r.resource.as_str(), "clusterrolebindings" | "rolebindings"))
        .then(|| {
            self.body.as_ref()?["roleRef"]["name"]
                .as_str()
                .map(String::from)
        })
        .flatten()
    }

    /// `METHOD resource/name[/sub]` for compact sequence assertions.
    pub fn short(&self) -> String {
        let r = self.res();
        if r.resource.is_empty() {
            return format!("{} {}", self.method, self.path);
        }
        let mut s = format!("{} {}", self.method, r.resource);
        if let Some(n) = &r.name {
            s.push('/');
            s.push_str(n);
        }
        if let Some(sub) = &r.sub {
            s.push('/');
            s.push_str(sub);
        }
        s
    }
}

/// A fault to inject: the first request matching `method` and containing `path_part` gets
/// `code` instead of being served.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    pub path_part: String,
    pub code: u16,
}

/// Runs once, under the server lock, just before the first request matching `method` and
/// `path_part` is served: simulates another client changing something mid-reconcile.
pub struct Hook {
    pub method: &'static str,
    pub path_part: String,
    pub run: Box<dyn FnOnce(&mut State) + Send>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook({} {})", self.method, self.path_part)
    }
}

/// Server state.
#[derive(Debug, Default)]
pub struct State {
    /// Pending hooks.
    pub hooks: Vec<Hook>,
    /// Objects by path `/api.../namespaces/ns/resource/name`.
    pub objects: BTreeMap<String, Value>,
    /// API groups whose CRDs are "not installed": every request 404s.
    pub missing_groups: BTreeSet<String>,
    /// Pending faults.
    pub faults: VecDeque<Fault>,
    /// Every request, in order.
    pub log: Vec<Call>,
    /// Open watches: (group, resource, event sink).
    watches: Vec<(String, String, mpsc::UnboundedSender<Bytes>)>,
    counter: u64,
    /// Server-side apply ownership: object key -> leaf field path -> field manager.
    pub owners: BTreeMap<String, BTreeMap<String, String>>,
}

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// What a real API server answers for a path it does not serve (a group/version whose CRD is
/// not installed, an unknown resource): `text/plain`, not a JSON `Status`. The body is sent as
/// text because it is a JSON string.
fn page_not_found() -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, Value::String(PAGE_NOT_FOUND.into()))
}

/// Body of [`page_not_found`].
pub const PAGE_NOT_FOUND: &str = "404 page not found";

/// Resources the fake serves, per API group (`""` = core); anything else is
/// [`page_not_found`], as on a real server. Groups in [`State::missing_groups`] are not served
/// at all.
pub const SERVED: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "configmaps",
            "events",
            "namespaces",
            "nodes",
            "pods",
            "secrets",
            "serviceaccounts",
            "services",
        ],
    ),
    ("apps", &["daemonsets", "deployments", "replicasets"]),
    ("autoscaling", &["horizontalpodautoscalers"]),
    ("coordination.k8s.io", &["leases"]),
    ("events.k8s.io", &["events"]),
    (
        "rbac.authorization.k8s.io",
        &[
            "clusterrolebindings",
            "clusterroles",
            "rolebindings",
            "roles",
        ],
    ),
    ("netstream.dev", &["netprobes", "streamanalyses"]),
    ("keda.sh", &["scaledobjects", "triggerauthentications"]),
    ("monitoring.coreos.com", &["servicemonitors"]),
];

fn served(group: &str) -> Option<&'static [&'static str]> {
    SERVED.iter().find(|(g, _)| *g == group).map(|(_, r)| *r)
}

impl State {
    /// Whether `r` names something this server serves (see [`SERVED`]).
    fn serves(&self, r: &ResPath) -> bool {
        !self.missing_groups.contains(&r.group)
            && served(&r.group)
                .is_some_and(|list| r.resource.is_empty() || list.contains(&r.resource.as_str()))
    }

    /// `APIResourceList` of a served group/version (discovery).
    fn discovery(&self, path: &str, r: &ResPath) -> (StatusCode, Value) {
        let group_version = path
            .trim_start_matches("/apis/")
            .trim_start_matches("/api/");
        let resources: Vec<Value> = served(&r.group)
            .unwrap_or_default()
            .iter()
            .map(|name| json!({"name": name, "singularName": "", "namespaced": true, "kind": "", "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}))
            .collect();
        (
            StatusCode::OK,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Sends a watch event for the object stored at `key` to every matching watch.
    fn notify(&mut self, type_: &str, key: &str, obj: &Value) {
        let Some(r) = parse_path(key) else { return };
        let mut line = serde_json::to_vec(&json!({"type": type_, "object": obj})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watches.retain(|(g, res, tx)| {
            *g != r.group || *res != r.resource || tx.unbounded_send(line.clone()).is_ok()
        });
    }

    /// Ends every open watch stream (like an API server restart or a load-balancer timeout);
    /// clients must re-watch. Returns how many were open.
    pub fn close_watches(&mut self) -> usize {
        std::mem::take(&mut self.watches).len()
    }

    /// Sends a watch ERROR event (e.g. 410 Gone: resourceVersion too old) on every open watch
    /// of `resource`, which makes clients re-list.
    pub fn watch_error(&mut self, resource: &str, code: u16) -> usize {
        let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": code}}))
        .unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        let mut sent = 0;
        self.watches.retain(|(_, res, tx)| {
            if res != resource {
                return true;
            }
            sent += 1;
            tx.unbounded_send(line.clone()).is_ok()
        });
        sent
    }

    /// Number of open watch streams.
    pub fn open_watches(&self) -> usize {
        self.watches.len()
    }

    /// Stores an object at its canonical path with a fresh resourceVersion, like any write
    /// by another client.
    pub fn put(&mut self, key: &str, mut obj: Value) {
        obj["metadata"]["resourceVersion"] = json!(self.next().to_string());
        self.store(key, obj);
    }

    /// Stores `obj` at `key`, notifying watches.
    pub fn store(&mut self, key: &str, obj: Value) {
        let type_ = if self.objects.contains_key(key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.to_string(), obj.clone());
        self.notify(type_, key, &obj);
    }

    /// Removes the object at `key`, notifying watches.
    pub fn delete(&mut self, key: &str) -> Option<Value> {
        let old = self.objects.remove(key)?;
        self.notify("DELETED", key, &old);
        Some(old)
    }

    fn handle(&mut self, call: &Call) -> (StatusCode, Value) {
        let Some(r) = parse_path(&call.path) else {
            return page_not_found();
        };
        if !self.serves(&r) {
            return page_not_found();
        }
        if r.resource.is_empty() {
            return match call.method.as_str() {
                "GET" => self.discovery(&call.path, &r),
                _ => status(405, "MethodNotAllowed", "discovery is read-only"),
            };
        }
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == call.method && call.path.contains(&f.path_part))
        {
            let f = self.faults.remove(i).unwrap();
            let reason = match f.code {
                409 => "Conflict",
                500 => "InternalError",
                _ => "Unknown",
            };
            return status(f.code, reason, "injected fault");
        }
        if let Some(i) = self
            .hooks
            .iter()
            .position(|h| h.method == call.method && call.path.contains(&h.path_part))
        {
            let hook = self.hooks.remove(i);
            (hook.run)(self);
        }
        let base = match &r.sub {
            Some(sub) => call.path.trim_end_matches(&format!("/{sub}")).to_string(),
            None => call.path.clone(),
        };
        if call.method == "PATCH" && call.content_type.contains("json-patch") {
            return self.json_patch(&base, call.body.clone().unwrap_or(Value::Null));
        }
        match call.method.as_str() {
            "GET" if r.name.is_some() => match self.objects.get(&base) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => status(404, "NotFound", "not found"),
            },
            "GET" => {
                // List, namespaced or across all namespaces.
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| {
                        parse_path(k).is_some_and(|o| {
                            o.group == r.group
                                && o.resource == r.resource
                                && (r.namespace.is_none() || o.namespace == r.namespace)
                        })
                    })
                    .filter(|(_, v)| selector_matches(&call.query, v))
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "PATCH" => {
                let body = call.body.clone().unwrap_or(Value::Null);
                let rv = self.next().to_string();
                if r.sub.as_deref() == Some("status") {
                    let Some(old) = self.objects.get(&base).cloned() else {
                        return status(404, "NotFound", "not found");
                    };
                    if old.get("status") == Some(&body["status"]) {
                        return (StatusCode::OK, old);
                    }
                    let mut obj = old;
                    obj["status"] = body["status"].clone();
                    obj["metadata"]["resourceVersion"] = json!(rv);
                    self.store(&base, obj.clone());
                    return (StatusCode::OK, obj);
                }
                if call.content_type.contains("apply-patch")
                    && let Err(conflict) = self.take_ownership(&base, call, &body)
                {
                    return conflict;
                }
                let mut new = body;
                match self.objects.get(&base) {
                    Some(old) => {
                        // Apply keeps fields other managers own (e.g. replicas set by an
                        // HPA): approximate with a deep merge of the applied config.
                        let mut merged = old.clone();
                        merge(&mut merged, &new);
                        let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                        if old.get("spec") != merged.get("spec") {
                            generation += 1;
                        }
                        new = merged;
                        new["metadata"]["generation"] = json!(generation);
                        new["metadata"]["resourceVersion"] =
                            old["metadata"]["resourceVersion"].clone();
                        if &new == old {
                            return (StatusCode::OK, new);
                        }
                    }
                    None => {
                        new["metadata"]["uid"] = json!(format!("uid-{}", self.next()));
                        new["metadata"]["generation"] = json!(1);
                    }
                }
                new["metadata"]["resourceVersion"] = json!(rv);
                self.store(&base, new.clone());
                (StatusCode::OK, new)
            }
            "PUT" => {
                let mut new = call.body.clone().unwrap_or(Value::Null);
                let Some(old) = self.objects.get(&base) else {
                    return status(404, "NotFound", "not found");
                };
                if old["metadata"]["resourceVersion"] != new["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified");
                }
                new["metadata"]["resourceVersion"] = json!(self.next().to_string());
                self.store(&base, new.clone());
                (StatusCode::OK, new)
            }
            "POST" => {
                let mut new = call.body.clone().unwrap_or(Value::Null);
                let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
                let path = format!("{}/{}", call.path, name);
                if self.objects.contains_key(&path) {
                    return status(409, "AlreadyExists", "already exists");
                }
                new["metadata"]["resourceVersion"] = json!(self.next().to_string());
                new["metadata"]["uid"] = json!(format!("uid-{}", self.next()));
                self.store(&path, new.clone());
                (StatusCode::CREATED, new)
            }
            "DELETE"
                if self.objects.get(&base).is_some_and(|o| {
                    o["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty())
                }) =>
            {
                // Finalizers hold the object: it only gets a deletionTimestamp.
                let mut obj = self.objects[&base].clone();
                if obj["metadata"].get("deletionTimestamp").is_none() {
                    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    obj["metadata"]["resourceVersion"] = json!(self.next().to_string());
                    self.store(&base, obj.clone());
                }
                (StatusCode::OK, obj)
            }
            "DELETE" => match self.delete(&base) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}),
                ),
                None => status(404, "NotFound", "not found"),
            },
            m => status(405, "MethodNotAllowed", m),
        }
    }
}

/// Leaf field paths of an applied configuration (`.spec.replicas`); arrays are atomic, and
/// the identifying fields belong to nobody.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = format!("{prefix}.{k}");
                if matches!(
                    path.as_str(),
                    ".apiVersion" | ".kind" | ".metadata.name" | ".metadata.namespace"
                ) {
                    continue;
                }
                leaves(v, &path, out);
            }
        }
        v => out.push((prefix.to_string(), v.clone())),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(v, |v, k| v.get(k))
}

impl State {
    /// Server-side apply's field ownership, simplified to leaves: an apply without `force`
    /// that changes a field another manager owns is a 409 naming the manager and the fields,
    /// as on a real API server; otherwise the applier owns every field it sent.
    fn take_ownership(
        &mut self,
        key: &str,
        call: &Call,
        body: &Value,
    ) -> Result<(), (StatusCode, Value)> {
        let manager = call
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldManager="))
            .unwrap_or("unknown")
            .to_string();
        let mut sent = Vec::new();
        leaves(body, "", &mut sent);
        let owners = self.owners.entry(key.to_string()).or_default();
        if !call.query.contains("force=true")
            && let Some(old) = self.objects.get(key)
        {
            let conflicts: Vec<(String, String)> = sent
                .iter()
                .filter_map(|(path, value)| {
                    let owner = owners.get(path).filter(|o| **o != manager)?;
                    (at(old, path) != Some(value)).then(|| (owner.clone(), path.clone()))
                })
                .collect();
            if let Some((owner, _)) = conflicts.first() {
                let fields: Vec<&str> = conflicts.iter().map(|(_, p)| p.as_str()).collect();
                return Err(status(
                    409,
                    "Conflict",
                    &format!(
                        "Apply failed with {} conflict(s): conflict with \"{owner}\": {}",
                        conflicts.len(),
                        fields.join(", ")
                    ),
                ));
            }
        }
        for (path, _) in sent {
            owners.insert(path, manager.clone());
        }
        Ok(())
    }

    /// RFC 6902 JSON patch limited to what kube-runtime's finalizer helper sends: `test`,
    /// `add` and `remove` on `/metadata/finalizers[/<i>|/-]`. A failed `test` is a 422 like
    /// the real API server's. An object being deleted goes away with its last finalizer.
    fn json_patch(&mut self, key: &str, ops: Value) -> (StatusCode, Value) {
        let Some(mut obj) = self.objects.get(key).cloned() else {
            return status(404, "NotFound", "not found");
        };
        for op in ops.as_array().cloned().unwrap_or_default() {
            let path = op["path"].as_str().unwrap_or("");
            let Some(rest) = path.strip_prefix("/metadata/finalizers") else {
                return status(422, "Invalid", "fake supports only /metadata/finalizers");
            };
            let list = obj["metadata"]["finalizers"].clone();
            let index = rest.strip_prefix('/');
            match (op["op"].as_str().unwrap_or(""), index) {
                ("test", None) if list == op["value"] => {}
                ("test", Some(i))
                    if i.parse::<usize>().ok().and_then(|i| list.get(i)) == Some(&op["value"]) => {}
                ("test", _) => return status(422, "Invalid", "test operation failed"),
                ("add", None) => obj["metadata"]["finalizers"] = op["value"].clone(),
                ("add", Some("-")) => {
                    let mut l = list.as_array().cloned().unwrap_or_default();
                    l.push(op["value"].clone());
                    obj["metadata"]["finalizers"] = json!(l);
                }
                ("remove", Some(i)) => {
                    let mut l = list.as_array().cloned().unwrap_or_default();
                    match i.parse::<usize>() {
                        Ok(i) if i < l.len() => {
                            l.remove(i);
                        }
                        _ => return status(422, "Invalid", "no such finalizer index"),
                    }
                    obj["metadata"]["finalizers"] = json!(l);
                }
                (o, _) => return status(422, "Invalid", &format!("unsupported op {o}")),
            }
        }
        let empty = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|l| l.is_empty());
        if empty && obj["metadata"].get("deletionTimestamp").is_some() {
            self.delete(key);
            return (StatusCode::OK, obj);
        }
        obj["metadata"]["resourceVersion"] = json!(self.next().to_string());
        self.store(key, obj.clone());
        (StatusCode::OK, obj)
    }
}

/// Equality-based `labelSelector` of a list query (`k=v,k2=v2`, URL-encoded).
fn selector_matches(query: &str, obj: &Value) -> bool {
    let Some(sel) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
    else {
        return true;
    };
    let sel = sel
        .replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2C", ",");
    sel.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
        None => true,
    })
}

/// JSON merge: objects recursively, everything else replaced.
pub fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// Handle to a running fake server.
#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    /// Starts the server and returns a client talking to it.
    pub fn start() -> (Client, Fake) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<RespBody>>();
        let fake = Fake {
            state: Arc::new(Mutex::new(State::default())),
        };
        let state = fake.state.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                    body: if bytes.is_empty() {
                        None
                    } else {
                        serde_json::from_slice(&bytes).ok()
                    },
                };
                let r = call.res();
                let unserved = !state.lock().unwrap().serves(&r);
                if call.query.contains("watch=true") && !unserved {
                    // A streaming response that stays open; changes arrive as events.
                    let (tx, rx) = mpsc::unbounded::<Bytes>();
                    {
                        let mut st = state.lock().unwrap();
                        st.log.push(call);
                        st.watches.push((r.group, r.resource, tx));
                    }
                    let frames = rx.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
                    let body = BodyExt::boxed(StreamBody::new(frames));
                    send.send_response(Response::builder().status(200).body(body).unwrap());
                    continue;
                }
                let (code, value) = {
                    let mut st = state.lock().unwrap();
                    st.log.push(call.clone());
                    st.handle(&call)
                };
                let (content_type, body) = match value {
                    Value::String(text) => ("text/plain; charset=utf-8", Bytes::from(text)),
                    v => (
                        "application/json",
                        Bytes::from(serde_json::to_vec(&v).unwrap()),
                    ),
                };
                let resp = Response::builder()
                    .status(code)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(Full::new(body).boxed())
                    .unwrap();
                send.send_response(resp);
            }
        });
        (Client::new(svc, "default"), fake)
    }

    /// Stores an object at its canonical path.
    pub fn put(&self, path: &str, obj: Value) {
        self.state.lock().unwrap().put(path, obj);
    }

    /// Reads an object.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Removes an object (simulates `kubectl delete`).
    pub fn remove(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().delete(path)
    }

    /// Marks an API group as not installed.
    pub fn missing_group(&self, group: &str) {
        self.state
            .lock()
            .unwrap()
            .missing_groups
            .insert(group.to_string());
    }

    /// Injects a fault.
    pub fn fault(&self, method: &'static str, path_part: &str, code: u16) {
        self.state.lock().unwrap().faults.push_back(Fault {
            method,
            path_part: path_part.to_string(),
            code,
        });
    }

    /// Registers a [`Hook`].
    pub fn hook(
        &self,
        method: &'static str,
        path_part: &str,
        run: impl FnOnce(&mut State) + Send + 'static,
    ) {
        self.state.lock().unwrap().hooks.push(Hook {
            method,
            path_part: path_part.to_string(),
            run: Box::new(run),
        });
    }

    /// Takes the request log.
    pub fn take_log(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    /// Compact view of the log.
    pub fn shorts(calls: &[Call]) -> Vec<String> {
        calls.iter().map(Call::short).collect()
    }
}
