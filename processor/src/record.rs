//! One record in, counters out: decoding a Kafka record (key and value) and counting it, or
//! naming why it is invalid. Everything the consumer holds the lock for.

use netstream_wire::{FlowKey, KeyError, KeyKind, NameCheck, PacketMeta, RecordValue, ValueError};

use crate::enrichment::Enrichment;
use crate::table::{EvictReason, FlowTable, ProtocolCounters, partition_slot};

/// Why a record was skipped (the `reason` label of `netstream_records_invalid_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    MissingKey,
    EmptyKey,
    UnknownKeyVersion,
    UnknownKeyKind,
    BadKeyLength,
    NonCanonicalKey,
    MissingValue,
    EmptyValue,
    UnknownValueVersion,
    TruncatedValue,
    BadValueName,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 11] = [
        InvalidReason::MissingKey,
        InvalidReason::EmptyKey,
        InvalidReason::UnknownKeyVersion,
        InvalidReason::UnknownKeyKind,
        InvalidReason::BadKeyLength,
        InvalidReason::NonCanonicalKey,
        InvalidReason::MissingValue,
        InvalidReason::EmptyValue,
        InvalidReason::UnknownValueVersion,
        InvalidReason::TruncatedValue,
        InvalidReason::BadValueName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::MissingKey => "missing_key",
            InvalidReason::EmptyKey => "empty_key",
            InvalidReason::UnknownKeyVersion => "unknown_key_version",
            InvalidReason::UnknownKeyKind => "unknown_key_kind",
            InvalidReason::BadKeyLength => "bad_key_length",
            InvalidReason::NonCanonicalKey => "non_canonical_key",
            InvalidReason::MissingValue => "missing_value",
            InvalidReason::EmptyValue => "empty_value",
            InvalidReason::UnknownValueVersion => "unknown_value_version",
            InvalidReason::TruncatedValue => "truncated_value",
            InvalidReason::BadValueName => "bad_value_name",
        }
    }
}

impl From<&KeyError> for InvalidReason {
    fn from(e: &KeyError) -> Self {
        match e {
            KeyError::Empty => InvalidReason::EmptyKey,
            KeyError::UnknownVersion(_) => InvalidReason::UnknownKeyVersion,
            KeyError::UnknownKind(_) => InvalidReason::UnknownKeyKind,
            KeyError::BadLength { .. } => InvalidReason::BadKeyLength,
            KeyError::NotCanonical => InvalidReason::NonCanonicalKey,
        }
    }
}

impl From<&ValueError> for InvalidReason {
    fn from(e: &ValueError) -> Self {
        match e {
            ValueError::Empty => InvalidReason::EmptyValue,
            ValueError::UnknownVersion(_) => InvalidReason::UnknownValueVersion,
            ValueError::Truncated { .. } => InvalidReason::TruncatedValue,
            ValueError::BadName => InvalidReason::BadValueName,
        }
    }
}

/// A skipped record: the reason label and the decoder's message (for the rate-limited log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Invalid {
    pub reason: InvalidReason,
    pub detail: InvalidDetail,
}

/// The decoder's own error, kept for the log line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDetail {
    #[error("record has no key")]
    MissingKey,
    #[error("record has no value")]
    MissingValue,
    #[error("bad key: {0}")]
    Key(KeyError),
    #[error("bad value: {0}")]
    Value(ValueError),
}

/// Everything one processor counts, behind one lock.
#[derive(Debug)]
pub struct Aggregate {
    pub flows: FlowTable,
    pub protocols: ProtocolCounters,
    /// Every record taken from the topic, valid or not.
    pub consumed: u64,
    invalid: [u64; InvalidReason::ALL.len()],
    /// Kubernetes enrichment, when on (`None` costs the count path one branch).
    pub enrichment: Option<Enrichment>,
    /// The probes' names, validated once while they repeat.
    names: NameCheck,
}

impl Aggregate {
    pub fn new(max_flows: usize, idle_ticks: u32) -> Self {
        Aggregate {
            flows: FlowTable::new(max_flows, idle_ticks),
            protocols: ProtocolCounters::default(),
            consumed: 0,
            invalid: [0; InvalidReason::ALL.len()],
            enrichment: None,
            names: NameCheck::default(),
        }
    }

    /// With enrichment on.
    pub fn with_enrichment(mut self, enrichment: Enrichment) -> Self {
        self.enrichment = Some(enrichment);
        self
    }

    /// The once-a-second upkeep at processor tick `now`: idle flows out, series of workloads
    /// that are gone expired, old identity history pruned.
    pub fn maintain(&mut self, now: u32) {
        self.flows.evict_idle(now);
        if let Some(e) = &mut self.enrichment {
            e.maintain(now);
        }
    }

    /// Drops the flows of revoked `partitions` (their new owner counts them from now on).
    /// Per-protocol and per-workload counters stay: they are totals of what this processor
    /// counted, and a counter must not go down.
    pub fn revoke(&mut self, partitions: &[i32]) -> usize {
        let slots: Vec<u16> = partitions.iter().map(|&p| partition_slot(p)).collect();
        self.flows.remove_partitions(&slots)
    }

    /// Records skipped for `reason`.
    pub fn invalid(&self, reason: InvalidReason) -> u64 {
        self.invalid[reason as usize]
    }

    pub fn evicted(&self, reason: EvictReason) -> u64 {
        self.flows.evicted(reason)
    }

