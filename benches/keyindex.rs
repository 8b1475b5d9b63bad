//! Memory and time of a reference key index: N parent keys (18-character Salesforce-style ids), stored
//! as a primary-key reference stores them (presence only) and as a reference by another field stores
//! them (mapped to the parent's key text), then lookups. Prints bytes per key.
//!
//!   cargo run --release --example keyindex [N]      # default 10000000

use std::time::Instant;

use crm_etl::relate::{text_key, KeyIndex};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let id = |i: usize| format!("0015g{:010}AAF", i);
    for with_text in [false, true] {
        run(n, with_text, &id);
    }
}

fn run(n: usize, with_text: bool, id: &dyn Fn(usize) -> String) {
    let t = Instant::now();
    let mut ix = KeyIndex::default();
    ix.reserve(n);
    for i in 0..n {
        let k = id(i);
        if with_text {
            ix.insert(text_key(&k), &k);
        } else {
            ix.insert_present(text_key(&k));
        }
    }
    let built = t.elapsed();
    let t = Instant::now();
    let mut found = 0usize;
    for i in (0..n).step_by(7) {
        found += usize::from(ix.get(text_key(&id(i))).is_some());
    }
    let looked = t.elapsed();
    assert_eq!(found, n.div_ceil(7));
    println!(
        "{n} keys, {}: {:.1} MB, {:.1} bytes per key; insert {:.0} ns/key, lookup {:.0} ns/key",
        if with_text {
            "with target text"
        } else {
            "presence only (by primary key)"
        },
        ix.bytes() as f64 / 1e6,
        ix.bytes() as f64 / n as f64,
        built.as_nanos() as f64 / n as f64,
        looked.as_nanos() as f64 / found as f64
    );
}
