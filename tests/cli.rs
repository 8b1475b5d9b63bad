//! Integration tests: the real `crm-etl` binary on fixtures, bad inputs, and the real vendor samples.

mod util;

use std::path::Path;

use util::{assert_same_text, realdata, root, stderr, stdout, Workdir};

/// Every output of a run except the manifest (which holds times), as (relative path, text).
fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                // The row state files are binary; checksums.b3 pins their bytes all the same.
                if rel != "manifest.json" && !rel.starts_with("state/") {
                    files.push((
                        rel,
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
                    ));
                }
            }
        }
    }
    files.sort();
    files
}

/// The deterministic part of a manifest: per-entity counts and reasons.
fn summary(out: &Path, exit: i32) -> String {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let mut s = format!("exit {exit}\n");
    for e in m["entities"].as_array().unwrap() {
        s.push_str(&format!(
            "{}: read {} written {} rejected {} {}\n",
            e["name"].as_str().unwrap(),
            e["read"],
            e["written"],
            e["rejected"],
            e["rejects_by_reason"]
        ));
    }
    s
}

/// Golden cases: each folder with a mapping runs, and its outputs must equal `expected/`. `BLESS=1`
/// rewrites `expected/` instead; review the diff before committing.
#[test]
fn golden_cases() {
    let mut cases: Vec<_> = std::fs::read_dir(root().join("fixtures/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.push(root().join("fixtures/demo"));
    cases.sort();
    let bless = std::env::var("BLESS").is_ok();
    for case in cases {
        let w = Workdir::new();
        let mapping = case.join("mapping.toml");
        let out = w.path("out");
        let o = w.run(&[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-rejects",
            "1000",
            "--quiet",
        ]);
        let code = o.status.code().unwrap_or(-1);
        assert!(code == 0, "{}: exit {code}: {}", case.display(), stderr(&o));
        let expected = case.join("expected");
        let mut got = outputs(&out);
        got.push(("summary.txt".into(), summary(&out, code)));
        if bless {
            let _ = std::fs::remove_dir_all(&expected);
            for (rel, text) in &got {
                let p = expected.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            }
            continue;
        }
        let want = outputs(&expected);
        let want_names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(want_names, got_names, "{}: output files", case.display());
        for ((name, w_text), (_, g_text)) in want.iter().zip(&got) {
            assert_same_text(&format!("{}: {name}", case.display()), w_text, g_text);
        }
    }
}

#[test]
fn demo_run_verifies_and_accounts_for_every_record() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/demo/mapping.toml");
    // The demo has rejects: the default --max-rejects 0 makes that exit code 1, and the run is complete.
    let o = w.expect(&["run", mapping.to_str().unwrap(), "--out", "out"], 1);
    assert!(
        stderr(&o).contains("rejected, more than --max-rejects 0"),
        "{}",
        stderr(&o)
    );
    let m: serde_json::Value = serde_json::from_str(&w.read("out/manifest.json")).unwrap();
    assert_eq!(m["status"], "rejects_over_limit");
    for e in m["entities"].as_array().unwrap() {
        assert_eq!(
            e["read"].as_u64().unwrap(),
            e["written"].as_u64().unwrap() + e["rejected"].as_u64().unwrap()
        );
    }
    assert_eq!(m["inputs"][0]["encoding"], "utf-8 (byte-order mark)");
    w.expect(&["verify", "out"], 0);
    w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "out",
            "--max-rejects",
            "5",
            "-q",
        ],
        0,
    );
}