    /// Counts one record at processor tick `now`: its protocol always, its flow when it is an
    /// IP flow (non-IP and unparsed frames count only per protocol). Returns the key, or why the
    /// record is invalid (then counted in `netstream_records_invalid_total` only).
    #[inline]
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now: u32,
    ) -> Result<FlowKey, Invalid> {
        self.record_in(0, key, value, now)
    }

    /// [`record`](Self::record) of a record from Kafka `partition`.
    #[inline]
    pub fn record_in(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now: u32,
    ) -> Result<FlowKey, Invalid> {
        self.consumed += 1;
        match decode(key, value, &mut self.names) {
            Ok((key, meta, _frame)) => {
                self.protocols.add(&key, meta.wire_len);
                if matches!(key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6) {
                    let initiator_is_b =
                        self.flows
                            .update_in(&key, &meta, now, partition_slot(partition));
                    if let Some(e) = &mut self.enrichment {
                        e.count(&key, initiator_is_b, &meta, now);
                    }
                }
                Ok(key)
            }
            Err(e) => {
                self.invalid[e.reason as usize] += 1;
                Err(e)
            }
        }
    }
}

/// Decodes a record's key and value (the metadata and frame; the names only checked), or
/// names what is wrong with it.
pub fn decode<'a>(
    key: Option<&[u8]>,
    value: Option<&'a [u8]>,
    names: &mut NameCheck,
) -> Result<(FlowKey, PacketMeta, &'a [u8]), Invalid> {
    let key = key.ok_or(Invalid {
        reason: InvalidReason::MissingKey,
        detail: InvalidDetail::MissingKey,
    })?;
    let key = FlowKey::decode(key).map_err(|e| Invalid {
        reason: InvalidReason::from(&e),
        detail: InvalidDetail::Key(e),
    })?;
    let value = value.ok_or(Invalid {
        reason: InvalidReason::MissingValue,
        detail: InvalidDetail::MissingValue,
    })?;
    let (meta, frame) = RecordValue::decode_meta(value, names).map_err(|e| Invalid {
        reason: InvalidReason::from(&e),
        detail: InvalidDetail::Value(e),
    })?;
    Ok((key, meta, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_wire::{Direction, Endpoint, PacketMeta, ValueEncoder};

    fn value(direction: Direction, wire_len: u32) -> Vec<u8> {
        ValueEncoder::new("node", "eth0")
            .encode(
                &PacketMeta {
                    direction,
                    tcp_syn: false,
                    link_type: 1,
                    wire_len,
                    ts_ns: 1,
                },
                &[0u8; 14],
            )
            .to_vec()
    }

    #[test]
    fn counts_ip_flows_and_protocols_but_non_ip_only_per_protocol() {
        let mut agg = Aggregate::new(10, 0);
        let (udp, _) = FlowKey::new(
            KeyKind::Ipv4,
            17,
            Endpoint::v4([10, 0, 0, 1], 1),
            Endpoint::v4([10, 0, 0, 2], 2),
        );
        let (arp, _) = FlowKey::new(
            KeyKind::NonIp,
            0x0806,
            Endpoint::mac([2, 0, 0, 0, 0, 1]),
            Endpoint::mac([0xff; 6]),
        );
        let v = value(Direction::AToB, 100);
        assert_eq!(agg.record(Some(&udp.to_vec()), Some(&v), 0), Ok(udp));
        assert_eq!(agg.record(Some(&arp.to_vec()), Some(&v), 0), Ok(arp));
        assert_eq!(
            agg.record(Some(&FlowKey::UNPARSED.to_vec()), Some(&v), 0),
            Ok(FlowKey::UNPARSED)
        );
        assert_eq!(agg.flows.len(), 1);
        let protos: Vec<_> = agg.protocols.seen().map(|(n, t)| (n, t.bytes)).collect();
        assert_eq!(protos, [("udp", 100), ("arp", 100), ("unparsed", 100)]);
        assert_eq!(agg.consumed, 3);
    }

    #[test]
    fn invalid_records_are_named_and_counted() {
        let mut agg = Aggregate::new(10, 0);
        let (k, _) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([1, 1, 1, 1], 1),
            Endpoint::v4([2, 2, 2, 2], 2),
        );
        let good_key = k.to_vec();
        let good_value = value(Direction::AToB, 60);
        let mut bad_version = good_key.clone();
        bad_version[0] = 9;
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, InvalidReason);
        let cases: [Case; 9] = [
            (None, Some(&good_value), InvalidReason::MissingKey),
            (Some(&[]), Some(&good_value), InvalidReason::EmptyKey),
            (
                Some(&bad_version),
                Some(&good_value),
                InvalidReason::UnknownKeyVersion,
            ),
            (
                Some(&[1, 9]),
                Some(&good_value),
                InvalidReason::UnknownKeyKind,
            ),
            (
                Some(&good_key[..10]),
                Some(&good_value),
                InvalidReason::BadKeyLength,
            ),
            (Some(&good_key), None, InvalidReason::MissingValue),
            (Some(&good_key), Some(&[]), InvalidReason::EmptyValue),
            (
                Some(&good_key),
                Some(&[7, 1, 2]),
                InvalidReason::UnknownValueVersion,
            ),
            (
                Some(&good_key),
                Some(&good_value[..10]),
                InvalidReason::TruncatedValue,
            ),
        ];
        for (key, val, reason) in cases {
            let err = agg.record(key, val, 0).unwrap_err();
            assert_eq!(err.reason, reason, "{err}");
            assert_eq!(agg.invalid(reason), 1);
        }
        assert_eq!(agg.consumed, 9);
        assert_eq!(agg.flows.len(), 0);
        assert_eq!(agg.protocols.seen().count(), 0);
        // Every reason has a distinct label.
        let mut labels: Vec<_> = InvalidReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), InvalidReason::ALL.len());
    }
}
