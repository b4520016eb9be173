//! Which Redis partition a facility lives in, and the keys of a partition.

use crate::ids::FacilityId;

/// One partition: every key of it carries the hash tag `{pN}`, so in a Redis Cluster all of
/// a partition's keys share one slot and a script can touch them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub u16);

impl Partition {
    /// `presence:{pN}`: the prefix of every key of the partition.
    pub fn prefix(self) -> String {
        format!("presence:{{p{}}}", self.0)
    }

    /// The deadline index: the key that routes every script of this partition.
    pub fn deadlines_key(self) -> String {
        format!("presence:{{p{}}}:deadlines", self.0)
    }
}

/// Spreads facilities over `partitions` partitions with a stable hash (FNV-1a), so every
/// function and every deployment agrees on where a facility lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioner {
    partitions: u16,
}

impl Partitioner {
    pub fn new(partitions: u16) -> Self {
        assert!(partitions > 0, "at least one partition");
        Self { partitions }
    }

    pub fn partition_of(&self, facility: &FacilityId) -> Partition {
        let mut hash: u32 = 0x811c_9dc5;
        for b in facility.as_str().bytes() {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        Partition((hash % u32::from(self.partitions)) as u16)
    }

    pub fn all(&self) -> impl Iterator<Item = Partition> + use<> {
        (0..self.partitions).map(Partition)
    }

    pub fn count(&self) -> u16 {
        self.partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let p = Partitioner::new(16);
        let f = FacilityId::parse("st-olav").unwrap();
        assert_eq!(p.partition_of(&f), p.partition_of(&f));
        let mut used = std::collections::HashSet::new();
        for i in 0..200 {
            used.insert(p.partition_of(&FacilityId::parse(&format!("f{i}")).unwrap()));
        }
        assert_eq!(used.len(), 16, "200 facilities should use every partition");
        assert_eq!(Partition(3).prefix(), "presence:{p3}");
        assert_eq!(Partition(3).deadlines_key(), "presence:{p3}:deadlines");
    }
}
