//! Hostile and broken JSON and XML input, through the real binary and the library: every case is refused
//! with exit code 2 and a position, never a panic, never unbounded memory.

mod util;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use crm_etl::convert::{convert, ConvertOptions};
use crm_etl::read::compile_dialect;
use crm_etl::spec::{CsvDialect, Encoding, InputFormat, OutputFormat, Ragged};
use util::{root, stderr, stdout, Workdir};

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{dir} is empty");
    v
}

/// An error line names where: `line N, byte M` or `record N (line N, byte M)`.
fn has_position(e: &str) -> bool {
    e.contains("line ") && e.contains("byte ")
}

#[test]
fn json_documents_that_rfc_8259_refuses_are_refused() {
    let w = Workdir::new();
    for (dir, path) in [
        ("fixtures/json-conformance/reject", None),
        (
            "fixtures/json-conformance/reject-records-path",
            Some("records"),
        ),
    ] {
        for f in files(dir) {
            let fs = f.to_string_lossy().into_owned();
            let mut args = vec!["convert", &fs, "--from", "json", "--to", "jsonl"];
            if let Some(p) = path {
                args.extend(["--record-path", p]);
            }
            let o = w.run(&args);
            let e = stderr(&o);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{fs} was accepted: {}",
                stdout(&o)
            );
            assert!(
                has_position(&e) || e.contains("empty"),
                "{fs}: no position in {e}"
            );
            assert!(!e.contains("panicked"), "{fs}: {e}");
        }
    }
    for f in files("fixtures/json-conformance/accept") {
        let fs = f.to_string_lossy().into_owned();
        let o = w.run(&["convert", &fs, "--from", "json", "--to", "jsonl"]);
        assert_eq!(o.status.code(), Some(0), "{fs}: {}", stderr(&o));
    }
}

fn opts(input: &Path, output: &Path, from: InputFormat, record_path: &str) -> ConvertOptions {
    ConvertOptions {
        input: input.to_string_lossy().into_owned(),
        output: output.to_string_lossy().into_owned(),
        to: OutputFormat::Jsonl,
        dialect: compile_dialect(&CsvDialect::default()).unwrap(),
        encoding: Encoding::Auto,
        ragged: Ragged::Fail,
        threads: 2,
        from: Some(from),
        record_path: (!record_path.is_empty()).then(|| record_path.to_string()),
        columns: None,
        xml_root: None,
        xml_record: None,
        max_record_bytes: 1 << 20,
        progress: crm_etl::progress::Mode::Off,
    }
}

/// Cuts a valid document at every byte: each prefix that is not the whole document (give or take
/// trailing white space) must be refused, and none may panic.
fn truncate_everywhere(doc: &[u8], from: InputFormat, record_path: &str) {
    let w = Workdir::new();
    let input = w.path("cut");
    let output = w.path("out.jsonl");
    let full = String::from_utf8_lossy(doc).trim_end().len();
    convert(&opts(&w.write("cut", doc), &output, from, record_path))
        .expect("the whole document converts");
    for cut in 0..doc.len() {
        std::fs::write(&input, &doc[..cut]).unwrap();
        let res = convert(&opts(&input, &output, from, record_path));
        let whole = cut >= full;
        match res {
            Ok(_) => assert!(
                whole,
                "{from:?} cut at byte {cut} of {} was accepted",
                doc.len()
            ),
            Err(e) => {
                assert!(!whole, "{from:?} cut at {cut}: {e}");
                let msg = e.to_string();
                assert!(
                    has_position(&msg) || msg.contains("empty"),
                    "cut at {cut}: {msg}"
                );
            }
        }
    }
}

/// JSON Lines: a cut inside a line leaves a broken last record, which must be refused; a cut at a line
/// end leaves fewer whole records, which is valid.
fn truncate_jsonl(doc: &[u8]) {
    let w = Workdir::new();
    let input = w.path("cut");
    let output = w.path("out.jsonl");
    for cut in 0..=doc.len() {
        std::fs::write(&input, &doc[..cut]).unwrap();
        let res = convert(&opts(&input, &output, InputFormat::Jsonl, ""));
        let last_line = doc[..cut]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        // Valid: nothing of the last line is left, or all of it (a last line needs no line end).
        let whole = last_line.iter().all(u8::is_ascii_whitespace) || doc.get(cut) == Some(&b'\n');
        match res {
            Ok(_) => assert!(whole, "JSON Lines cut at {cut} was accepted"),
            Err(e) => {
                assert!(!whole, "JSON Lines cut at {cut}: {e}");
                assert!(has_position(&e.to_string()), "cut at {cut}: {e}");
            }
        }
    }
}

