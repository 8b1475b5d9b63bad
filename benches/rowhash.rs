//! Time of the dataset digest's row hashing: 1M rows of 200 to 360 bytes (the bench contacts' row
//! lengths), hashed in the lanes of `rowhash::hash_all` in chunks of 256 rows as a run hashes them,
//! against `blake3::hash` one row at a time. Prints nanoseconds per row, the best of five passes.
//!
//!   cargo run --release --example rowhash [ROWS]      # default 1000000

use std::time::Instant;

use crm_etl::rowhash::{hash_all, words};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // Seeded lengths and bytes, so every pass and every build hashes the same rows.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let lens: Vec<usize> = (0..n).map(|_| 200 + (next() % 161) as usize).collect();
    let data: Vec<u8> = (0..lens.iter().sum::<usize>())
        .map(|_| next() as u8)
        .collect();
    let mut rows = Vec::with_capacity(n);
    let mut at = 0;
    for &l in &lens {
        rows.push(&data[at..at + l]);
        at += l;
    }
    let mut out = Vec::new();
    let mut lanes = Vec::with_capacity(n);
    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let t_lanes = best(&mut || {
        lanes.clear();
        for chunk in rows.chunks(256) {
            hash_all(chunk, &mut out);
            lanes.extend_from_slice(&out);
        }
    });
    let mut single = Vec::with_capacity(n);
    let t_single = best(&mut || {
        single.clear();
        single.extend(rows.iter().map(|r| words(blake3::hash(r).as_bytes())));
    });
    assert_eq!(lanes, single, "the lanes' hashes differ from blake3::hash");
    let ns = |t: f64| t * 1e9 / n as f64;
    println!(
        "{n} rows, {:.0} MB: lanes {:.0} ns a row, one at a time {:.0} ns a row ({:.2}x)",
        data.len() as f64 / 1e6,
        ns(t_lanes),
        ns(t_single),
        t_single / t_lanes
    );
}
