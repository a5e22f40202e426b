//! Replay log files under a policy, from the command line, with no Python: for
//! profiling the engine alone (`cargo run --release --example replay_file -- POLICY.json
//! JOBS LOG...`). Prints the decisions count and the time taken.

use std::sync::Arc;
use std::time::Instant;

struct Count(u64);

impl _engine::replay::Sink for Count {
    fn decisions(&mut self, _: usize, lines: &[String]) -> Result<(), String> {
        self.0 += lines.len() as u64;
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
    let mut sink = Count(0);
    let started = Instant::now();
    let tallies = _engine::replay::replay(&[policy], logs, 600.0, jobs, &mut sink)
        .map_err(|e| format!("{e:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let read = tallies.first().map_or(0, |t| t.read);
    println!("{read} lines, {} decisions, {seconds:.3} s, {:.0} lines/s", sink.0, read as f64 / seconds);
    Ok(())
}
