//! Relations through the real binary: duplicate policies, deferred references that break cycles,
//! surrogate keys, child tables from nested records and multi-value fields, and `run --dry-run`.

mod util;

use util::{root, stderr, stdout, Workdir};

fn manifest(w: &Workdir, out: &str) -> serde_json::Value {
    serde_json::from_str(&w.read(&format!("{out}/manifest.json"))).unwrap()
}

fn entity<'a>(m: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    m["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entity {name} in {m}"))
}

const DUPS: &str = r#"
[sources.c]
path = "c*.csv"
[[entities]]
name = "contact"
source = "c"
primary_key = ["id"]
duplicates = "POLICY"
fields = [
  { name = "id", column = "Id" },
  { name = "name", column = "Name" },
  { name = "email", column = "Email", unique = true },
]
"#;

#[test]
fn duplicate_policies_keep_first_keep_last_or_reject_all_across_files() {
    let w = Workdir::new();
    // Two files of one glob: id 1 repeats across them, id 2 within the first; e@x is shared by 3 and 4.
    w.write(
        "c1.csv",
        "Id,Name,Email\n1,first,a@x\n2,two-a,b@x\n2,two-b,c@x\n3,three,e@x\n",
    );
    w.write(
        "c2.csv",
        "Id,Name,Email\n1,last,d@x\n4,four,e@x\n5,five,f@x\n",
    );
    let run = |policy: &str| {
        w.write("m.toml", DUPS.replace("POLICY", policy));
        let out = format!("out-{policy}");
        w.expect(
            &["run", "m.toml", "--out", &out, "--max-rejects", "100", "-q"],
            0,
        );
        let rows: Vec<String> = w
            .read(&format!("{out}/contact.csv"))
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect();
        let m = manifest(&w, &out);
        let e = entity(&m, "contact");
        assert_eq!(e["read"], 7);
        assert_eq!(
            e["read"].as_u64().unwrap(),
            e["written"].as_u64().unwrap() + e["rejected"].as_u64().unwrap()
        );
        (rows, w.read(&format!("{out}/rejects/contact.csv")))
    };
    let (rows, rejects) = run("first");
    assert_eq!(
        rows,
        ["1,first,a@x", "2,two-a,b@x", "3,three,e@x", "5,five,f@x"]
    );
    assert_eq!(rejects.lines().count(), 4, "{rejects}");
    assert!(rejects.contains("first seen in record 1"), "{rejects}");

    let (rows, rejects) = run("last");
    assert_eq!(
        rows,
        ["2,two-b,c@x", "1,last,d@x", "4,four,e@x", "5,five,f@x"]
    );
    assert!(rejects.contains("c1.csv,1,2,"), "{rejects}");
    assert!(rejects.contains("c1.csv,2,3,"), "{rejects}");
    assert!(rejects.contains("c1.csv,4,5,"), "{rejects}");
    assert!(rejects.contains("keeps the last"), "{rejects}");

    let (rows, rejects) = run("reject");
    assert_eq!(rows, ["5,five,f@x"]);
    // Every record of a shared key is rejected, the first included.
    assert_eq!(rejects.lines().count(), 7, "{rejects}");
    assert!(rejects.contains("rejects them all"), "{rejects}");

    // A policy needs a key to apply to.
    w.write(
        "nokey.toml",
        "[sources.c]\npath = \"c1.csv\"\n[[entities]]\nname = \"c\"\nsource = \"c\"\nduplicates = \"last\"\nfields = [{ name = \"id\", column = \"Id\" }]\n",
    );
    let e = stderr(&w.expect(&["check", "nokey.toml"], 2));
    assert!(e.contains("entities[0].duplicates"), "{e}");
}

