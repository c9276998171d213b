//! Writes capture files with exactly known content: classic pcap (micro- or nanosecond, either
//! byte order) and pcapng.

use std::path::Path;

/// Which file format [`PcapWriter`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap; `nanos` selects the nanosecond magic, `big_endian` the byte order.
    Pcap { nanos: bool, big_endian: bool },
    /// pcapng: section header, one interface description (ns resolution), enhanced packets.
    Pcapng,
}

pub struct PcapWriter {
    buf: Vec<u8>,
    format: Format,
}

impl PcapWriter {
    /// A classic µs little-endian file of `linktype` with `snaplen`.
    pub fn new(linktype: u32, snaplen: u32) -> Self {
        Self::with_format(
            linktype,
            snaplen,
            Format::Pcap {
                nanos: false,
                big_endian: false,
            },
        )
    }

    pub fn with_format(linktype: u32, snaplen: u32, format: Format) -> Self {
        let mut w = PcapWriter {
            buf: Vec::with_capacity(4096),
            format,
        };
        match format {
            Format::Pcap { nanos, .. } => {
                w.u32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
                w.u16(2);
                w.u16(4);
                w.u32(0);
                w.u32(0);
                w.u32(snaplen);
                w.u32(linktype);
            }
            Format::Pcapng => {
                // Section header block.
                w.u32(0x0a0d_0d0a);
                w.u32(28);
                w.u32(0x1a2b_3c4d);
                w.u16(1);
                w.u16(0);
                w.buf.extend_from_slice(&(-1i64).to_le_bytes());
                w.u32(28);
                // Interface description block with if_tsresol = 9 (nanoseconds).
                w.u32(1);
                w.u32(32);
                w.u16(linktype as u16);
                w.u16(0);
                w.u32(snaplen);
                w.u16(9);
                w.u16(1);
                w.buf.extend_from_slice(&[9, 0, 0, 0]);
                w.u32(0);
                w.u32(32);
            }
        }
        w
    }

    fn big_endian(&self) -> bool {
        matches!(
            self.format,
            Format::Pcap {
                big_endian: true,
                ..
            }
        )
    }

    fn u32(&mut self, v: u32) {
        let b = if self.big_endian() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    fn u16(&mut self, v: u16) {
        let b = if self.big_endian() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.buf.extend_from_slice(&b);
    }

    pub fn ethernet() -> Self {
        Self::new(1, 262_144)
    }

    /// Appends a packet captured whole.
    pub fn packet(&mut self, ts_us: u64, data: &[u8]) -> &mut Self {
        self.packet_cut(ts_us, data, data.len() as u32)
    }

    /// Appends a packet whose wire length is `orig_len` (>= data.len() when cut by snaplen).
    pub fn packet_cut(&mut self, ts_us: u64, data: &[u8], orig_len: u32) -> &mut Self {
        self.packet_ns(ts_us * 1000, data, orig_len)
    }

    /// Appends a packet with a nanosecond timestamp (kept whole in ns formats, cut to µs in the
    /// classic µs format).
    pub fn packet_ns(&mut self, ts_ns: u64, data: &[u8], orig_len: u32) -> &mut Self {
        match self.format {
            Format::Pcap { nanos, .. } => {
                self.u32((ts_ns / 1_000_000_000) as u32);
                let frac = ts_ns % 1_000_000_000;
                self.u32(if nanos { frac } else { frac / 1000 } as u32);
                self.u32(data.len() as u32);
                self.u32(orig_len);
                self.buf.extend_from_slice(data);
            }
            Format::Pcapng => {
                let padded = data.len().div_ceil(4) * 4;
                let total = (32 + padded) as u32;
                self.u32(6);
                self.u32(total);
                self.u32(0);
                self.u32((ts_ns >> 32) as u32);
                self.u32(ts_ns as u32);
                self.u32(data.len() as u32);
                self.u32(orig_len);
                self.buf.extend_from_slice(data);
                self.buf.resize(self.buf.len() + padded - data.len(), 0);
                self.u32(total);
            }
        }
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.buf)
    }
}