#[test]
fn same_bytes_at_any_thread_count() {
    let w = Workdir::new();
    // Enough records for many batches and chunks, with rejects and duplicates spread through them.
    let mut csv = String::from("Id,Name,Amount,When\n");
    // The same records as JSON Lines and XML, so that their readers are held to the same rule.
    let mut jsonl = String::new();
    let mut xml = String::from("<rows>\n");
    for i in 0..30_000u32 {
        let id = if i % 997 == 0 { 5 } else { i };
        let amount = if i % 1013 == 0 {
            "x".to_string()
        } else {
            format!("{}.{:02}", i, i % 100)
        };
        let when = format!("2024-01-{:02}", 1 + i % 28);
        csv.push_str(&format!("{id},\"Name {i}, \"\"q\"\"\",{amount},{when}\n"));
        jsonl.push_str(&format!(
            "{{\"Id\":{id},\"Name\":\"Name {i}, \\\"q\\\"\",\"Amount\":\"{amount}\",\"When\":\"{when}\"}}\n"
        ));
        xml.push_str(&format!(
            "<row Id=\"{id}\"><Name>Name {i}, &quot;q&quot;</Name><Amount>{amount}</Amount><When>{when}</When></row>\n"
        ));
    }
    xml.push_str("</rows>\n");
    w.write("in.csv", csv);
    w.write("in.jsonl", jsonl);
    w.write("in.xml", xml);
    w.write(
        "m.toml",
        r#"
[sources.s]
path = "in.csv"
[[entities]]
name = "t"
source = "s"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id", type = "integer" },
  { name = "name", column = "Name" },
  { name = "amount", column = "Amount", type = "decimal(10,2)" },
  { name = "when", column = "When", type = "date" },
]
[[entities]]
name = "j"
source = "s"
format = "jsonl"
fields = [{ name = "name", column = "Name" }, { name = "amount", column = "Amount", type = "float" }]

[sources.js]
path = "in.jsonl"
format = "jsonl"
[[entities]]
name = "from_jsonl"
source = "js"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id", type = "integer" },
  { name = "name", column = "Name" },
  { name = "amount", column = "Amount", type = "decimal(10,2)" },
  { name = "when", column = "When", type = "date" },
]

[sources.xs]
path = "in.xml"
format = "xml"
record_path = "/rows/row"
[[entities]]
name = "from_xml"
source = "xs"
format = "xml"
primary_key = ["id"]
fields = [
  { name = "id", column = "@Id", type = "integer" },
  { name = "name", column = "Name" },
  { name = "amount", column = "Amount", type = "decimal(10,2)" },
  { name = "when", column = "When", type = "date" },
]
"#,
    );
    let mut sums = Vec::new();
    for t in ["1", "2", "7"] {
        let out = format!("out{t}");
        w.expect(
            &[
                "run",
                "m.toml",
                "--out",
                &out,
                "--threads",
                t,
                "--max-rejects",
                "1000000",
                "-q",
            ],
            0,
        );
        sums.push((
            w.read(&format!("{out}/checksums.b3")),
            outputs(&w.path(&out)),
        ));
    }
    assert_eq!(sums[0], sums[1]);
    assert_eq!(sums[0], sums[2]);
    let m: serde_json::Value = serde_json::from_str(&w.read("out2/manifest.json")).unwrap();
    assert_eq!(m["entities"][0]["rejects_by_reason"]["duplicate"], 30);
    // Three readers, one result: the JSON Lines entity's rows and rejects equal the CSV entity's.
    assert_eq!(w.read("out2/t.csv"), w.read("out2/from_jsonl.csv"));
    for e in [2, 3] {
        assert_eq!(
            m["entities"][e]["rejects_by_reason"],
            m["entities"][0]["rejects_by_reason"]
        );
        assert_eq!(m["entities"][e]["written"], m["entities"][0]["written"]);
    }
    let xml = w.read("out2/from_xml.xml");
    assert!(xml.contains("<record><id>1</id><name>Name 1, \"q\"</name><amount>1.01</amount><when>2024-01-02</when></record>"));
}

