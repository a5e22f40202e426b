//! Replay log files under a policy, from the command line, with no Python: for
//! profiling the engine alone (`cargo run --release --example replay_file -- POLICY.json
//! JOBS LOG...`). Prints the decisions count and the time taken; with `REPLAY_DIGEST`
//! set, also a digest of the decisions' bytes and the tally (to compare two builds).

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Instant;

struct Count {
    decisions: u64,
    /// FNV-1a over every decision line and its newline, when asked for.
    digest: Option<u64>,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl _engine::replay::Sink for Count {
    fn decisions(&mut self, _: usize, lines: &[String]) -> Result<(), String> {
        self.decisions += lines.len() as u64;
        if let Some(h) = &mut self.digest {
            for line in lines {
                *h = fnv(fnv(*h, line.as_bytes()), b"\n");
            }
        }
        Ok(())
    }
    fn rejected(&mut self, _: String) -> Result<(), String> {
        Ok(())
    }
    fn progress(&mut self, _: u64) -> Result<(), String> {
        Ok(())
    }
    fn wants_rejected(&self) -> bool {
        false
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy, jobs, logs @ ..] = args.as_slice() else {
        return Err("usage: replay_file POLICY.json JOBS LOG...".into());
    };
    let data = std::fs::read(policy).map_err(|e| e.to_string())?;
    let policy = Arc::new(_engine::policy::Policy::from_json(&data)?);
    let jobs: usize = jobs.parse().map_err(|_| "JOBS: a number")?;
    let digest = std::env::var_os("REPLAY_DIGEST").map(|_| 0xcbf2_9ce4_8422_2325);
    let mut sink = Count { decisions: 0, digest };
    let started = Instant::now();
    let tallies = _engine::replay::replay(&[policy], logs, 600.0, jobs, None, &[], &[], &mut sink)
        .map_err(|e| format!("{e:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let read = tallies.first().map_or(0, |t| t.tally.read);
    println!(
        "{read} lines, {} decisions, {seconds:.3} s, {:.0} lines/s",
        sink.decisions,
        read as f64 / seconds
    );
    if let Some(h) = sink.digest {
        let mut t = std::collections::hash_map::DefaultHasher::new();
        let only: Vec<&_engine::partition::Tally> = tallies.iter().map(|f| &f.tally).collect();
        t.write(format!("{only:?}").as_bytes());
        println!("decisions digest {h:016x}, tally digest {:016x}", t.finish());
    }
    Ok(())
}
