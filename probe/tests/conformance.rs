//! Conformance over the real captures in `../shared/pcaps` (skipped when absent): every file is
//! read through libpcap exactly as the probe replays it, parsed without panic, and its
//! per-protocol and per-flow packet counts equal the expected ones (`F.flows.json`, made from
//! tshark's outer-header view with netstream's fragment rule).

use std::collections::BTreeMap;
use std::path::Path;

use netstream_probe::source;
use netstream_testkit::tools;
use netstream_wire::{FrameParser, KeyKind};

#[derive(Debug, Default, PartialEq)]
struct Counts {
    frames: u64,
    protocols: BTreeMap<String, u64>,
    flows: BTreeMap<String, u64>,
}

fn count(path: &Path) -> Result<Counts, String> {
    let mut src = source::open_file(path, None).map_err(|e| e.to_string())?;
    let mut parser = FrameParser::new();
    let mut c = Counts::default();
    loop {
        let p = match src.capture.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(e.to_string()),
        };
        c.frames += 1;
        let parsed = parser.parse(src.link, p.data);
        *c.protocols
            .entry(parsed.key.protocol_name().to_string())
            .or_default() += 1;
        if matches!(parsed.key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6) {
            *c.flows.entry(parsed.key.to_string()).or_default() += 1;
        }
    }
    Ok(c)
}

fn expected(json: &serde_json::Value) -> Counts {
    let map = |v: &serde_json::Value| -> BTreeMap<String, u64> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(u64::MAX)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Counts {
        frames: json["frames"].as_u64().unwrap_or(u64::MAX),
        protocols: map(&json["protocols"]),
        flows: map(&json["flows"]),
    }
}

/// Where netstream decides differently from tshark on purpose: the file, why, and the counts
/// netstream gives instead.
const DIFFERENCES: &[(&str, &str, &str)] = &[(
    "ipv6_frag6_negative_len.pcap",
    "the IPv6 fragment header (next header 2, offset 160) is complete in the 70 captured bytes; \
     netstream skips it as the flow rules say and names the protocol behind it (ip-2, IGMP). \
     tshark's fragment dissector throws on the inconsistent payload length and leaves ip-44",
    r#"{"frames": 1, "protocols": {"ip-2": 1}, "flows": {"ip-2|7fff:ffff:c3b2:a102:1305:80:38:2949|0|9675:86dd:7300:2c:1c7f:ffff:ffc3:b2a1|0": 1}}"#,
)];

#[test]
fn shared_captures_match_expected_counts() {
    let Some(dir) = tools::shared_pcaps() else {
        eprintln!(
            "SKIPPED: ../shared/pcaps not present (set NETSTREAM_PCAPS to run the conformance suite)"
        );
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("reading the pcaps folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no captures in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let exp_path = path.with_file_name(format!(
            "{}.flows.json",
            path.file_name().unwrap().to_string_lossy()
        ));
        let Ok(text) = std::fs::read_to_string(&exp_path) else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = match DIFFERENCES.iter().find(|(f, _, _)| *f == name) {
            Some((_, why, ours)) => {
                eprintln!("{name}: differs from tshark on purpose: {why}");
                ours.to_string()
            }
            None => text,
        };
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid flows.json");
        let got = count(path);
        if let Some(err) = json.get("expect_error").and_then(|e| e.as_str()) {
            match got {
                Err(msg) if msg.contains(err) => {}
                other => failures.push(format!("{name}: expected error {err:?}, got {other:?}")),
            }
            continue;
        }
        match got {
            Ok(c) => {
                let want = expected(&json);
                if c != want {
                    failures.push(format!("{name}:\n  got  {c:?}\n  want {want:?}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} captures differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{} captures match", files.len());
}
