//! `crm-etl inspect` through the real binary: whole-file types, keys, references, and a draft mapping
//! that `check` and `run` accept as it is.

mod util;

use util::{realdata, root, stderr, stdout, Workdir};

#[test]
fn inspects_whole_files_and_drafts_a_mapping_that_runs() {
    let w = Workdir::new();
    for f in ["Account.csv", "Contact.csv"] {
        std::fs::copy(root().join("fixtures/demo").join(f), w.path(f)).unwrap();
    }
    // A column that is numeric but for its last value, and one with leading zeros, semicolon-separated.
    let mut t = String::from("code;amount;zip\n");
    for i in 0..200 {
        t.push_str(&format!("c{i};{i}.5;0{}\n", 1000 + i));
    }
    t.push_str("c200;N/A;01200\n");
    w.write("other.txt", t);
    let o = w.expect(
        &[
            "inspect",
            "Account.csv",
            "Contact.csv",
            "other.txt",
            "--mapping",
            "draft.toml",
        ],
        0,
    );
    let r = stdout(&o);
    assert!(
        r.contains("Account.csv: Csv, encoding utf-8 (byte-order mark), delimiter ',', 4 records"),
        "{r}"
    );
    assert!(
        r.contains("other.txt: Csv, encoding utf-8, delimiter ';', 201 records"),
        "{r}"
    );
    assert!(
        r.contains("200 of 201 values fit decimal; not: \"N/A\""),
        "{r}"
    );
    assert!(
        r.contains("likely reference: Contact.csv AccountId -> Account.csv Id"),
        "{r}"
    );
    assert!(r.contains("some have leading zeros"), "{r}");
    let draft = w.read("draft.toml");
    assert!(
        draft.contains("references = { entity = \"account\" }"),
        "{draft}"
    );
    assert!(
        draft.contains("# amount: 99.5 % of the values are decimals; kept as text"),
        "{draft}"
    );
    assert!(draft.contains("csv = { delimiter = \";\" }"), "{draft}");
    // The draft is a mapping that check and run accept as it is, with nothing rejected.
    w.expect(&["check", "draft.toml"], 0);
    w.expect(&["run", "draft.toml", "--out", "out"], 0);
    // A draft is never overwritten.
    let o = w.expect(&["inspect", "Account.csv", "--mapping", "draft.toml"], 2);
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn drafts_for_real_vendor_samples_run_as_they_are() {
    let Some(rd) = realdata("inspect_real_samples") else {
        return;
    };
    let w = Workdir::new();
    let tree = rd.join("sfdx-tree-trailhead/lwc-recipes/data");
    let dl = rd.join("salesforce-dataloader/src/test/resources/testfiles/data");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            ["Accounts.json", "Contacts.json", "Opportunities.json"]
                .iter()
                .map(|f| tree.join(f).to_string_lossy().into_owned())
                .collect(),
            vec!["--record-path", "records"],
        ),
        (
            [
                "upsertAccountCsvTemplate.csv",
                "csvtext_BOM_UTF16LE.csv",
                "dateWithTimeZone.csv",
            ]
            .iter()
            .map(|f| dl.join(f).to_string_lossy().into_owned())
            .collect(),
            vec![],
        ),
        (
            vec![rd
                .join("d365-cmt-dotnetprog/data/data.xml")
                .to_string_lossy()
                .into_owned()],
            vec![
                "--record-path",
                "/entities/entity[@name=fdn_insuranceproductnature]/records/record",
            ],
        ),
    ];
    for (n, (files, extra)) in cases.iter().enumerate() {
        let draft = format!("d{n}.toml");
        let mut args = vec!["inspect"];
        args.extend(files.iter().map(String::as_str));
        args.extend(extra.iter().copied());
        args.extend(["--mapping", &draft]);
        let o = w.expect(&args, 0);
        assert!(stdout(&o).contains("candidate keys"), "{}", stdout(&o));
        w.expect(&["check", &draft], 0);
        w.expect(&["run", &draft, "--out", &format!("o{n}")], 0);
    }
}
