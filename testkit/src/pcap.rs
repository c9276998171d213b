//! Writes classic pcap files (microsecond, little-endian) with exactly known content.

use std::path::Path;

pub struct PcapWriter {
    buf: Vec<u8>,
}

impl PcapWriter {
    /// A file of `linktype` with `snaplen`.
    pub fn new(linktype: u32, snaplen: u32) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&snaplen.to_le_bytes());
        buf.extend_from_slice(&linktype.to_le_bytes());
        PcapWriter { buf }
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
        self.buf
            .extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&orig_len.to_le_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.buf)
    }
}
