//! Incremental runs through the binary: `run --since` writes what changed since an earlier run, and
//! refuses what it cannot diff against. (The change scripts in real databases: tests/load.rs.)

mod util;

use util::{stderr, Workdir};

const MAPPING: &str = r#"
[sources.accounts]
path = "accounts.csv"

[[entities]]
name = "account"
source = "accounts"
primary_key = ["id"]
format = "jsonl"
fields = [
  { name = "id", column = "Id" },
  { name = "name", column = "Name" },
  { name = "revenue", column = "Revenue", type = "decimal(10,2)" },
]
"#;

fn manifest(w: &Workdir, out: &str) -> serde_json::Value {
    serde_json::from_str(&w.read(&format!("{out}/manifest.json"))).unwrap()
}

#[test]
fn changes_since_an_earlier_run_are_inserts_updates_and_deletes() {
    let w = Workdir::new();
    w.write("m.toml", MAPPING);
    w.write(
        "accounts.csv",
        "Id,Name,Revenue\nA1,Acme,10\nA2,\"Globex, Inc.\",20\nA3,Initech,30\n",
    );
    w.expect(&["run", "m.toml", "--out", "out1", "-q"], 0);
    assert!(w.path("out1/state/account.rows").exists());
    assert!(
        !w.path("out1/changes").exists(),
        "a plain run writes no changes"
    );
    // A2 renamed, A3 gone, A4 new, A1 the same (its revenue written differently, the same value).
    w.write(
        "accounts.csv",
        "Id,Name,Revenue\nA1,Acme,10.00\nA2,Globex,20\nA4,Hooli,40\n",
    );
    w.expect(
        &["run", "m.toml", "--out", "out2", "-q", "--since", "out1"],
        0,
    );
    assert_eq!(
        w.read("out2/changes/account.insert.jsonl"),
        "{\"id\":\"A4\",\"name\":\"Hooli\",\"revenue\":40.00}\n"
    );
    assert_eq!(
        w.read("out2/changes/account.update.jsonl"),
        "{\"id\":\"A2\",\"name\":\"Globex\",\"revenue\":20.00}\n"
    );
    assert_eq!(w.read("out2/changes/account.delete.csv"), "id\nA3\n");
    let m = manifest(&w, "out2");
    assert_eq!(
        m["entities"][0]["changes"],
        serde_json::json!({"insert": 1, "update": 1, "delete": 1, "unchanged": 1})
    );
    assert_eq!(m["since"]["path"], "out1");
    let out1_manifest = std::fs::read(w.path("out1/manifest.json")).unwrap();
    assert_eq!(
        m["since"]["blake3"],
        blake3::hash(&out1_manifest).to_hex().to_string()
    );
    // The change files are outputs like any other: listed, hashed, verified.
    w.expect(&["verify", "out2"], 0);
    let sums = w.read("out2/checksums.b3");
    for f in [
        "changes/account.insert.jsonl",
        "changes/account.delete.csv",
        "state/account.rows",
    ] {
        assert!(sums.contains(f), "{f} in checksums.b3:\n{sums}");
    }
    // Chained: the second run is the base of a third; nothing changed since.
    w.expect(
        &["run", "m.toml", "--out", "out3", "-q", "--since", "out2"],
        0,
    );
    assert_eq!(
        manifest(&w, "out3")["entities"][0]["changes"],
        serde_json::json!({"insert": 0, "update": 0, "delete": 0, "unchanged": 3})
    );
    assert_eq!(w.read("out3/changes/account.delete.csv"), "id\n");
}

#[test]
fn since_refuses_what_it_cannot_diff_against() {
    let w = Workdir::new();
    w.write("m.toml", MAPPING);
    w.write("accounts.csv", "Id,Name,Revenue\nA1,Acme,10\n");
    w.expect(&["run", "m.toml", "--out", "out1", "-q"], 0);
    let o = w.expect(&["run", "m.toml", "--out", "out1", "--since", "out1"], 2);
    assert!(
        stderr(&o).contains("the same folder as --out"),
        "{}",
        stderr(&o)
    );
    let o = w.expect(&["run", "m.toml", "--out", "x", "--since", "nowhere"], 2);
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
    let o = w.expect(&["run", "m.toml", "--dry-run", "--since", "out1"], 2);
    assert!(stderr(&o).contains("--dry-run"), "{}", stderr(&o));
    w.write("nopk.toml", MAPPING.replace("primary_key = [\"id\"]\n", ""));
    let o = w.expect(&["run", "nopk.toml", "--out", "out2", "--since", "out1"], 2);
    assert!(
        stderr(&o).contains("entities[0].primary_key") && stderr(&o).contains("--since"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_changed_deferred_reference_makes_its_row_an_update() {
    let w = Workdir::new();
    w.write(
        "m.toml",
        r#"
[sources.accounts]
path = "accounts.csv"

[[entities]]
name = "account"
source = "accounts"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id" },
  { name = "parent_id", column = "ParentId", references = { entity = "account", defer = true, orphans = "null" } },
]
"#,
    );
    w.write("accounts.csv", "Id,ParentId\nA1,\nA2,A1\nA3,A1\n");
    w.expect(&["run", "m.toml", "--out", "out1", "-q"], 0);
    // The row is written with its parent null either way; only the deferred value moved.
    w.write("accounts.csv", "Id,ParentId\nA1,\nA2,A3\nA3,A1\n");
    w.expect(
        &["run", "m.toml", "--out", "out2", "-q", "--since", "out1"],
        0,
    );
    assert_eq!(
        manifest(&w, "out2")["entities"][0]["changes"],
        serde_json::json!({"insert": 0, "update": 1, "delete": 0, "unchanged": 2})
    );
    assert_eq!(
        w.read("out2/changes/account.update.csv"),
        "id,parent_id\nA2,\n"
    );
}
