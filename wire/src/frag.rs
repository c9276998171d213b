//! Remembers the ports of first IP fragments so later fragments, which carry no transport
//! header, are keyed to the same flow.
//!
//! A fixed-size, direct-mapped table: no allocation after construction, O(1) per packet, and a
//! flood of fragments can only overwrite entries, never grow memory. A later fragment whose
//! first fragment was never seen (or was overwritten) is keyed with ports 0: deterministic, and
//! the same choice tshark makes with reassembly off.

/// Identifies the datagram a fragment belongs to (RFC 791 / RFC 8200).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragId {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub id: u32,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    id: FragId,
    ports: (u16, u16),
    used: bool,
}

/// Bounded table from fragment identity to the first fragment's (src, dst) ports.
pub struct FragmentTable {
    slots: Box<[Slot]>,
    mask: usize,
}

/// Default number of in-flight fragmented datagrams remembered (power of two).
pub const DEFAULT_FRAGMENT_SLOTS: usize = 4096;

impl Default for FragmentTable {
    fn default() -> Self {
        FragmentTable::with_slots(DEFAULT_FRAGMENT_SLOTS)
    }
}

impl FragmentTable {
    /// `slots` is rounded up to a power of two (at least 1).
    pub fn with_slots(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        FragmentTable {
            slots: vec![Slot::default(); n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    #[inline]
    fn index(&self, id: &FragId) -> usize {
        // FNV-1a over the identity: cheap, deterministic, and good enough to spread IP ids.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for &b in id.src.iter().chain(id.dst.iter()) {
            mix(b);
        }
        mix(id.proto);
        for b in id.id.to_le_bytes() {
            mix(b);
        }
        (h as usize) & self.mask
    }

    /// Records a first fragment's ports.
    #[inline]
    pub fn insert(&mut self, id: FragId, ports: (u16, u16)) {
        let i = self.index(&id);
        self.slots[i] = Slot {
            id,
            ports,
            used: true,
        };
    }

    /// The ports of the first fragment of this datagram, if it was seen and not overwritten.
    #[inline]
    pub fn get(&self, id: &FragId) -> Option<(u16, u16)> {
        let slot = &self.slots[self.index(id)];
        (slot.used && slot.id == *id).then_some(slot.ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> FragId {
        FragId {
            src: [1; 16],
            dst: [2; 16],
            proto: 17,
            id: n,
        }
    }

    #[test]
    fn remembers_and_forgets() {
        let mut t = FragmentTable::with_slots(4);
        t.insert(id(1), (53, 4000));
        assert_eq!(t.get(&id(1)), Some((53, 4000)));
        assert_eq!(t.get(&id(2)), None);
        // A flood overwrites but never grows.
        for n in 0..10_000 {
            t.insert(id(n + 100), (1, 2));
        }
        assert_eq!(t.slots.len(), 4);
        assert_eq!(t.get(&id(1)), None);
        assert_eq!(t.get(&id(10_099)), Some((1, 2)));
    }
}