#[test]
fn truncation_at_any_byte_is_an_error_with_a_position() {
    // Every kind of JSON token, across lines, with the records below a key.
    let json = r#"{"meta": {"n": [1, -2.5e+3, true, false, null], "s": "\u00e9\ud83d\ude00\n"},
 "records": [
  {"attributes": {"type": "Account", "referenceId": "R1"}, "Name": "Caf\u00e9 \"Z\"", "N": 0.25,
   "Tags": ["a", {"b": null}], "Empty": {}, "List": []},
  {"Name": "København", "N": -0, "Ok": false}
 ]
}
"#;
    truncate_everywhere(json.as_bytes(), InputFormat::Json, "records");
    let jsonl = "{\"a\": 1, \"b\": \"x\\ny\"}\n\n{\"a\": [2, {\"c\": null}]}\n";
    truncate_jsonl(jsonl.as_bytes());
    // Declaration, comment, processing instruction, CDATA, references, attributes, empty elements.
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- export -->
<entities timestamp="2026-11-20T10:15:00Z"><?pi data?>
  <entity name="account"><records>
    <record id="a1"><field name="name" value="A &amp;amp; B"/><note><![CDATA[<x> & y]]></note></record>
    <record id="a2"><field name="name" value="Fran&#231;ois"/><note>t&lt;1&gt;</note></record>
  </records><m2mrelationships/></entity>
</entities>
"#;
    truncate_everywhere(
        xml.as_bytes(),
        InputFormat::Xml,
        "/entities/entity/records/record",
    );
}

#[test]
fn deep_nesting_is_refused_at_once() {
    let w = Workdir::new();
    let n = 100_000;
    // Inside a record, in a part the reader skips, and in XML.
    w.write(
        "in-record.json",
        format!("[{{\"a\":{}{}}}]", "[".repeat(n), "]".repeat(n)),
    );
    w.write(
        "skipped.json",
        format!(
            "{{\"x\":{}{},\"records\":[]}}",
            "[".repeat(n),
            "]".repeat(n)
        ),
    );
    w.write(
        "deep.xml",
        format!("<r>{}{}</r>", "<a>".repeat(n), "</a>".repeat(n)),
    );
    for (f, extra) in [
        ("in-record.json", vec![]),
        ("skipped.json", vec!["--record-path", "records"]),
        ("deep.xml", vec!["--record-path", "/r/a"]),
    ] {
        let mut args = vec!["convert", f, "--to", "jsonl"];
        args.extend(extra);
        let e = stderr(&w.expect(&args, 2));
        assert!(e.contains("deeper than") && has_position(&e), "{f}: {e}");
    }
}

