//! Parquet and Arrow IPC outputs, through the real binary. Other tools read them back: DuckDB and
//! polars (Python packages, required in CI, where `.ci/run` installs them) must see exactly the values
//! of the JSON Lines output of the same mapping; without them, those checks say they were not run.

#![cfg(feature = "parquet")]

mod util;

use std::process::Command;

use util::{root, stderr, Workdir};

/// Whether `python3` can import duckdb and polars; in CI it must.
fn python_readers(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb, polars"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: python3 with duckdb and polars is required in CI");
        }
        util::not_run(&format!(
            "{test}: reading back with DuckDB and polars (pip install duckdb polars)"
        ));
    }
    ok
}

/// Runs `tests/readback.py` on a run's outputs; returns DuckDB's column types and row-group count.
fn read_back(
    w: &Workdir,
    jsonl: &str,
    parquet: &str,
    arrow: &str,
    json_columns: &[&str],
) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(root().join("tests/readback.py"))
        .args([w.path(jsonl), w.path(parquet), w.path(arrow)])
        .args(json_columns)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "read back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("readback.py prints JSON")
}

fn hostile() -> String {
    root()
        .join("fixtures/load/hostile/mapping.toml")
        .display()
        .to_string()
}

#[test]
fn every_type_reads_back_identical_in_duckdb_and_polars() {
    let w = Workdir::new();
    let m = hostile();
    for f in ["jsonl", "parquet", "arrow"] {
        // One record holds a NUL byte, which the mapping's PostgreSQL target rejects.
        w.expect(
            &[
                "run",
                &m,
                "--out",
                f,
                "--format",
                f,
                "--quiet",
                "--max-rejects",
                "1",
            ],
            0,
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&w.read("parquet/manifest.json")).unwrap();
    let order = manifest["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "order")
        .unwrap();
    assert_eq!(order["output"], "order.parquet");
    assert_eq!(order["written"], 7, "8 records, the NUL one rejected");
    let listed = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "order.parquet")
        .expect("order.parquet in the manifest's outputs");
    assert_eq!(listed["rows"], 7);
    // Parquet files begin and end with their magic number.
    let bytes = std::fs::read(w.path("parquet/order.parquet")).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
    let arrow = std::fs::read(w.path("arrow/order.arrow")).unwrap();
    assert_eq!(&arrow[..6], b"ARROW1");
    w.expect(&["verify", "parquet"], 0);
    w.expect(&["verify", "arrow"], 0);
    if !python_readers("every_type_reads_back_identical") {
        return;
    }
    let got = read_back(
        &w,
        "jsonl/order.jsonl",
        "parquet/order.parquet",
        "arrow/order.arrow",
        &["payload"],
    );
    let types = &got["types"];
    for (col, ty) in [
        ("id", "BIGINT"),
        ("note", "VARCHAR"),
        ("amount", "DECIMAL(10,2)"),
        ("rate", "DOUBLE"),
        ("active", "BOOLEAN"),
        ("seen_at", "TIMESTAMP WITH TIME ZONE"),
        ("day", "DATE"),
        ("at_time", "TIME_NS"),
        ("uid", "VARCHAR"),
        ("payload", "VARCHAR"),
        ("group", "VARCHAR"),
    ] {
        assert_eq!(types[col], ty, "DuckDB's type of {col}: {types}");
    }
    read_back(
        &w,
        "jsonl/group.jsonl",
        "parquet/group.parquet",
        "arrow/group.arrow",
        &[],
    );
}

/// A generated contacts export large enough for several row groups, with nulls and long texts.
fn contacts(rows: usize) -> String {
    let mut s = String::from("Id,Name,Amount,Since,Active,Notes\n");
    for i in 0..rows {
        let amount = if i % 7 == 0 {
            String::new()
        } else {
            format!("{}.{:02}", i * 3, i % 100)
        };
        let notes = if i % 1000 == 0 {
            "x".repeat(2000)
        } else {
            format!("note \"{i}\", with a comma")
        };
        s.push_str(&format!(
            "{i},Name {i},{amount},2024-{:02}-{:02}T10:00:00Z,{},\"{}\"\n",
            i % 12 + 1,
            i % 28 + 1,
            i % 2 == 0,
            notes.replace('"', "\"\"")
        ));
    }
    s
}

const CONTACTS: &str = r#"
[sources.contacts]
path = "contacts.csv"

[[entities]]
name = "contact"
source = "contacts"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id", type = "integer" },
  { name = "name", column = "Name" },
  { name = "amount", column = "Amount", type = "decimal(18,2)" },
  { name = "since", column = "Since", type = "timestamptz" },
  { name = "active", column = "Active", type = "boolean" },
  { name = "notes", column = "Notes" },
]
"#;

