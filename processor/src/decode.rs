//! Record -> packet: decoding a Kafka record's key and value, or naming why it is invalid.
//! Pure: no state but the name check's cache.

use netstream_wire::{FlowKey, KeyError, NameCheck, PacketMeta, RecordValue, ValueError};

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

/// Decodes a record's key and value (the metadata and frame; the names only checked), or
/// names what is wrong with it.
#[inline(always)]
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
