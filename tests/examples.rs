//! The mappings in `schemas/examples/`, run on the real vendor samples in `../shared/realdata` (present in
//! CI; elsewhere these tests say they were not run). Expected counts are computed here from the samples
//! themselves, not copied from a run.

mod util;

use std::path::{Path, PathBuf};

use util::{realdata, root, stdout, Workdir};

fn example(name: &str) -> PathBuf {
    root()
        .join("schemas/examples")
        .join(name)
        .join("mapping.toml")
}

/// Runs an example into `out` and returns its manifest.
fn run(w: &Workdir, name: &str) -> serde_json::Value {
    let mapping = example(name);
    w.expect(&["run", mapping.to_str().unwrap(), "--out", "out", "-q"], 0);
    w.expect(&["verify", "out"], 0);
    serde_json::from_str(&w.read("out/manifest.json")).unwrap()
}

fn counts(m: &serde_json::Value) -> Vec<(String, u64, u64)> {
    m["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["read"].as_u64().unwrap(),
                e["written"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn json_records(p: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["records"].as_array().unwrap().clone()
}

fn column(csv_text: &str, name: &str) -> Vec<String> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let i = r.headers().unwrap().iter().position(|h| h == name).unwrap();
    r.records().map(|x| x.unwrap()[i].to_string()).collect()
}

#[test]
fn salesforce_tree_example_follows_the_plan_and_resolves_every_reference() {
    let Some(rd) = realdata("salesforce_tree_example") else {
        return;
    };
    let data = rd.join("sfdx-tree-trailhead/easy-spaces-lwc/data");
    let w = Workdir::new();
    let m = run(&w, "salesforce-tree");
    // The plan file's order, sObject by sObject, is the order the entities ran in.
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("Plan2.json")).unwrap()).unwrap();
    let plan_order: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["sobject"]
                .as_str()
                .unwrap()
                .trim_end_matches("__c")
                .to_lowercase()
        })
        .collect();
    let ran: Vec<String> = counts(&m).into_iter().map(|c| c.0).collect();
    assert_eq!(&ran[..plan_order.len()], plan_order.as_slice());
    // Every record of every file is written: no orphans, no rejects.
    let files = [
        ("account", "Accounts.json"),
        ("contact", "Contacts.json"),
        ("market", "Market__cs.json"),
        ("space", "Space__cs.json"),
        ("reservation", "Reservation__cs.json"),
    ];
    let c = counts(&m);
    for (entity, file) in files {
        let n = json_records(&data.join(file)).len() as u64;
        let got = c.iter().find(|x| x.0 == entity).unwrap();
        assert_eq!((got.1, got.2), (n, n), "{entity}");
    }
    // The multi-select Type__c: one row per non-empty part.
    let parts: usize = json_records(&data.join("Space__cs.json"))
        .iter()
        .map(|r| {
            r["Type__c"]
                .as_str()
                .unwrap_or("")
                .split(';')
                .filter(|p| !p.trim().is_empty())
                .count()
        })
        .sum();
    let st = c.iter().find(|x| x.0 == "space_type").unwrap();
    assert_eq!((st.1, st.2), (parts as u64, parts as u64));
    // References hold the parents' keys without the "@".
    let contacts = column(&w.read("out/contact.csv"), "ref");
    for r in column(&w.read("out/reservation.csv"), "contact_ref") {
        assert!(contacts.contains(&r), "{r}");
    }
    assert_eq!(m["rejected"], 0);
}

#[test]
fn salesforce_csv_example_links_by_id_and_by_external_id() {
    if realdata("salesforce_csv_example").is_none() {
        return;
    }
    let w = Workdir::new();
    let m = run(&w, "salesforce-csv-ids");
    let c = counts(&m);
    let get = |n: &str| c.iter().find(|x| x.0 == n).unwrap().clone();
    assert_eq!(get("account").2, 100);
    assert_eq!(get("oracle_account").2, 100);
    assert_eq!(get("account_patch").2, 2);
    assert_eq!(get("child_account").2, 5);
    // The ideographic spaces around the first external id are trimmed, so children find it.
    let ids = column(&w.read("out/oracle_account.csv"), "oracle_id");
    assert_eq!(ids[0], "1-000000");
    let parents = column(&w.read("out/child_account.csv"), "parent_oracle_id");
    assert!(parents.contains(&"1-000000".to_string()), "{parents:?}");
    for p in parents {
        assert!(ids.contains(&p));
    }
    let accounts = column(&w.read("out/account.csv"), "id");
    for id in column(&w.read("out/account_patch.csv"), "account_id") {
        assert!(accounts.contains(&id));
    }
}

