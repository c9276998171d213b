//! Status conditions (`Ready`, `Progressing`, `Degraded`) following the Kubernetes API
//! conventions: one entry per type, CamelCase reasons, human messages, and
//! `lastTransitionTime` that only moves when the status flips.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the CR does what it should.
pub const READY: &str = "Ready";
/// Condition type: a rollout is in progress.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs attention.
pub const DEGRADED: &str = "Degraded";

/// A condition before timestamps and generations are filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Cond {
    /// Builds a condition.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// A problem that stops (part of) the rollout, with a reason the user can look up and a
/// message that says what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, e.g. `InvalidFilter`.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    /// Builds a problem.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Conditions when a problem blocks applying the children at all.
pub fn blocked(problem: &Problem) -> Vec<Cond> {
    vec![
        Cond::new(READY, false, problem.reason, problem.message.clone()),
        Cond::new(
            PROGRESSING,
            false,
            problem.reason,
            "rollout blocked until the problem is fixed",
        ),
        Cond::new(DEGRADED, true, problem.reason, problem.message.clone()),
    ]
}

/// Turns [`Cond`]s into API conditions, keeping `lastTransitionTime` from `previous` when the
/// status of that type did not change.
pub fn finalize(
    previous: &[Condition],
    conds: Vec<Cond>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason,
                message: c.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Finds a condition by type.
pub fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Node counts and conditions of a probe DaemonSet (as returned by the API server).
pub fn daemonset(ds: &DaemonSet) -> (i32, i32, Vec<Cond>) {
    let st = ds.status.clone().unwrap_or_default();
    let desired = st.desired_number_scheduled;
    let ready = st.number_ready;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let available = st.number_available.unwrap_or(0);
    let stale = st.observed_generation.unwrap_or(0) < ds.metadata.generation.unwrap_or(0);
    let rolling = stale || updated < desired;

    let progressing = if stale {
        Cond::new(
            PROGRESSING,
            true,
            "RollingOut",
            "the DaemonSet controller has not yet observed the latest spec",
        )
    } else if rolling {
        Cond::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated} of {desired} nodes run the latest probe spec"),
        )
    } else {
        Cond::new(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("all {desired} nodes run the latest probe spec"),
        )
    };
    let ready_cond = if stale {
        Cond::new(
            READY,
            false,
            "RolloutPending",
            "waiting for the DaemonSet controller to pick up the latest spec",
        )
    } else if desired == 0 {
        Cond::new(
            READY,
            false,
            "NoNodesSelected",
            "no node matches spec.nodeSelector and spec.tolerations",
        )
    } else if ready >= desired {
        Cond::new(
            READY,
            true,
            "AllNodesReady",
            format!("{ready} of {desired} probes ready"),
        )
    } else {
        Cond::new(
            READY,
            false,
            "NodesNotReady",
            format!("{ready} of {desired} probes ready"),
        )
    };
    let degraded = if !rolling && available < desired {
        Cond::new(
            DEGRADED,
            true,
            "ProbesUnavailable",
            format!(
                "{} of {desired} probes are not available; check the probe pods' events and logs",
                desired - available
            ),
        )
    } else {
        Cond::new(DEGRADED, false, "AsExpected", "")
    };
    (desired, ready, vec![ready_cond, progressing, degraded])
}

