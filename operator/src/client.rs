//! The operator's Kubernetes client: kube's inferred config (in-cluster, else KUBECONFIG) plus
//! a `User-Agent`. kube-client sends none, so audit logs showed the operator's requests with an
//! empty user agent and its Leases and Events with field manager `unknown` (the API server
//! derives the manager of a write without `fieldManager` from the user agent).

use http::header::{HeaderValue, USER_AGENT as USER_AGENT_HEADER};
use kube::{Client, Config};

/// `netstream-operator/<version>`.
pub const USER_AGENT: &str = concat!("netstream-operator/", env!("CARGO_PKG_VERSION"));

/// Adds the operator's `User-Agent` to every request made with `config`.
pub fn identify(config: &mut Config) {
    config.headers.retain(|(name, _)| name != USER_AGENT_HEADER);
    config
        .headers
        .push((USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT)));
}

/// A client from the inferred config, identified as the operator.
pub async fn connect() -> Result<Client, kube::Error> {
    let mut config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    identify(&mut config);
    Client::try_from(config)
}
