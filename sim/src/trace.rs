//! The trace hash: a SHA-256 chain over every processed event.
//!
//! Each event is reduced to a digest of (index, time, kind tag, node ids, digest of its payload,
//! digest of the outputs its handlers produced); the trace hash is `H(previous ‖ event digest)`.
//! Two runs with the same seed and scenario must end with the same hash; when they do not, the
//! optional per-event digest log pinpoints the first event that differs
//! ([`first_divergence`], behind `sparksim check-determinism`).

use reference_node::types::{Micros, NodeId};
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest.
pub type Hash32 = [u8; 32];

/// What kind of event was processed (part of the hashed record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventTag {
    Start = 1,
    Deliver = 2,
    Timer = 3,
    Crash = 4,
    Restart = 5,
    Block = 6,
    BlockNotify = 7,
    ChainSubmit = 8,
    Command = 9,
    PartitionStart = 10,
    PartitionEnd = 11,
}

/// An incremental digest fed with bincode encodings (no intermediate buffers).
pub struct Digester(Sha256);

impl Default for Digester {
    fn default() -> Self {
        Digester(Sha256::new())
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Digester {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.0.update(b);
    }

    /// Appends the bincode encoding of `value`. Our message, timer, command and observation
    /// types are plain data, for which bincode cannot fail; should one ever fail, the error text
    /// is hashed instead so the trace still reflects it.
    pub fn value<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        if let Err(e) = bincode::serialize_into(&mut *self, value) {
            debug_assert!(false, "bincode failed on a traced value: {e}");
            self.0.update(e.to_string().as_bytes());
        }
    }

    pub fn finish(self) -> Hash32 {
        self.0.finalize().into()
    }
}

/// The digest of a single value.
pub fn digest_of<T: serde::Serialize + ?Sized>(value: &T) -> Hash32 {
    let mut d = Digester::new();
    d.value(value);
    d.finish()
}

/// One line of the per-event digest log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDigest {
    pub index: u64,
    pub time: Micros,
    pub digest: Hash32,
    pub description: String,
}

/// The running trace hash, plus the per-event log when enabled.
pub struct Trace {
    hash: Hash32,
    log: Option<Vec<EventDigest>>,
}

impl Trace {
    /// `keep_log` enables the per-event digest log (memory grows with the run).
    pub fn new(keep_log: bool) -> Self {
        Trace {
            hash: [0; 32],
            log: keep_log.then(Vec::new),
        }
    }

    /// Folds one processed event into the hash; returns the event's own digest.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        index: u64,
        time: Micros,
        tag: EventTag,
        nodes: &[NodeId],
        payload: &Hash32,
        outputs: &Hash32,
        description: &str,
    ) -> Hash32 {
        let mut d = Digester::new();
        d.bytes(&index.to_le_bytes());
        d.bytes(&time.0.to_le_bytes());
        d.bytes(&[tag as u8]);
        d.value(nodes);
        d.bytes(payload);
        d.bytes(outputs);
        let digest = d.finish();
        let mut chain = Sha256::new();
        chain.update(self.hash);
        chain.update(digest);
        self.hash = chain.finalize().into();
        if let Some(log) = &mut self.log {
            log.push(EventDigest {
                index,
                time,
                digest,
                description: description.to_owned(),
            });
        }
        digest
    }

    /// The hash over every event recorded so far.
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    /// The per-event log, if enabled.
    pub fn log(&self) -> Option<&[EventDigest]> {
        self.log.as_deref()
    }
}

/// Where two runs first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub index: u64,
    pub time: Micros,
    pub left_description: String,
    pub right_description: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runs diverge at event {} (t={}):\n  left:  {}\n  right: {}",
            self.index, self.time, self.left_description, self.right_description
        )
    }
}

/// Describes the end of a shorter trace in a [`Divergence`].
pub const END_OF_TRACE: &str = "<end of trace>";

/// The first event at which two digest logs differ (in time, digest, or length).
pub fn first_divergence(a: &[EventDigest], b: &[EventDigest]) -> Option<Divergence> {
    for (x, y) in a.iter().zip(b) {
        if x.digest != y.digest || x.time != y.time {
            return Some(Divergence {
                index: x.index,
                time: x.time.min(y.time),
                left_description: x.description.clone(),
                right_description: y.description.clone(),
            });
        }
    }
    let describe =
        |e: Option<&EventDigest>| e.map_or(END_OF_TRACE.to_owned(), |e| e.description.clone());
    match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Equal => None,
        _ => {
            let n = a.len().min(b.len());
            let longer = a.get(n).or_else(|| b.get(n))?;
            Some(Divergence {
                index: longer.index,
                time: longer.time,
                left_description: describe(a.get(n)),
                right_description: describe(b.get(n)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(descs: &[(&str, u8)]) -> Vec<EventDigest> {
        let mut t = Trace::new(true);
        for (i, (d, p)) in descs.iter().enumerate() {
            t.record(
                i as u64,
                Micros(i as u64),
                EventTag::Start,
                &[],
                &[*p; 32],
                &[0; 32],
                d,
            );
        }
        t.log().unwrap().to_vec()
    }

    #[test]
    fn identical_logs_do_not_diverge() {
        let a = log(&[("a", 1), ("b", 2)]);
        assert_eq!(first_divergence(&a, &a.clone()), None);
    }

    #[test]
    fn reports_first_differing_event() {
        let a = log(&[("a", 1), ("b", 2), ("c", 3)]);
        let b = log(&[("a", 1), ("B", 9), ("c", 3)]);
        let d = first_divergence(&a, &b).unwrap();
        assert_eq!(
            (
                d.index,
                d.left_description.as_str(),
                d.right_description.as_str()
            ),
            (1, "b", "B")
        );
    }

    #[test]
    fn reports_length_mismatch() {
        let a = log(&[("a", 1)]);
        let b = log(&[("a", 1), ("b", 2)]);
        let d = first_divergence(&a, &b).unwrap();
        assert_eq!(
            (
                d.index,
                d.left_description.as_str(),
                d.right_description.as_str()
            ),
            (1, END_OF_TRACE, "b")
        );
    }

    #[test]
    fn hash_depends_on_every_field() {
        let mut a = Trace::new(false);
        let mut b = Trace::new(false);
        a.record(
            0,
            Micros(1),
            EventTag::Start,
            &[NodeId::Chain],
            &[0; 32],
            &[0; 32],
            "x",
        );
        b.record(
            0,
            Micros(2),
            EventTag::Start,
            &[NodeId::Chain],
            &[0; 32],
            &[0; 32],
            "x",
        );
        assert_ne!(a.hash(), b.hash());
    }
}