#[test]
fn verify_reports_changed_missing_and_unexpected_files() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/cases/rejects/mapping.toml");
    w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "out",
            "--max-rejects",
            "100",
            "-q",
        ],
        0,
    );
    w.expect(&["verify", "out"], 0);
    if which("b3sum") {
        let o = std::process::Command::new("b3sum")
            .args(["--check", "checksums.b3"])
            .current_dir(w.path("out"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "b3sum --check: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("b3sum is required in CI");
    } else {
        util::not_run("b3sum --check (b3sum is not installed)");
    }
    let path = w.path("out/contact.csv");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    w.write("out/stray.txt", "x");
    std::fs::remove_file(w.path("out/rejects/contact.csv")).unwrap();
    let o = w.expect(&["verify", "out"], 1);
    let text = stdout(&o);
    assert!(text.contains("CHANGED     contact.csv"), "{text}");
    assert!(text.contains("MISSING     rejects/contact.csv"), "{text}");
    assert!(text.contains("UNEXPECTED  stray.txt"), "{text}");
    // A manifest edited to match a forged file is caught through the checksums' own hash.
    std::fs::write(
        w.path("out/checksums.b3"),
        "0000000000000000000000000000000000000000000000000000000000000000  contact.csv\n",
    )
    .unwrap();
    let text = stdout(&w.expect(&["verify", "out"], 1));
    assert!(text.contains("CHANGED     checksums.b3"), "{text}");
    std::fs::remove_file(w.path("out/manifest.json")).unwrap();
    assert!(stdout(&w.expect(&["verify", "out"], 1)).contains("MISSING     manifest.json"));
}

fn which(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn csv_records_are_limited_to_one_gibibyte() {
    let w = Workdir::new();
    w.write("c.csv", "Id\n1\n");
    let mapping = |limit: u64| {
        format!(
            "[sources.c]\npath = \"c.csv\"\ncsv.max_record_bytes = {limit}\n[[entities]]\nname = \"c\"\nsource = \"c\"\n[[entities.fields]]\nname = \"id\"\ncolumn = \"Id\"\n"
        )
    };
    w.write("m.toml", mapping(1 << 30));
    w.expect(&["check", "m.toml"], 0);
    w.write("m.toml", mapping((1 << 30) + 1));
    let e = stderr(&w.expect(&["check", "m.toml"], 2));
    assert!(e.contains("max_record_bytes"), "{e}");
    assert!(e.contains("expected 1024 to 1073741824"), "{e}");
}

#[test]
fn check_reports_every_problem_at_once() {
    let w = Workdir::new();
    w.write("c.csv", "Id,Email,Phone\n1,a@b.c,5\n");
    w.write(
        "m.toml",
        r#"
[sources.c]
path = "c.csv"
encodng = "utf-8"
[[entities]]
name = "contact"
source = "c"
[[entities.fields]]
name = "email"
column = "Emial"
[[entities.fields]]
name = "n"
column = "Id"
type = "intger"
[[entities.fields]]
name = "d"
column = "Phone"
type = "date"
formats = ["%Y-%q"]
"#,
    );
    let o = w.expect(&["check", "m.toml"], 2);
    let e = stderr(&o);
    assert!(
        e.contains("sources.c.encodng: unknown key \"encodng\"; did you mean \"encoding\"?"),
        "{e}"
    );
    // Unknown keys stop the parse; fix them and the rest is reported together.
    w.write(
        "m.toml",
        w.read("m.toml").replace("encodng = \"utf-8\"\n", ""),
    );
    let e = stderr(&w.expect(&["check", "m.toml"], 2));
    assert!(e.contains("entities[0].fields[0].column: unknown column \"Emial\" in the header of c.csv; did you mean \"Email\"?"), "{e}");
    assert!(
        e.contains("entities[0].fields[1].type: unknown type \"intger\""),
        "{e}"
    );
    assert!(e.contains("did you mean \"integer\""), "{e}");
    assert!(
        e.contains("entities[0].fields[2].formats: format \"%Y-%q\": unsupported directive %q"),
        "{e}"
    );
    // The same mapping is refused by run, with nothing written.
    w.expect(&["run", "m.toml", "--out", "out"], 2);
    assert!(!w.path("out/manifest.json").exists());
    let demo = root().join("fixtures/demo/mapping.toml");
    let o = w.expect(&["check", demo.to_str().unwrap()], 0);
    assert!(
        stdout(&o).contains("encoding utf-8 (byte-order mark)"),
        "{}",
        stdout(&o)
    );
}

fn simple_mapping(w: &Workdir, extra_source: &str) {
    w.write(
        "m.toml",
        format!(
            "[sources.s]\npath = \"in.csv\"\n{extra_source}\n[[entities]]\nname = \"t\"\nsource = \"s\"\nfields = [{{ name = \"a\", column = \"A\" }}, {{ name = \"b\", column = \"B\" }}]\n"
        ),
    );
}

/// A record of 2000 bytes, over a 1024-byte limit.
const LONG: &[u8] = {
    const N: usize = 2000;
    const B: [u8; N] = {
        let mut b = [b'x'; N];
        let head = b"A,B\n\"";
        let mut i = 0;
        while i < head.len() {
            b[i] = head[i];
            i += 1;
        }
        b[N - 4] = b'"';
        b[N - 3] = b',';
        b[N - 2] = b'1';
        b[N - 1] = b'\n';
        b
    };
    &B
};

#[test]
fn fatal_inputs_exit_2_with_a_position_and_leave_no_manifest() {
    let cases: &[(&str, &[u8], &str, &str)] = &[
        (
            "unterminated quote",
            b"A,B\n1,2\n3,\"open\n4,5\n",
            "",
            "in.csv: record 2 (line 3, byte 10): unterminated quoted field",
        ),
        ("empty file", b"", "", "in.csv: the file is empty"),
        (
            "missing column",
            b"A,C\n1,2\n",
            "",
            "unknown column \"B\" in the header of in.csv",
        ),
        (
            "ragged fail",
            b"A,B\n1,2\n3\n",
            "csv = { ragged = \"fail\" }",
            "in.csv: record 2 (line 3, byte 8): expected 2 fields, found 1",
        ),
        (
            "bad utf-16",
            b"\xff\xfeA\0,\0B\0\n\0\x00\xdc",
            "",
            "byte 10: bytes invalid in the declared encoding utf-16le",
        ),
        (
            "record too long",
            LONG,
            "csv = { max_record_bytes = 1024 }",
            "longer than the limit of 1024 bytes",
        ),
    ];
    for (what, input, extra, want) in cases {
        let w = Workdir::new();
        w.write("in.csv", input);
        simple_mapping(&w, extra);
        let o = w.expect(&["run", "m.toml", "--out", "out"], 2);
        let e = stderr(&o);
        assert!(e.contains(want), "{what}: {e}");
        assert!(
            !w.path("out/manifest.json").exists(),
            "{what}: a manifest vouches for a failed run"
        );
        assert!(
            !w.path("out/t.csv").exists(),
            "{what}: a partial output was left under its final name"
        );
    }
    let w = Workdir::new();
    simple_mapping(&w, "");
    let e = stderr(&w.expect(&["run", "m.toml", "--out", "out"], 2));
    assert!(e.contains("no file matches"), "{e}");
}

#[test]
fn refuses_to_write_into_a_foreign_folder() {
    let w = Workdir::new();
    w.write("in.csv", "A,B\n1,2\n");
    simple_mapping(&w, "");
    w.write("out/precious.txt", "keep me");
    let e = stderr(&w.expect(&["run", "m.toml", "--out", "out"], 2));
    assert!(e.contains("holds no earlier crm-etl run"), "{e}");
    assert_eq!(w.read("out/precious.txt"), "keep me");
    // An earlier run's folder is replaced cleanly: a file from the old run that the new one does not make
    // is removed, so verify stays green.
    w.expect(&["run", "m.toml", "--out", "run"], 0);
    w.write(
        "m.toml",
        w.read("m.toml").replace("name = \"t\"", "name = \"u\""),
    );
    w.expect(&["run", "m.toml", "--out", "run"], 0);
    assert!(!w.path("run/t.csv").exists());
    w.expect(&["verify", "run"], 0);
}

#[test]
fn convert_keeps_every_value_as_text() {
    let w = Workdir::new();
    w.write(
        "in.csv",
        "id,name,id,note\n1,\"Zoë, \"\"Z\"\"\",x,\n2,東京,y,\"two\nlines\"\n",
    );
    let o = w.expect(&["convert", "in.csv", "--to", "jsonl"], 0);
    assert_eq!(
        stdout(&o),
        "{\"id\":\"1\",\"name\":\"Zoë, \\\"Z\\\"\",\"id_2\":\"x\",\"note\":\"\"}\n{\"id\":\"2\",\"name\":\"東京\",\"id_2\":\"y\",\"note\":\"two\\nlines\"}\n"
    );
    w.expect(&["convert", "in.csv", "--to", "json", "-o", "out.json"], 0);
    let v: serde_json::Value = serde_json::from_str(&w.read("out.json")).unwrap();
    assert_eq!(v[1]["note"], "two\nlines");
    w.expect(&["convert", "in.csv", "--to", "csv", "-o", "out.csv"], 0);
    assert_eq!(w.read("out.csv"), w.read("in.csv"));
    // Standard input, and a dialect.
    let mut c = w.cmd(&["convert", "-", "--to", "csv", "--delimiter", ";"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a;b\n1;2,3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a,b\n1,\"2,3\"\n");
    // Broken input is an error with its position, and no output file appears.
    w.write("bad.csv", "a,b\n1,\"2\n");
    let e = stderr(&w.expect(
        &["convert", "bad.csv", "--to", "jsonl", "-o", "bad.jsonl"],
        2,
    ));
    assert!(
        e.contains("bad.csv: record 1 (line 2, byte 6): unterminated quoted field"),
        "{e}"
    );
    assert!(!w.path("bad.jsonl").exists());
    w.write("ragged.csv", "a,b\n1\n");
    let e = stderr(&w.expect(&["convert", "ragged.csv", "--to", "jsonl"], 2));
    assert!(e.contains("expected 2 fields, found 1"), "{e}");
    let o = w.expect(
        &["convert", "ragged.csv", "--to", "jsonl", "--ragged", "pad"],
        0,
    );
    assert_eq!(stdout(&o), "{\"a\":\"1\",\"b\":null}\n");
}

#[test]
fn schema_file_is_current() {
    let w = Workdir::new();
    let o = w.expect(&["schema"], 0);
    let path = root().join("schemas/mapping.schema.json");
    if std::env::var("BLESS").is_ok() {
        std::fs::write(&path, &o.stdout).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert_same_text("schemas/mapping.schema.json (regenerate: cargo run -- schema > schemas/mapping.schema.json)", &checked_in, &stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    assert!(
        v["$defs"]["Field"]["properties"]["max_length"]["description"]
            .as_str()
            .unwrap()
            .contains("characters")
    );
}

#[test]
fn usage_errors_exit_2() {
    let w = Workdir::new();
    w.expect(&["run"], 2);
    w.expect(&["convert", "x.csv", "--to", "xml"], 2);
    w.expect(&["verify", "nowhere"], 2);
    w.write("m.toml", "this is = not [ toml");
    let e = stderr(&w.expect(&["check", "m.toml"], 2));
    assert!(e.contains("TOML syntax"), "{e}");
}

/// Every CSV file of the real vendor samples converts without a panic: either cleanly, or with a clear
/// error and exit code 2.
#[test]
fn real_samples_never_panic_and_boms_agree() {
    let Some(rd) = realdata("real_samples_never_panic_and_boms_agree") else {
        return;
    };
    let w = Workdir::new();
    let mut files = Vec::new();
    let mut stack = vec![rd.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                files.push(p);
            }
        }
    }
    assert!(
        files.len() > 50,
        "expected the real samples, found {}",
        files.len()
    );
    let mut clean = 0;
    for f in &files {
        let o = w.run(&[
            "convert",
            f.to_str().unwrap(),
            "--to",
            "jsonl",
            "-o",
            "x.jsonl",
        ]);
        let code = o.status.code();
        assert!(
            code == Some(0) || code == Some(2),
            "{}: exit {code:?}: {}",
            f.display(),
            stderr(&o)
        );
        if code == Some(2) {
            let e = stderr(&o);
            assert!(
                e.contains("crm-etl: error:")
                    && e.contains(&*f.file_name().unwrap().to_string_lossy()),
                "{}: {e}",
                f.display()
            );
        } else {
            clean += 1;
        }
    }
    assert!(
        clean * 10 >= files.len() * 8,
        "only {clean} of {} real files converted",
        files.len()
    );
    // The same table in five byte-order-marked encodings gives the same records.
    let dir = rd.join("salesforce-dataloader/src/test/resources/testfiles/data");
    let mut seen = Vec::new();
    for enc in ["UTF8", "UTF16LE", "UTF16BE", "UTF32LE", "UTF32BE"] {
        let f = dir.join(format!("csvtext_BOM_{enc}.csv"));
        let o = w.expect(&["convert", f.to_str().unwrap(), "--to", "jsonl"], 0);
        seen.push((enc, stdout(&o)));
    }
    for (enc, text) in &seen[1..] {
        assert_eq!(text, &seen[0].1, "{enc} differs from UTF-8");
    }
    assert!(!seen[0].1.is_empty());
    // Latin-1 declared: the file reads, and an accented name comes out right.
    let latin = rd.join("csv-quirks-rust-csv/examples/data/uspop-latin1.csv");
    let o = w.expect(
        &[
            "convert",
            latin.to_str().unwrap(),
            "--to",
            "jsonl",
            "--encoding",
            "iso-8859-1",
        ],
        0,
    );
    assert!(stdout(&o).lines().count() > 50);
}

#[test]
fn references_run_parents_first_and_cycles_are_reported() {
    let rel = root().join("fixtures/cases/relations/mapping.toml");
    let w = Workdir::new();
    // The plan lists parents before children, whatever the mapping's order.
    let out = stdout(&w.expect(&["check", rel.to_str().unwrap()], 0));
    let pos = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s:?} not in {out}"));
    assert!(pos("1. account") < pos("2. contact") && pos("2. contact") < pos("3. opportunity"));
    assert!(
        out.contains("contact_id -> contact.email, orphans: null"),
        "{out}"
    );
    // The manifest lists entities in the order they ran, and counts orphans that were not rejected.
    w.expect(
        &[
            "run",
            rel.to_str().unwrap(),
            "--out",
            "out",
            "--max-rejects",
            "10",
            "-q",
        ],
        0,
    );
    let m: serde_json::Value = serde_json::from_str(&w.read("out/manifest.json")).unwrap();
    let names: Vec<&str> = m["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["account", "contact", "opportunity"]);
    assert_eq!(m["entities"][2]["orphans"]["contact_id"], 1);
    // A lookup file with a misspelt column, or a key listed twice with two values, is a mapping error.
    w.write("owners.csv", "Email,UserId\na@x,1\na@x,2\n");
    w.write("acc.csv", "Id,Email\n1,a@x\n");
    let lk = |key: &str| {
        format!(
            "[sources.a]\npath = \"acc.csv\"\n[[entities]]\nname = \"a\"\nsource = \"a\"\nfields = [{{ name = \"o\", column = \"Email\", lookup = {{ path = \"owners.csv\", key = \"{key}\", value = \"UserId\" }} }}]\n"
        )
    };
    w.write("lk.toml", lk("Emial"));
    let e = stderr(&w.expect(&["check", "lk.toml"], 2));
    assert!(
        e.contains("lookup: ") && e.contains("no column \"Emial\"; did you mean \"Email\"?"),
        "{e}"
    );
    w.write("lk.toml", lk("Email"));
    let e = stderr(&w.expect(&["run", "lk.toml", "--out", "lk"], 2));
    assert!(
        e.contains("key \"a@x\" is listed twice, with \"1\" and \"2\""),
        "{e}"
    );

    // A self-reference and a mutual reference are cycles, named in full; bad targets are named too.
    w.write("a.csv", "Id,ParentId,ContactId\n1,,\n");
    let mapping = |parent_ref: &str| {
        format!(
            r#"
[sources.a]
path = "a.csv"
[[entities]]
name = "account"
source = "a"
primary_key = ["id"]
fields = [
  {{ name = "id", column = "Id" }},
  {{ name = "parent", column = "ParentId", references = {{ entity = "{parent_ref}" }} }},
]
[[entities]]
name = "contact"
source = "a"
primary_key = ["id"]
fields = [
  {{ name = "id", column = "Id" }},
  {{ name = "account", column = "ParentId", references = {{ entity = "account" }} }},
  {{ name = "name", column = "ContactId", references = {{ entity = "account", by = "parent" }} }},
]
"#
        )
    };
    w.write("self.toml", mapping("account"));
    let e = stderr(&w.expect(&["check", "self.toml"], 2));
    assert!(
        e.contains("the references form a cycle: account -> account"),
        "{e}"
    );
    assert!(e.contains("entities[1].fields[2].references.by: account.parent must be the primary key or have `unique = true`"), "{e}");
    w.write("mutual.toml", mapping("contact"));
    let e = stderr(&w.expect(&["run", "mutual.toml", "--out", "o2"], 2));
    assert!(
        e.contains("cycle: account -> contact -> account")
            || e.contains("cycle: contact -> account -> contact"),
        "{e}"
    );
    w.write("typo.toml", mapping("acount"));
    let e = stderr(&w.expect(&["check", "typo.toml"], 2));
    assert!(
        e.contains("unknown entity \"acount\"; did you mean \"account\"?"),
        "{e}"
    );
}
