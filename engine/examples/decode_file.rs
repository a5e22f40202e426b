//! Decode every line of a log and nothing else, for profiling the decoder
//! (`cargo run --release --example decode_file -- LOG`): prints the events and
//! rejections counted and the time taken.

use std::io::BufRead;
use std::time::Instant;

fn main() -> Result<(), String> {
    let path = std::env::args().nth(1).ok_or("usage: decode_file LOG")?;
    let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let (mut events, mut rejected, mut check) = (0u64, 0u64, 0f64);
    let mut buf = Vec::with_capacity(1024);
    let started = Instant::now();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match _engine::codec::decode(line) {
            Ok(e) => {
                events += 1;
                check += e.occurred_at();
            }
            Err(_) => rejected += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{events} events, {rejected} rejected ({check:e}), {seconds:.3} s, {:.0} lines/s",
        (events + rejected) as f64 / seconds
    );
    Ok(())
}