#[test]
fn row_groups_bound_memory_and_output_is_the_same_at_any_thread_count() {
    let w = Workdir::new();
    w.write("contacts.csv", contacts(150_000));
    w.write("m.toml", CONTACTS);
    let mut hashes = Vec::new();
    for t in ["1", "2", "3"] {
        let out = format!("t{t}");
        for f in ["parquet", "arrow", "jsonl"] {
            let dir = format!("{out}/{f}");
            w.expect(
                &[
                    "run",
                    "m.toml",
                    "--out",
                    &dir,
                    "--format",
                    f,
                    "--threads",
                    t,
                    "--quiet",
                ],
                0,
            );
        }
        hashes.push((
            std::fs::read(w.path(&format!("{out}/parquet/contact.parquet"))).unwrap(),
            std::fs::read(w.path(&format!("{out}/arrow/contact.arrow"))).unwrap(),
        ));
    }
    assert!(
        hashes.windows(2).all(|p| p[0] == p[1]),
        "Parquet and Arrow bytes differ between thread counts"
    );
    if !python_readers("row_groups") {
        return;
    }
    let got = read_back(
        &w,
        "t2/jsonl/contact.jsonl",
        "t2/parquet/contact.parquet",
        "t2/arrow/contact.arrow",
        &[],
    );
    assert_eq!(got["rows"], 150_000);
    let groups = 150_000usize.div_ceil(crm_etl::write::parquet::ROW_GROUP_ROWS);
    assert!(groups > 1, "the test needs several row groups");
    assert_eq!(
        got["row_groups"],
        groups,
        "150,000 rows in groups of {}",
        crm_etl::write::parquet::ROW_GROUP_ROWS
    );
}

#[test]
fn convert_writes_parquet_as_text_columns() {
    let w = Workdir::new();
    w.write("in.csv", "a,b\n1,x\n,\"\"\n3,\"q,\"\"\"\n");
    w.expect(
        &["convert", "in.csv", "-o", "out.parquet", "--to", "parquet"],
        0,
    );
    w.expect(
        &["convert", "in.csv", "-o", "out.jsonl", "--to", "jsonl"],
        0,
    );
    w.expect(
        &["convert", "in.csv", "-o", "out.arrow", "--to", "arrow"],
        0,
    );
    let b = std::fs::read(w.path("out.parquet")).unwrap();
    assert_eq!(&b[..4], b"PAR1");
    if !python_readers("convert_writes_parquet") {
        return;
    }
    let got = read_back(&w, "out.jsonl", "out.parquet", "out.arrow", &[]);
    assert_eq!(got["types"]["a"], "VARCHAR");
    assert_eq!(got["rows"], 3);
}

#[test]
fn a_bad_parquet_destination_is_a_clear_error() {
    let w = Workdir::new();
    w.write("in.csv", "a\n1\n");
    w.write("blocker", "a file where a folder should be");
    let out = w.expect(
        &[
            "convert",
            "in.csv",
            "-o",
            "blocker/out.parquet",
            "--to",
            "parquet",
        ],
        2,
    );
    assert!(stderr(&out).contains("blocker"), "{}", stderr(&out));
}

#[test]
fn parquet_beside_other_formats_in_one_pass_is_the_same_file() {
    let w = Workdir::new();
    w.write("contacts.csv", contacts(40_000));
    w.write("m.toml", CONTACTS);
    w.expect(
        &[
            "run",
            "m.toml",
            "--out",
            "dual",
            "--format",
            "jsonl,parquet,arrow",
            "-q",
        ],
        0,
    );
    for f in ["parquet", "arrow"] {
        w.expect(&["run", "m.toml", "--out", f, "--format", f, "-q"], 0);
        assert_eq!(
            std::fs::read(w.path(&format!("dual/contact.{f}"))).unwrap(),
            std::fs::read(w.path(&format!("{f}/contact.{f}"))).unwrap(),
            "{f} written beside JSON Lines differs from {f} alone"
        );
    }
    if !python_readers("parquet_beside_other_formats") {
        return;
    }
    read_back(
        &w,
        "dual/contact.jsonl",
        "dual/contact.parquet",
        "dual/contact.arrow",
        &[],
    );
}