#[test]
fn deferred_references_break_cycles_with_updates_written_after_every_entity() {
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    let mapping = mapping.to_str().unwrap();
    let w = Workdir::new();
    let plan = stdout(&w.expect(&["check", mapping], 0));
    assert!(
        plan.contains("deferred (breaks the cycle of a self-reference): written as null, then set from account.updates.csv"),
        "{plan}"
    );
    assert!(
        plan.contains("one record per \";\"-separated part of \"Interests\""),
        "{plan}"
    );
    w.expect(
        &["run", mapping, "--out", "out", "--max-rejects", "10", "-q"],
        0,
    );
    // Accounts are written with null references; the updates set them once contacts exist.
    let accounts = w.read("out/account.csv");
    assert!(
        accounts.lines().skip(1).all(|l| l.ends_with(",,")),
        "{accounts}"
    );
    assert_eq!(
        w.read("out/account.updates.csv"),
        "id,parent_id,primary_contact_id\nA3,A4,3\nA4,A2,\nA2,A1,2\n"
    );
    let m = manifest(&w, "out");
    let a = entity(&m, "account");
    assert_eq!(a["updates"]["rows"], 3);
    assert_eq!(
        a["orphans"]["parent_id"], 1,
        "A5's parent A9 does not exist"
    );
    assert_eq!(
        a["orphans"]["primary_contact_id"], 2,
        "ana@ was rejected; nobody@ is unknown"
    );
    // The updates file is an output like any other: hashed and verifiable.
    assert!(w
        .read("out/checksums.b3")
        .contains("  account.updates.csv\n"));
    w.expect(&["verify", "out"], 0);
    // Duplicate pre-passes, spills and children give the same bytes at any thread count.
    w.expect(
        &[
            "run",
            mapping,
            "--out",
            "one",
            "--threads",
            "1",
            "--max-rejects",
            "10",
            "-q",
        ],
        0,
    );
    assert_eq!(w.read("one/checksums.b3"), w.read("out/checksums.b3"));
    // No spill file is left behind.
    let stray: Vec<_> = std::fs::read_dir(w.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A deferred reference cannot reject its record; and it needs a one-field primary key.
    w.write("a.csv", "Id,ParentId\n1,\n");
    w.write(
        "bad.toml",
        "[sources.a]\npath = \"a.csv\"\n[[entities]]\nname = \"a\"\nsource = \"a\"\nfields = [{ name = \"id\", column = \"Id\" }, { name = \"p\", column = \"ParentId\", references = { entity = \"a\", by = \"id\", defer = true } }]\n",
    );
    let e = stderr(&w.expect(&["check", "bad.toml"], 2));
    assert!(e.contains("cannot reject the record"), "{e}");
    assert!(e.contains("needs a primary key of one field"), "{e}");
    // Without `defer`, the cycle error says how to break it.
    w.write(
        "cyc.toml",
        "[sources.a]\npath = \"a.csv\"\n[[entities]]\nname = \"a\"\nsource = \"a\"\nprimary_key = [\"id\"]\nfields = [{ name = \"id\", column = \"Id\" }, { name = \"p\", column = \"ParentId\", references = { entity = \"a\" } }]\n",
    );
    let e = stderr(&w.expect(&["check", "cyc.toml"], 2));
    assert!(e.contains("a -> a") && e.contains("`defer = true`"), "{e}");
}

#[test]
fn surrogate_keys_are_sequences_over_files_or_stable_hashes() {
    let w = Workdir::new();
    w.write("p1.csv", "Email,Name\na@x,A\nb@x,B\n");
    w.write("p2.csv", "Email,Name\nc@x,C\n");
    let m = r#"
[sources.p]
path = "p*.csv"
[[entities]]
name = "person"
source = "p"
primary_key = ["id"]
fields = [
  { name = "id", type = "integer", generate = "sequence" },
  { name = "n", type = "integer", generate = { hash = ["Email"] } },
  { name = "u", type = "uuid", generate = { hash = ["Email"] } },
  { name = "t", generate = { hash = ["Email", "Name"] } },
  { name = "email", column = "Email" },
]
"#;
    w.write("m.toml", m);
    w.expect(&["run", "m.toml", "--out", "o1", "-q"], 0);
    let rows: Vec<Vec<String>> = w
        .read("o1/person.csv")
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        ids,
        ["1", "2", "3"],
        "numbering continues over the glob's files"
    );
    for r in &rows {
        let n: i64 = r[1].parse().expect("63-bit integer");
        assert!(n >= 0);
        assert_eq!(r[2].len(), 36);
        assert_eq!(&r[2][14..15], "8", "version-8 UUID: {}", r[2]);
        assert!(r[3].len() == 32 && r[3].bytes().all(|b| b.is_ascii_hexdigit()));
    }
    // A hash key depends on the natural key only: reordered and extended input keeps each one.
    w.write("p1.csv", "Email,Name\nz@x,Z\nb@x,B\n");
    w.write("p2.csv", "Email,Name\nc@x,C\na@x,A\n");
    w.expect(&["run", "m.toml", "--out", "o2", "-q"], 0);
    let again = w.read("o2/person.csv");
    for r in &rows {
        let tail = format!(",{},{},{},{}", r[1], r[2], r[3], r[4]);
        assert!(again.contains(&tail), "{tail} not in\n{again}");
    }
    // A sequence is an integer; a hash is an integer, uuid or text.
    w.write(
        "bad.toml",
        m.replace(
            "type = \"integer\", generate = \"sequence\"",
            "type = \"text\", generate = \"sequence\"",
        )
        .replace("type = \"uuid\"", "type = \"date\""),
    );
    let e = stderr(&w.expect(&["check", "bad.toml"], 2));
    assert!(e.contains("generate = \"sequence\" makes integers"), "{e}");
    assert!(
        e.contains("a hash key is an integer, a uuid or text"),
        "{e}"
    );
}

