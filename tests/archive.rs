//! `crm-etl archive` and `crm-etl verify ARCHIVE` through the real binary, and the check with only
//! `tar` and `b3sum`.

mod util;

use util::{root, stderr, stdout, Workdir};

/// Two runs in a scratch folder whose mappings and inputs are copies (so tests may change them).
fn two_runs(w: &Workdir) {
    for case in ["demo", "cases/cycles"] {
        let name = case.rsplit('/').next().unwrap();
        let src = root().join("fixtures").join(case);
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::create_dir_all(w.path(&format!("in/{name}"))).unwrap();
                std::fs::copy(
                    e.path(),
                    w.path(&format!("in/{name}/{}", e.file_name().to_string_lossy())),
                )
                .unwrap();
            }
        }
        w.expect(
            &[
                "run",
                &format!("in/{name}/mapping.toml"),
                "--out",
                &format!("runs/{name}"),
                "--max-rejects",
                "100",
                "-q",
            ],
            0,
        );
    }
}

#[test]
fn archives_hold_runs_with_their_inputs_and_verify_without_unpacking() {
    let w = Workdir::new();
    two_runs(&w);
    let o = w.expect(
        &["archive", "runs/demo", "runs/cycles", "--to", "batch.tar"],
        0,
    );
    assert!(stderr(&o).contains("members"), "{}", stderr(&o));
    let o = w.expect(&["verify", "batch.tar"], 0);
    let out = stdout(&o);
    for member in [
        "demo/manifest.json",
        "demo/checksums.b3",
        "demo/contact.csv",
        "demo/mapping/mapping.toml",
        "demo/inputs/Contact.csv",
        "cycles/account.updates.csv",
        "cycles/inputs/Account.csv",
    ] {
        assert!(
            out.contains(&format!("OK          {member}")),
            "{member} in\n{out}"
        );
    }
    // Never overwritten.
    let before = std::fs::read(w.path("batch.tar")).unwrap();
    let o = w.expect(&["archive", "runs/demo", "--to", "batch.tar"], 2);
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(w.path("batch.tar")).unwrap(), before);
    // The same runs give the same bytes.
    w.expect(
        &["archive", "runs/demo", "runs/cycles", "--to", "again.tar"],
        0,
    );
    assert_eq!(std::fs::read(w.path("again.tar")).unwrap(), before);

    // With only tar and b3sum.
    std::fs::create_dir_all(w.path("x")).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-xf", "batch.tar", "-C", "x"])
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert!(tar.status.success());
    match std::process::Command::new("b3sum")
        .args(["--check", "checksums.b3"])
        .current_dir(w.path("x"))
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("b3sum is required in CI"),
        Err(_) => util::not_run("b3sum --check of an unpacked archive (b3sum is not installed)"),
    }

    // One changed byte inside a member is found, and named.
    let mut bytes = before.clone();
    let at = bytes
        .windows(b"Acme Holding".len())
        .position(|win| win == b"Acme Holding")
        .unwrap();
    bytes[at] = b'X';
    std::fs::write(w.path("tampered.tar"), &bytes).unwrap();
    let o = w.expect(&["verify", "tampered.tar"], 1);
    assert!(stdout(&o).contains("CHANGED"), "{}", stdout(&o));
    // A truncated archive is refused, never half-verified.
    std::fs::write(w.path("cut.tar"), &before[..5000]).unwrap();
    let o = w.expect(&["verify", "cut.tar"], 2);
    assert!(
        stderr(&o).contains("truncated or damaged"),
        "{}",
        stderr(&o)
    );
    // A tar that is not an archive of ours is refused with a reason.
    let o = w.expect(&["verify", "in/demo/mapping.toml"], 2);
    assert!(stderr(&o).contains("error"), "{}", stderr(&o));
}

#[test]
fn only_proven_runs_with_unchanged_inputs_are_archived() {
    let w = Workdir::new();
    two_runs(&w);
    // An input edited after the run.
    let p = w.path("in/cycles/Account.csv");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("A9,Late,,\n");
    std::fs::write(&p, text).unwrap();
    let o = w.expect(&["archive", "runs/cycles", "--to", "a.tar"], 2);
    assert!(
        stderr(&o).contains("changed since the run"),
        "{}",
        stderr(&o)
    );
    assert!(!w.path("a.tar").exists());
    // Without inputs it can still be archived.
    w.expect(
        &["archive", "runs/cycles", "--no-inputs", "--to", "a.tar"],
        0,
    );
    w.expect(&["verify", "a.tar"], 0);
    // An output edited after the run: the run does not verify, so it is refused.
    std::fs::write(w.path("runs/demo/contact.csv"), "changed\n").unwrap();
    let o = w.expect(&["archive", "runs/demo", "--to", "b.tar"], 2);
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    assert!(!w.path("b.tar").exists());
}