/// Replica counts and conditions of a processor Deployment. `extra` are non-fatal problems
/// (e.g. KEDA missing) reported as `Degraded`.
pub fn deployment(dep: &Deployment, extra: &[Problem]) -> (i32, i32, Vec<Cond>) {
    let st = dep.status.clone().unwrap_or_default();
    let desired = dep.spec.replicas.unwrap_or(1);
    let replicas = st.replicas.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let stale = st.observed_generation.unwrap_or(0) < dep.metadata.generation.unwrap_or(0);
    let rolling = stale || updated < desired || replicas > updated;

    let progressing = if rolling {
        Cond::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated} of {desired} processors run the latest spec"),
        )
    } else {
        Cond::new(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("all {desired} processors run the latest spec"),
        )
    };
    let ready_cond = if ready == 0 {
        Cond::new(
            READY,
            false,
            "NoProcessorsReady",
            format!("0 of {desired} processors ready"),
        )
    } else if ready >= desired && !stale {
        Cond::new(
            READY,
            true,
            "ProcessorsReady",
            format!("{ready} of {desired} processors ready"),
        )
    } else {
        Cond::new(
            READY,
            false,
            "ProcessorsNotReady",
            format!("{ready} of {desired} processors ready"),
        )
    };
    let degraded = match extra.first() {
        Some(p) => Cond::new(
            DEGRADED,
            true,
            p.reason,
            extra
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None if !rolling && ready < desired => Cond::new(
            DEGRADED,
            true,
            "ProcessorsUnavailable",
            format!(
                "{} of {desired} processors are not ready; check the processor pods' events and logs",
                desired - ready
            ),
        ),
        None => Cond::new(DEGRADED, false, "AsExpected", ""),
    };
    (replicas, ready, vec![ready_cond, progressing, degraded])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentStatus};
    use k8s_openapi::jiff::Timestamp;

    fn ds(
        generation: i64,
        observed: i64,
        desired: i32,
        ready: i32,
        updated: i32,
        available: i32,
    ) -> DaemonSet {
        let mut ds = DaemonSet::default();
        ds.metadata.generation = Some(generation);
        ds.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            number_ready: ready,
            updated_number_scheduled: Some(updated),
            number_available: Some(available),
            ..DaemonSetStatus::default()
        });
        ds
    }

    fn reasons(conds: &[Cond]) -> Vec<(&str, bool, &str)> {
        conds
            .iter()
            .map(|c| (c.type_, c.status, c.reason.as_str()))
            .collect()
    }

    #[test]
    fn daemonset_matrix() {
        let cases = [
            (
                ds(2, 1, 3, 3, 3, 3),
                [
                    (READY, false, "RolloutPending"),
                    (PROGRESSING, true, "RollingOut"),
                    (DEGRADED, false, "AsExpected"),
                ],
            ),
            (
                ds(1, 1, 0, 0, 0, 0),
                [
                    (READY, false, "NoNodesSelected"),
                    (PROGRESSING, false, "RolloutComplete"),
                    (DEGRADED, false, "AsExpected"),
                ],
            ),
            (
                ds(1, 1, 3, 3, 3, 3),
                [
                    (READY, true, "AllNodesReady"),
                    (PROGRESSING, false, "RolloutComplete"),
                    (DEGRADED, false, "AsExpected"),
                ],
            ),
            (
                ds(1, 1, 3, 1, 2, 1),
                [
                    (READY, false, "NodesNotReady"),
                    (PROGRESSING, true, "RollingOut"),
                    (DEGRADED, false, "AsExpected"),
                ],
            ),
            (
                ds(1, 1, 3, 2, 3, 2),
                [
                    (READY, false, "NodesNotReady"),
                    (PROGRESSING, false, "RolloutComplete"),
                    (DEGRADED, true, "ProbesUnavailable"),
                ],
            ),
        ];
        for (d, want) in cases {
            let (desired, ready, conds) = daemonset(&d);
            assert_eq!(reasons(&conds), want, "{:?}", d.status);
            let st = d.status.clone().unwrap();
            assert_eq!(
                (desired, ready),
                (st.desired_number_scheduled, st.number_ready)
            );
        }
    }

    fn dep(
        generation: i64,
        observed: i64,
        spec: i32,
        replicas: i32,
        ready: i32,
        updated: i32,
    ) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(generation);
        d.spec.replicas = Some(spec);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            ..DeploymentStatus::default()
        });
        d
    }

    #[test]
    fn deployment_matrix() {
        let keda = Problem::new("KedaNotInstalled", "no keda");
        let sm = Problem::new("ServiceMonitorCrdMissing", "no sm");
        let (r, ready, conds) = deployment(&dep(1, 1, 2, 2, 2, 2), &[]);
        assert_eq!((r, ready), (2, 2));
        assert_eq!(
            reasons(&conds),
            [
                (READY, true, "ProcessorsReady"),
                (PROGRESSING, false, "RolloutComplete"),
                (DEGRADED, false, "AsExpected")
            ]
        );
        let (_, _, conds) = deployment(&dep(1, 1, 2, 2, 0, 2), &[]);
        assert_eq!(
            reasons(&conds),
            [
                (READY, false, "NoProcessorsReady"),
                (PROGRESSING, false, "RolloutComplete"),
                (DEGRADED, true, "ProcessorsUnavailable")
            ]
        );
        let (_, _, conds) = deployment(&dep(2, 1, 3, 4, 3, 1), &[]);
        assert_eq!(
            reasons(&conds),
            [
                (READY, false, "ProcessorsNotReady"),
                (PROGRESSING, true, "RollingOut"),
                (DEGRADED, false, "AsExpected")
            ]
        );
        let (_, _, conds) = deployment(&dep(1, 1, 2, 2, 2, 2), &[keda, sm]);
        assert_eq!(reasons(&conds)[2], (DEGRADED, true, "KedaNotInstalled"));
        assert_eq!(
            conds[2].message, "no keda; no sm",
            "all problems in the message"
        );
    }

    #[test]
    fn blocked_and_transition_times() {
        let p = Problem::new("InvalidFilter", "bad filter");
        assert_eq!(
            reasons(&blocked(&p)),
            [
                (READY, false, "InvalidFilter"),
                (PROGRESSING, false, "InvalidFilter"),
                (DEGRADED, true, "InvalidFilter")
            ]
        );
        let t0 = Time(Timestamp::from_second(1_000).unwrap());
        let t1 = Time(Timestamp::from_second(2_000).unwrap());
        let first = finalize(&[], blocked(&p), Some(3), &t0);
        assert!(
            first
                .iter()
                .all(|c| c.last_transition_time == t0 && c.observed_generation == Some(3))
        );
        // Same statuses (reason may change): time kept. Flipped status: time moves.
        let ok = vec![
            Cond::new(READY, true, "AllNodesReady", "3 of 3"),
            Cond::new(PROGRESSING, false, "RolloutComplete", ""),
            Cond::new(DEGRADED, true, "ProbesUnavailable", "x"),
        ];
        let second = finalize(&first, ok, Some(4), &t1);
        let time = |t: &str| &find(&second, t).unwrap().last_transition_time;
        assert_eq!(time(READY), &t1);
        assert_eq!(time(PROGRESSING), &t0);
        assert_eq!(time(DEGRADED), &t0);
    }
}