#[test]
fn child_tables_from_json_arrays_xml_elements_and_m2m_links() {
    let mapping = root().join("fixtures/cases/children/mapping.toml");
    let mapping = mapping.to_str().unwrap();
    let w = Workdir::new();
    w.expect(
        &["run", mapping, "--out", "out", "--max-rejects", "10", "-q"],
        0,
    );
    assert_eq!(
        w.read("out/contact.csv"),
        "ref,account_ref,position,last_name,email\n\
         ConRef1,AccRef1,1,Schmidt,k.schmidt@nordwind.example\n\
         ConRef2,AccRef1,2,Öztürk,e.oeztuerk@nordwind.example\n\
         ConRef4,AccRef3,2,Okafor,c.okafor@brightline.example\n"
    );
    // A rejected child names its position and points at its own line, with its own bytes.
    let rejects = w.read("out/rejects/contact.csv");
    assert!(rejects.contains("accounts-tree.json,3,22,"), "{rejects}");
    assert!(rejects.contains("(nested record 1)"), "{rejects}");
    assert!(rejects.contains("ConRef3"), "{rejects}");
    assert_eq!(
        w.read("out/order_line.csv"),
        "order_number,line,sku,qty,price\nSO-1001,1,P-100,2,19.90\nSO-1001,2,P-200,1,5.00\n"
    );
    assert!(w
        .read("out/rejects/order_line.csv")
        .contains("orders.xml,2,13,"));
    let m = manifest(&w, "out");
    let j = entity(&m, "account_contact");
    assert_eq!(
        (j["read"].as_u64(), j["written"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(j["rejects_by_reason"]["orphan"], 1);
    // The same bytes at any thread count.
    w.expect(
        &[
            "run",
            mapping,
            "--out",
            "one",
            "--threads",
            "1",
            "--max-rejects",
            "10",
            "-q",
        ],
        0,
    );
    assert_eq!(w.read("one/checksums.b3"), w.read("out/checksums.b3"));

    // `nested` needs exactly one of path and split; a CSV has no nested path; `parent` and `ordinal`
    // need a nested entity.
    w.write("a.csv", "Id,Tags\n1,x;y\n");
    let bad = r#"
[sources.a]
path = "a.csv"
[[entities]]
name = "t"
source = "a"
nested = { path = "Tags" }
fields = [{ name = "v", column = "value" }]
[[entities]]
name = "u"
source = "a"
fields = [{ name = "p", parent = "Id" }, { name = "o", ordinal = true }]
"#;
    w.write("bad.toml", bad);
    let e = stderr(&w.expect(&["check", "bad.toml"], 2));
    assert!(
        e.contains("a CSV record has nothing nested: use `split`"),
        "{e}"
    );
    assert!(
        e.contains("`parent` reads the enclosing record of a nested entity"),
        "{e}"
    );
    assert!(
        e.contains("`ordinal` numbers the children of a nested entity"),
        "{e}"
    );
}

#[test]
fn dry_run_writes_nothing_and_reports_what_a_run_would_do() {
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    let w = Workdir::new();
    let o = w.expect(&["run", mapping.to_str().unwrap(), "--dry-run"], 1);
    let out = stdout(&o);
    assert!(
        out.contains("account: read 6, would write 5, rejected 1"),
        "{out}"
    );
    assert!(
        out.contains("orphans (null or kept): parent_id=1 primary_contact_id=2"),
        "{out}"
    );
    assert!(out.contains("deferred references: 3 update rows"), "{out}");
    assert!(
        out.contains("unmapped values (kept, null or default): interest=1"),
        "{out}"
    );
    assert!(
        out.contains("reject Contact.csv:2 (record 1): field \"email\": several records"),
        "{out}"
    );
    // Within --max-rejects it exits 0; with --out it still creates nothing.
    let o = w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--dry-run",
            "--out",
            "never",
            "--max-rejects",
            "10",
        ],
        0,
    );
    assert!(stdout(&o).starts_with("dry run: nothing was written"));
    assert!(!w.path("never").exists());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".account.deferred."))
        .collect();
    assert!(left.is_empty(), "spill files left: {left:?}");
}

