//! Errors a user can cause at start say what to change, and the process exits non-zero.

mod common;

use netstream_testkit::broker::Broker;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(common::PROCESSOR)
        .args(args)
        .env("NETSTREAM_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .output()
        .expect("run processor");
    (
        out.status.code().unwrap_or(-1),
        netstream_testkit::process::output_text(&out),
    )
}

#[test]
fn help_documents_every_flag() {
    let (code, help) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--brokers",
        "--topic",
        "--group",
        "--metrics-addr",
        "--max-flows",
        "--flow-idle-timeout",
        "--consumer-config",
        "--branch-topic-prefix",
        "--branch-producer-config",
        "--commit-interval",
        "--connect-timeout",
        "--enrichment",
        "--identity-file",
        "--enrichment-namespaces",
        "--subnet-label",
        "--workload-expiry",
        "--max-workload-series",
        "--flow-pod-labels",
        "--enrichment-sync-timeout",
        "--analyses",
        "--config",
        "--threads",
        "NETSTREAM_BROKERS",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn start_errors_name_the_fix() {
    let base = ["--group", "g", "--metrics-addr", "127.0.0.1:0"];
    // Analyses: checked before anything connects.
    for (analyses, extra, needle) in [
        (
            "flows,dns",
            &[][..],
            "unknown analysis \"dns\" in --analyses; known: flows, workloads, branch",
        ),
        (
            "workloads",
            &[][..],
            "the workloads analysis needs flows: add flows to --analyses",
        ),
        (
            "flows,workloads",
            &[][..],
            "the workloads analysis needs enrichment",
        ),
        (
            "flows,branch",
            &[][..],
            "the branch analysis needs --branch-topic-prefix",
        ),
        (
            "flows",
            &["--branch-topic-prefix", "b"][..],
            "branch is not in --analyses",
        ),
    ] {
        let (code, out) = run(&[
            &base[..],
            &["--brokers", "127.0.0.1:1", "--analyses", analyses],
            extra,
        ]
        .concat());
        assert_eq!(code, 2, "{analyses}: {out}");
        assert!(out.contains(needle), "{analyses}: {out}");
    }
    let (code, out) = run(&[
        &base[..],
        &["--brokers", "127.0.0.1:1", "--connect-timeout", "1s"],
    ]
    .concat());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot reach the Kafka brokers at 127.0.0.1:1"),
        "{out}"
    );

    let (code, out) = run(&[
        &base[..],
        &[
            "--brokers",
            "127.0.0.1:1",
            "--consumer-config",
            "enable.auto.offset.store=true",
        ],
    ]
    .concat());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("enable.auto.offset.store") && out.contains("remove it"),
        "{out}"
    );

    // A config file: unknown keys and analyses named, read before anything connects.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("processor.yaml");
    let file_arg = file.display().to_string();
    for (text, needle) in [
        ("analyses: {flows: {maxFlow: 5}}", "unknown field `maxFlow`"),
        ("analyses: {dns: {}}", "unknown field `dns`"),
        (
            "analyses: {workloads: {}}",
            "the workloads analysis needs flows",
        ),
        (
            "enrichment: {mode: file}",
            "enrichment.mode file needs enrichment.identityFile",
        ),
    ] {
        std::fs::write(&file, text).expect("write config");
        let (code, out) = run(&[
            &base[..],
            &["--brokers", "127.0.0.1:1", "--config", &file_arg],
        ]
        .concat());
        assert_eq!(code, 2, "{text}: {out}");
        assert!(out.contains(needle), "{text}: {out}");
    }

    let (code, out) = run(&[&base[..], &["--brokers", "127.0.0.1:1", "--max-flows", "0"]].concat());
    assert_ne!(code, 0);
    assert!(out.contains("--max-flows"), "{out}");

    let Some(broker) = Broker::start() else {
        return;
    };
    let b = broker.bootstrap();
    let (code, out) = run(&[&base[..], &["--brokers", &b, "--topic", "no-such-topic"]].concat());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("topic no-such-topic does not exist") && out.contains("create it"),
        "{out}"
    );

    broker.create_topic("exists", 1).expect("topic");
    let (code, out) = run(&[
        &base[..],
        &[
            "--brokers",
            &b,
            "--topic",
            "exists",
            "--branch-topic-prefix",
            "nobranch",
        ],
    ]
    .concat());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("branch topic nobranch.tcp does not exist"),
        "{out}"
    );
}

#[test]
fn enrichment_start_errors_name_the_fix() {
    let base = [
        "--brokers",
        "127.0.0.1:1",
        "--group",
        "g",
        "--metrics-addr",
        "127.0.0.1:0",
        "--connect-timeout",
        "1s",
    ];
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ids.yaml");
    std::fs::write(
        &bad,
        "pods:\n  - {namespace: a, name: p, ips: [10.0.0.300]}\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--enrichment", "file"], "needs --identity-file PATH"),
        (
            &["--identity-file", "/x.yaml"],
            "only used with --enrichment file",
        ),
        (
            &[
                "--enrichment",
                "file",
                "--identity-file",
                "/nonexistent/ids.yaml",
            ],
            "cannot read identity file /nonexistent/ids.yaml",
        ),
        (&["--enrichment", "file", "--identity-file", bad], bad),
        (&["--subnet-label", "10.0.0.0/8"], "is not CIDR=NAME"),
    ];
    for (extra, needle) in cases {
        let (code, out) = run(&[&base[..], extra].concat());
        assert_eq!(code, 2, "{extra:?}: {out}");
        assert!(out.contains(needle), "{extra:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    // Kubernetes mode outside a cluster and without a kubeconfig: a clear error, not a hang.
    let out = Command::new(common::PROCESSOR)
        .args(base)
        .args(["--enrichment", "kubernetes"])
        .env("NETSTREAM_LOG_FORMAT", "text")
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run processor");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot build a Kubernetes client"), "{said}");
}
