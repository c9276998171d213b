//! netstream's record format, shared by the probe (which writes it) and the processor (which
//! reads it). Pure functions and fixed-size types; no I/O.
//!
//! - [`key`]: the canonical flow key (the Kafka record key) and its versioned binary codec.
//! - [`value`]: the record value (metadata header + captured frame) and its codec.
//! - [`parse`]: frame parsing, link layer to flow key, with the flow semantics spelled out.
//! - [`protocol`]: protocol names, the values of the `protocol` metric label.

pub mod frag;
pub mod key;
pub mod parse;
pub mod protocol;
pub mod value;

pub use key::{Direction, Endpoint, FlowKey, KeyError, KeyKind, MAX_KEY_LEN};
pub use parse::{FrameParser, LinkType, Parsed, UnsupportedLinkType};
pub use value::{NameCheck, PacketMeta, RecordValue, ValueEncoder, ValueError};

/// Default Kafka topic for packet records.
pub const DEFAULT_TOPIC: &str = "netstream.packets";
