//! What the live worker checks of a record before the engine takes it: that its key is
//! its user id, and that its user lives in the partition it came on (producers with
//! another partitioner, or none, put it elsewhere: the worker sends it on).

use crate::codec::{push_str_repr, Rejection};

/// Kafka's default partitioner: murmur2 of the key (as the Java client and aiokafka
/// compute it), made positive, modulo the partition count.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ (key.len() as u32);
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let Ok(word) = <[u8; 4]>::try_from(c) else { continue };
        let mut k = u32::from_le_bytes(word);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if let Some(b) = rest.get(2) {
        h ^= u32::from(*b) << 16;
    }
    if let Some(b) = rest.get(1) {
        h ^= u32::from(*b) << 8;
    }
    if let Some(b) = rest.first() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// The rejection of a record whose key is not its user id, worded as the Python
/// worker worded it: `record key {key[:80] as text!r} is not the user_id {user_id!r}`.
pub fn key_mismatch(key: &[u8], user_id: &str, event_type: &'static str) -> Rejection {
    let shown = String::from_utf8_lossy(key.get(..80).unwrap_or(key));
    let mut detail = String::from("record key ");
    push_str_repr(&shown, &mut detail);
    detail.push_str(" is not the user_id ");
    push_str_repr(user_id, &mut detail);
    Rejection { reason: "key_mismatch", detail, event_type: Some(event_type) }
}