#[test]
fn the_run_report_has_timings_and_a_self_contained_html_page() {
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    let w = Workdir::new();
    let o = w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "out",
            "--max-rejects",
            "10",
            "--report",
            "report.html",
        ],
        0,
    );
    // The table on stderr: counts, orphans, time and throughput per entity.
    let table = stderr(&o);
    assert!(
        table.contains("orphans") && table.contains("MB/s"),
        "{table}"
    );
    let line = table.lines().find(|l| l.starts_with("account ")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..5], ["6", "5", "1", "3"], "{line}");
    let m = manifest(&w, "out");
    let a = entity(&m, "account");
    assert!(a["input_bytes"].as_u64().unwrap() > 100);
    assert!(a["millis"].is_u64());
    assert_eq!(
        entity(&m, "contact_interest")["rejects_by_field"]["contact_id"],
        3
    );
    // The page holds the same figures, and nothing it would fetch.
    let html = w.read("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("<td>contact_interest</td><td>7</td><td>4</td>"),
        "{html}"
    );
    assert!(html.contains("Rejects by field"));
    for fetch in ["src=", "href=", "<script", "@import", "url("] {
        assert!(
            !html.contains(fetch),
            "the report must be self-contained: {fetch}"
        );
    }
    // In headless Chromium (Debian's chromium; required in CI) the page renders those figures.
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is required in CI to check that the report renders");
        }
        util::not_run("the report in headless Chromium (chromium is not installed)");
        return;
    };
    let page = format!("file://{}", w.path("report.html").display());
    let profile = format!("--user-data-dir={}", w.path("chromium-profile").display());
    let dom = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            &profile,
            "--dump-dom",
            &page,
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<td>contact_interest</td>"),
        "rendered DOM: {dom}"
    );
    assert!(dom.contains("id=\"status\">ok</b>"), "rendered DOM: {dom}");
}

#[test]
fn progress_shows_only_when_asked_or_on_a_terminal() {
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    let w = Workdir::new();
    // Not a terminal: nothing but the summary.
    let o = w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "a",
            "--max-rejects",
            "10",
        ],
        0,
    );
    assert!(!stderr(&o).contains("progress:"), "{}", stderr(&o));
    // CRM_ETL_PROGRESS=always: plain lines per entity, ending at 100 %.
    let o = w
        .cmd(&[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "b",
            "--max-rejects",
            "10",
        ])
        .env("CRM_ETL_PROGRESS", "always")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("progress: account: ") && err.contains("(100 %), 6 records"),
        "{err}"
    );
    // --quiet wins.
    let o = w
        .cmd(&[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "c",
            "--max-rejects",
            "10",
            "-q",
        ])
        .env("CRM_ETL_PROGRESS", "always")
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "");
}