#[test]
fn dynamics_cmt_example_resolves_lookups_self_references_and_m2m() {
    let Some(rd) = realdata("dynamics_cmt_example") else {
        return;
    };
    let xml = std::fs::read_to_string(rd.join("d365-cmt-dotnetprog/data/data.xml")).unwrap();
    let section = |entity: &str| {
        let start = xml.find(&format!("<entity name=\"{entity}\"")).unwrap();
        let end = start + xml[start..].find("</entity>").unwrap();
        &xml[start..end]
    };
    let w = Workdir::new();
    let plan = stdout(&w.expect(&["check", example("dynamics-cmt").to_str().unwrap()], 0));
    assert!(plan.contains("then set from nature.updates.csv"), "{plan}");
    let m = run(&w, "dynamics-cmt");
    let c = counts(&m);
    for (entity, cmt) in [
        ("category", "fdn_insurancecategory"),
        ("subcategory", "fdn_insurancesubcategory"),
        ("product", "fdn_insuranceproduct"),
        ("nature", "fdn_insuranceproductnature"),
    ] {
        let n = section(cmt).matches("<record id=").count() as u64;
        let got = c.iter().find(|x| x.0 == entity).unwrap();
        assert_eq!((got.1, got.2), (n, n), "{entity}");
    }
    let links = section("fdn_insuranceproduct")
        .matches("<targetid>")
        .count() as u64;
    let pn = c.iter().find(|x| x.0 == "product_nature").unwrap();
    assert_eq!((pn.1, pn.2), (links, links));
    // Each nature with a parent in the package gets an update row pointing at an existing nature.
    let natures = column(&w.read("out/nature.csv"), "id");
    let parents = section("fdn_insuranceproductnature")
        .matches("name=\"fdn_parentinsuranceproductnatureid\"")
        .count();
    let updates = w.read("out/nature.updates.csv");
    assert_eq!(column(&updates, "parent_id").len(), parents);
    for p in column(&updates, "parent_id") {
        assert!(natures.contains(&p), "{p}");
    }
    // The doubly encoded name is decoded once more; the option set goes through the lookup file.
    let out = w.read("out/nature.csv");
    assert!(out.contains("\"Root <\"\"\"\"> ''é&&@ \\ /\""), "{out}");
    assert!(column(&out, "level").contains(&"Root".to_string()));
}

#[test]
fn pull_example_writes_a_data_loader_layout_with_external_id_relations() {
    // Bundled data (fixtures/pull, as `psql \copy ... TO STDOUT WITH CSV HEADER` writes it): runs anywhere.
    let w = Workdir::new();
    let mapping = example("pull-salesforce");
    w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "out",
            "--max-rejects",
            "1",
            "-q",
        ],
        0,
    );
    let accounts = w.read("out/Account.csv");
    let contacts = w.read("out/Contact.csv");
    assert!(
        contacts.starts_with("Legacy_Id__c,Account:External_Id__c,"),
        "{contacts}"
    );
    // Each contact's account is written as the account's external id, found through its database id.
    let ext = column(&accounts, "External_Id__c");
    let legacy = column(&accounts, "Legacy_Id__c");
    let src = std::fs::read_to_string(root().join("fixtures/pull/contact.csv")).unwrap();
    let src_ids = column(&src, "id");
    let src_accounts = column(&src, "account_id");
    let out_ids = column(&contacts, "Legacy_Id__c");
    for (id, acc) in out_ids
        .iter()
        .zip(column(&contacts, "Account:External_Id__c"))
    {
        let db_account = &src_accounts[src_ids.iter().position(|x| x == id).unwrap()];
        let k = legacy.iter().position(|l| l == db_account).unwrap();
        assert_eq!(acc, ext[k], "contact {id}");
    }
    // The contact whose account is not in the export is rejected, not written with a dangling id.
    assert!(w.read("out/rejects/Contact.csv").contains(",orphan,"));
    assert_eq!(out_ids.len(), 3);
}
