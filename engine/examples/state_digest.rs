//! Replay one log through one partition and print digests of what it leaves: every
//! decision's JSON and every user's stored state (`UserState::dump`, by user id), to
//! check that a change to the engine keeps both byte for byte
//! (`cargo run --release --example state_digest -- POLICY.json LOG`). On stderr: the
//! bytes the states hold per user, the struct and each of its lists.

use _engine::codec::decode;
use _engine::partition::Partition;
use std::io::BufRead;
use std::sync::Arc;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy, log] = args.as_slice() else {
        return Err("usage: state_digest POLICY.json LOG".into());
    };
    let data = std::fs::read(policy).map_err(|e| e.to_string())?;
    let policy = Arc::new(_engine::policy::Policy::from_json(&data)?);
    let mut part = Partition::new(policy, 600.0);
    part.add_input(0);
    let file = std::fs::File::open(log).map_err(|e| e.to_string())?;
    let mut handles = Vec::new();
    let (mut decisions, mut digest, mut step) = (0u64, 0xcbf2_9ce4_8422_2325u64, 0u64);
    let mut drain = |part: &mut Partition| {
        for d in part.decisions.drain(..) {
            decisions += 1;
            digest = fnv(fnv(digest, d.to_json().as_bytes()), b"\n");
        }
    };
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        if let Ok(event) = decode(&line) {
            step += 1;
            part.offer(0, event, step, &mut handles);
            handles.clear();
            drain(&mut part);
        }
    }
    part.remove_input(0, &mut handles);
    drain(&mut part);
    // What the states hold, per user: the struct and its lists' allocations.
    {
        use _engine::state::UserState;
        let n = part.states.len().max(1) as f64;
        let mean = |f: &dyn Fn(&UserState) -> usize| {
            part.states.values().map(|s| f(s)).sum::<usize>() as f64 / n
        };
        let adverse = mean(&|s| {
            let a = s.adverse();
            (a.pending.capacity() + a.announced.capacity()) * 24 + a.adverse_codes.capacity() * 16
        });
        eprintln!(
            "per user: UserState {} B; lists: ledger {:.0} B ({:.2} entries), \
             applications {:.0} B, scores {:.0} B, seen ids {:.0} B ({:.1} ids), \
             notices and codes {adverse:.0} B",
            std::mem::size_of::<UserState>(),
            mean(&|s| s.ledger.capacity() * 64),
            mean(&|s| s.ledger.len()),
            mean(&|s| s.applications.capacity() * 8),
            mean(&|s| s.scores.capacity() * 16),
            mean(&|s| s.seen.capacity()),
            mean(&|s| s.seen.len()),
        );
    }
    let mut users: Vec<_> = part.states.iter().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    let mut states = 0xcbf2_9ce4_8422_2325u64;
    let mut bytes = 0usize;
    for (uid, state) in users {
        let dumped = state.dump();
        bytes += dumped.len();
        states = fnv(fnv(fnv(states, uid.as_bytes()), &dumped), b"\n");
    }
    println!(
        "{} users, {decisions} decisions {digest:016x}, states {states:016x} \
         ({bytes} bytes dumped), tally {:?}",
        part.states.len(),
        part.tally.decisions.values().sum::<u64>()
    );
    Ok(())
}
