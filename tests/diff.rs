//! `crm-etl diff` through the real binary, against a model: random snapshot pairs with inserts,
//! updates and deletes, in CSV and JSON Lines.

mod util;

use std::collections::BTreeMap;

use util::{stderr, Workdir};

/// A small deterministic generator (no dependency on the thread count or the clock).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

type Rows = BTreeMap<u32, (String, String)>;

fn csv(rows: &Rows, order: &[u32]) -> String {
    let mut s = String::from("Id,Name,Note\n");
    for id in order {
        let (n, note) = &rows[id];
        s.push_str(&format!("{id},{n},\"{}\"\n", note.replace('"', "\"\"")));
    }
    s
}

fn jsonl(rows: &Rows, order: &[u32]) -> String {
    order
        .iter()
        .map(|id| {
            let (n, note) = &rows[id];
            format!(
                "{}\n",
                serde_json::json!({"Id": id.to_string(), "Name": n, "Note": note})
            )
        })
        .collect()
}

fn ids(text: &str, jsonl: bool) -> Vec<u32> {
    if jsonl {
        return text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["Id"].as_str().unwrap().parse().unwrap()
            })
            .collect();
    }
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records()
        .map(|x| x.unwrap()[0].parse().unwrap())
        .collect()
}

#[test]
fn random_snapshot_pairs_give_exactly_the_model_changes() {
    let w = Workdir::new();
    let mut rng = Rng(7);
    for round in 0..12 {
        let as_jsonl = round % 2 == 1;
        let mut old: Rows = BTreeMap::new();
        for id in 0..300 {
            if !rng.next().is_multiple_of(4) {
                old.insert(
                    id,
                    (
                        format!("n{}", rng.next() % 50),
                        format!("a, \"b\"\nc{}", rng.next() % 3),
                    ),
                );
            }
        }
        let mut new = old.clone();
        let (mut ins, mut upd, mut del) = (vec![], vec![], vec![]);
        for id in 0..330 {
            match (old.contains_key(&id), rng.next() % 10) {
                (true, 0) => {
                    new.remove(&id);
                    del.push(id);
                }
                (true, 1) => {
                    new.get_mut(&id).unwrap().0.push('!');
                    upd.push(id);
                }
                (false, 0..=2) => {
                    new.insert(id, ("fresh".into(), String::new()));
                    ins.push(id);
                }
                _ => {}
            }
        }
        // Record order differs between the snapshots: a diff does not depend on it.
        let old_order: Vec<u32> = old.keys().copied().collect();
        let mut new_order: Vec<u32> = new.keys().copied().collect();
        new_order.reverse();
        let ext = if as_jsonl { "jsonl" } else { "csv" };
        let (o, n) = if as_jsonl {
            (jsonl(&old, &old_order), jsonl(&new, &new_order))
        } else {
            (csv(&old, &old_order), csv(&new, &new_order))
        };
        // The CSVs also come with a byte-order mark and CRLF line ends (both, since a line end inside
        // a quoted note is part of its value), or the old one in UTF-16: pass 3 picks the records it
        // needs by their offsets, or reads the whole file where offsets are not bytes.
        let crlf = |t: &str| [&b"\xef\xbb\xbf"[..], t.replace('\n', "\r\n").as_bytes()].concat();
        let n: Vec<u8> = if round == 2 { crlf(&n) } else { n.into_bytes() };
        let o: Vec<u8> = match round {
            2 => crlf(&o),
            4 => [0xff, 0xfe]
                .into_iter()
                .chain(o.encode_utf16().flat_map(u16::to_le_bytes))
                .collect(),
            _ => o.into_bytes(),
        };
        w.write(&format!("old{round}.{ext}"), o);
        w.write(&format!("new{round}.{ext}"), n);
        let out = format!("d{round}");
        let o = w.expect(
            &[
                "diff",
                &format!("old{round}.{ext}"),
                &format!("new{round}.{ext}"),
                "--key",
                "Id",
                "--out",
                &out,
                "--to",
                ext,
            ],
            0,
        );
        let mut got_ins = ids(&w.read(&format!("{out}/insert.{ext}")), as_jsonl);
        got_ins.sort_unstable();
        assert_eq!(got_ins, ins, "round {round}: inserts");
        // Updates and deletes come in the old file's order.
        assert_eq!(
            ids(&w.read(&format!("{out}/update.{ext}")), as_jsonl),
            upd,
            "round {round}"
        );
        assert_eq!(
            ids(&w.read(&format!("{out}/delete.{ext}")), as_jsonl),
            del,
            "round {round}"
        );
        assert!(stderr(&o).contains(&format!(
            "{} inserted, {} updated, {} deleted",
            ins.len(),
            upd.len(),
            del.len()
        )));
        // Only the name changed, and the update says so.
        let update = w.read(&format!("{out}/update.{ext}"));
        let changed: Vec<String> = if as_jsonl {
            update
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["_changed"].to_string()
                })
                .collect()
        } else {
            let mut r = csv::Reader::from_reader(update.as_bytes());
            r.records().map(|x| x.unwrap()[3].to_string()).collect()
        };
        let want = if as_jsonl { "[\"Name\"]" } else { "Name" };
        assert!(changed.iter().all(|c| c == want), "{changed:?}");
    }
    // Keys must be unique; files must have one shape.
    w.write("dup.csv", "Id,Name,Note\n1,a,\n1,b,\n");
    w.write("other.csv", "Id,Other\n1,a\n");
    let o = w.expect(
        &["diff", "dup.csv", "old0.csv", "--key", "Id", "--out", "x"],
        2,
    );
    assert!(
        stderr(&o).contains("record 2 (line 3, byte 18): the key repeats the key of record 1"),
        "{}",
        stderr(&o)
    );
    // The new file's keys are checked too (both files are read at the same time).
    let o = w.expect(
        &["diff", "old0.csv", "dup.csv", "--key", "Id", "--out", "x"],
        2,
    );
    assert!(
        stderr(&o)
            .contains("dup.csv: record 2 (line 3, byte 18): the key repeats the key of record 1"),
        "{}",
        stderr(&o)
    );
    let o = w.expect(
        &["diff", "old0.csv", "other.csv", "--key", "Id", "--out", "x"],
        2,
    );
    assert!(stderr(&o).contains("differ in shape"), "{}", stderr(&o));
}