#[test]
fn entity_expansion_and_external_entities_are_refused() {
    let w = Workdir::new();
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz><row><v>&lol9;</v></row></lolz>"#;
    w.write("laughs.xml", laughs);
    let e = stderr(&w.expect(
        &[
            "convert",
            "laughs.xml",
            "--record-path",
            "/lolz/row",
            "--to",
            "jsonl",
        ],
        2,
    ));
    assert!(e.contains("internal subset") && e.contains("line 2"), "{e}");
    // An external entity is never read: the reference is an unknown entity.
    w.write(
        "xxe.xml",
        "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r><row><v>&xxe;</v></row></r>",
    );
    let o = w.expect(
        &[
            "convert",
            "xxe.xml",
            "--record-path",
            "/r/row",
            "--to",
            "jsonl",
        ],
        2,
    );
    assert!(
        stderr(&o).contains("unknown entity &xxe;"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("root:"));
}

#[test]
fn invalid_utf8_anywhere_is_an_error_at_its_byte() {
    let w = Workdir::new();
    w.write("bad.json", b"{\"skip\":\"\xff\",\"records\":[]}");
    let e = stderr(&w.expect(
        &[
            "convert",
            "bad.json",
            "--record-path",
            "records",
            "--to",
            "csv",
        ],
        2,
    ));
    assert!(e.contains("byte 9") && e.contains("UTF-8"), "{e}");
    w.write("bad.xml", b"<r><row>\xc3\x28</row></r>");
    let e = stderr(&w.expect(
        &[
            "convert",
            "bad.xml",
            "--record-path",
            "/r/row",
            "--to",
            "csv",
        ],
        2,
    ));
    assert!(e.contains("byte 8") && e.contains("UTF-8"), "{e}");
    w.write("bad.jsonl", b"{\"a\":1}\n{\"a\":\"\xe2\x82\"}\n");
    let e = stderr(&w.expect(&["convert", "bad.jsonl", "--to", "csv"], 2));
    assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
}

/// Streams a document with one 500 MB string through standard input under a 600 MB address-space limit:
/// the reader must stop at its record limit with an error, not hold the string.
#[test]
fn a_500_mb_string_ends_with_an_error_in_bounded_memory() {
    let w = Workdir::new();
    for (from, head, path) in [
        ("json", &b"{\"records\":[{\"a\":\""[..], "records"),
        ("json", &b"{\"skipped\":\""[..], "records"),
        ("xml", &b"<r><row><a>"[..], "/r/row"),
    ] {
        let bin = env!("CARGO_BIN_EXE_crm-etl");
        let script = format!(
            "ulimit -v 600000; exec {bin} convert - --from {from} --record-path {path} --to jsonl"
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(w.path("."))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            let _ = stdin.write_all(head);
            for _ in 0..500 {
                if stdin.write_all(&chunk).is_err() {
                    return;
                }
            }
            let _ = stdin.write_all(b"\"}]}");
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{from} {path}: {e}");
        assert!(e.contains("longer than the limit"), "{e}");
    }
}

#[test]
fn real_vendor_samples_convert_one_row_per_record() {
    let Some(dir) = util::realdata("real_vendor_samples_convert_one_row_per_record") else {
        return;
    };
    let w = Workdir::new();
    // Every Salesforce tree-export data file: one row per element of `records`.
    let mut checked = 0;
    for sub in ["sfdx-tree-trailhead", "sfdx-plugin-data"] {
        let mut stack = vec![dir.join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let Some(records) = v.get("records").and_then(|r| r.as_array()) else {
                    continue;
                };
                let ps = p.to_string_lossy().into_owned();
                let o = w.expect(
                    &[
                        "convert",
                        &ps,
                        "--from",
                        "json",
                        "--record-path",
                        "records",
                        "--to",
                        "jsonl",
                    ],
                    0,
                );
                let rows: Vec<serde_json::Value> = stdout(&o)
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(rows.len(), records.len(), "{ps}");
                // Values survive: every top-level string field is there, as text.
                for (row, rec) in rows.iter().zip(records) {
                    assert_eq!(
                        row["attributes.referenceId"], rec["attributes"]["referenceId"],
                        "{ps}"
                    );
                    for (k, val) in rec.as_object().unwrap() {
                        if let Some(s) = val.as_str() {
                            assert_eq!(row[k].as_str(), Some(s), "{ps} {k}");
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} tree files found");
    // Every Dynamics CMT data.xml: one row per `record`, with its field values.
    for sub in [
        "d365-cmt-dotnetprog/data",
        "d365-cmt-teamruegg-ehuddle/data",
    ] {
        let f = dir.join(sub).join("data.xml");
        let text = std::fs::read_to_string(&f).unwrap();
        let records = text.matches("<record ").count();
        let fs = f.to_string_lossy().into_owned();
        // No columns given: each `<field name="x" value=".."/>` becomes a column `field[@name=x]/@value`.
        let o = w.expect(
            &[
                "convert",
                &fs,
                "--record-path",
                "/entities/entity/records/record",
                "--to",
                "jsonl",
            ],
            0,
        );
        let rows: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), records, "{fs}");
        // Spot-check every record's first field value against the text.
        for (row, rec) in rows.iter().zip(text.split("<record ").skip(1)) {
            let id = rec.split('"').nth(1).unwrap();
            assert_eq!(row["@id"], id, "{fs}");
            let name = rec
                .split("<field name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = rec
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let want = quick_xml::escape::unescape(value).unwrap();
            assert_eq!(
                row[format!("field[@name={name}]/@value")],
                *want,
                "{fs} {id}"
            );
        }
    }
}

/// `convert` takes its JSON/XML columns from the first 4096 records; a later record with another path is
/// an error that names it and its position, never a silently dropped value.
#[test]
fn convert_refuses_a_path_unseen_in_the_first_records() {
    let w = Workdir::new();
    let mut jsonl = String::new();
    for i in 0..4100 {
        if i == 4099 {
            jsonl.push_str("{\"a\": 1, \"late\": {\"b\": 2}}\n");
        } else {
            jsonl.push_str(&format!("{{\"a\": {i}}}\n"));
        }
    }
    w.write("in.jsonl", &jsonl);
    let e = stderr(&w.expect(&["convert", "in.jsonl", "--to", "csv", "-o", "out.csv"], 2));
    assert!(
        e.contains("\"late\" was not in the records that set the columns")
            && e.contains("record 4100 (line 4100"),
        "{e}"
    );
    assert!(!w.path("out.csv").exists());
    // Naming the columns reads them.
    let o = w.expect(
        &[
            "convert",
            "in.jsonl",
            "--to",
            "csv",
            "--columns",
            "a,late.b",
        ],
        0,
    );
    assert!(stdout(&o).ends_with("1,2\n"), "{}", stdout(&o));
}
