//! Shard identity, sequence numbers and lineage (parents before children). Pure.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A shard id as DynamoDB Streams names it (`shardId-00000001700000000000-abcdef12`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub String);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record's sequence number: a decimal string of up to 40 digits, ordered by numeric value
/// (so `"9"` < `"10"`, unlike string order); leading zeros do not matter to equality either.
#[derive(Debug, Clone)]
pub struct SequenceNumber(String);

impl PartialEq for SequenceNumber {
    fn eq(&self, other: &Self) -> bool {
        self.digits() == other.digits()
    }
}

impl Eq for SequenceNumber {}

impl std::hash::Hash for SequenceNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digits().hash(state);
    }
}

impl SequenceNumber {
    /// Wraps a sequence number; leading zeros do not change its order.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The number as the API returned it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn digits(&self) -> &str {
        let t = self.0.trim_start_matches('0');
        if t.is_empty() {
            "0"
        } else {
            t
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.digits(), other.digits());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shard of a stream, as DescribeStream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: ShardId,
    /// DynamoDB Streams shards have at most one parent (a split gives two children one parent).
    pub parent: Option<ShardId>,
    /// Set once the shard is closed: no record is written to it after this one.
    pub ending_sequence_number: Option<SequenceNumber>,
}

/// Orders `shards` so every parent comes before its children (ties keep the input order).
/// Parents not in the list (trimmed from the stream) impose nothing.
#[must_use]
pub fn lineage_order(shards: &[Shard]) -> Vec<Shard> {
    let known: HashSet<&ShardId> = shards.iter().map(|s| &s.id).collect();
    let mut children: HashMap<&ShardId, Vec<&Shard>> = HashMap::new();
    let mut roots = Vec::new();
    for shard in shards {
        match &shard.parent {
            Some(p) if known.contains(p) && p != &shard.id => {
                children.entry(p).or_default().push(shard);
            }
            _ => roots.push(shard),
        }
    }
    let mut out = Vec::with_capacity(shards.len());
    let mut queue: std::collections::VecDeque<&Shard> = roots.into();
    while let Some(shard) = queue.pop_front() {
        out.push(shard.clone());
        if let Some(kids) = children.remove(&shard.id) {
            queue.extend(kids);
        }
    }
    // A parent cycle cannot come from DynamoDB; keep such shards rather than lose them.
    for kids in children.into_values() {
        out.extend(kids.into_iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shard(id: &str, parent: Option<&str>) -> Shard {
        Shard {
            id: ShardId(id.into()),
            parent: parent.map(|p| ShardId(p.into())),
            ending_sequence_number: None,
        }
    }

    #[test]
    fn sequence_numbers_order_by_numeric_value() {
        let s = |v: &str| SequenceNumber::new(v);
        assert!(s("9") < s("10"));
        assert!(s("000000000000000000001") < s("2"));
        assert_eq!(s("007").cmp(&s("7")), Ordering::Equal);
        assert!(s("49622283460000000000000000001") > s("4962228346000000000000000000"));
    }

    #[test]
    fn parents_come_before_children_even_when_listed_after() {
        let ordered = lineage_order(&[
            shard("c1", Some("p")),
            shard("gc", Some("c1")),
            shard("p", None),
            shard("c2", Some("p")),
            shard("orphan", Some("trimmed")),
        ]);
        let ids: Vec<_> = ordered.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, vec!["p", "orphan", "c1", "c2", "gc"]);
    }

    proptest! {
        #[test]
        fn lineage_order_keeps_every_shard_and_puts_parents_first(
            parents in proptest::collection::vec(proptest::option::of(0usize..40), 1..40)
        ) {
            // Shard i may only have a parent with a smaller index: a forest, as DynamoDB makes.
            let shards: Vec<_> = parents.iter().enumerate().map(|(i, p)| {
                let parent = p.filter(|&p| p < i).map(|p| format!("s{p}"));
                shard(&format!("s{i}"), parent.as_deref())
            }).rev().collect();
            let ordered = lineage_order(&shards);
            prop_assert_eq!(ordered.len(), shards.len());
            let pos: HashMap<_, _> = ordered.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
            for s in &ordered {
                if let Some(p) = &s.parent {
                    prop_assert!(pos[p] < pos[&s.id]);
                }
            }
        }
    }
}
