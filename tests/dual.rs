//! Several outputs of one run ("dual write"): an entity written in several formats and load targets
//! from the same rows in one pass, each byte-identical to a run of that format alone, and each
//! holding exactly the rows of the entity's dataset digest.

mod util;

use util::{root, stderr, Workdir};

fn demo() -> String {
    root()
        .join("fixtures/demo/mapping.toml")
        .display()
        .to_string()
}

fn run(w: &Workdir, out: &str, extra: &[&str]) {
    let m = demo();
    let mut args = vec!["run", m.as_str(), "--out", out, "--max-rejects", "10", "-q"];
    args.extend_from_slice(extra);
    w.expect(&args, 0);
}

#[test]
fn one_pass_writes_every_format_as_a_run_of_each_alone() {
    let w = Workdir::new();
    let formats = ["jsonl", "csv", "json", "xml"];
    for threads in ["1", "3"] {
        let dual = format!("dual{threads}");
        run(
            &w,
            &dual,
            &[
                "--format",
                &formats.join(","),
                "--target",
                "sqlite",
                "--threads",
                threads,
            ],
        );
        for f in formats {
            let single = format!("single-{f}");
            run(&w, &single, &["--format", f, "--target", "sqlite"]);
            for entity in ["account", "contact"] {
                let name = format!("{entity}.{f}");
                assert_eq!(
                    w.read(&format!("{dual}/{name}")),
                    w.read(&format!("{single}/{name}")),
                    "{name} at --threads {threads}"
                );
            }
        }
        w.expect(&["verify", &dual], 0);
    }
    let m: serde_json::Value = serde_json::from_str(&w.read("dual1/manifest.json")).unwrap();
    let contact = &m["entities"][1];
    assert_eq!(contact["name"], "contact");
    assert_eq!(
        contact["output"], "contact.jsonl",
        "the first format is the main output"
    );
    assert_eq!(
        contact["also"],
        serde_json::json!([
            "contact.csv",
            "contact.json",
            "contact.xml",
            "load/sqlite/contact.sql"
        ])
    );
    // Each file gives back the entity's digest: recomputed from the JSON Lines and JSON outputs.
    for (file, from) in [
        ("dual1/contact.jsonl", "jsonl"),
        ("dual1/contact.json", "json"),
    ] {
        let o = w.expect(
            &[
                "digest",
                &demo(),
                "--entity",
                "contact",
                "--from",
                from,
                file,
                "--expect",
                "dual1",
            ],
            0,
        );
        assert!(stderr(&o).contains("matches") || util::stdout(&o).contains("matches"));
    }
}

#[test]
fn formats_listed_in_the_mapping_and_their_mistakes() {
    let w = Workdir::new();
    let m = std::fs::read_to_string(demo()).unwrap().replace(
        "path = \"",
        &format!("path = \"{}/", root().join("fixtures/demo").display()),
    );
    let own = "source = \"contacts\"\nformat = \"csv\"\n";
    let listed = m.replacen(
        own,
        "source = \"contacts\"\nformat = [\"csv\", \"jsonl\", \"csv\"]\n",
        1,
    );
    assert_ne!(listed, m, "the demo mapping names its contact entity");
    w.write("m.toml", &listed);
    w.expect(
        &["run", "m.toml", "--out", "out", "-q", "--max-rejects", "10"],
        0,
    );
    assert!(w.path("out/contact.csv").exists() && w.path("out/contact.jsonl").exists());
    // A format named twice is written once.
    let man: serde_json::Value = serde_json::from_str(&w.read("out/manifest.json")).unwrap();
    let contact = man["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "contact")
        .unwrap();
    assert_eq!(contact["also"], serde_json::json!(["contact.jsonl"]));
    w.write(
        "empty.toml",
        m.replacen(own, "source = \"contacts\"\nformat = []\n", 1),
    );
    let o = w.expect(&["check", "empty.toml"], 2);
    assert!(
        stderr(&o).contains("format") && stderr(&o).contains("empty list"),
        "{}",
        stderr(&o)
    );
}
