//! Test harness: a unique temp dir, the real binary, a scrubbed environment, readable failures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch folder in which the real `crm-etl` binary runs.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::Builder::new()
                .prefix("crm-etl-test")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// The binary, run in this folder, with an environment that cannot leak into results.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crm-etl"));
        c.args(args).current_dir(self.dir.path()).env_clear();
        if let Ok(p) = std::env::var("PATH") {
            c.env("PATH", p);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn crm-etl")
    }

    /// Runs and asserts the exit code, showing stdout and stderr when it differs.
    pub fn expect(&self, args: &[&str], code: i32) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "crm-etl {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/realdata`, when present. In CI (`CI=true`) it must be; elsewhere a test that needs it says
/// that it was not run.
pub fn realdata(test: &str) -> Option<PathBuf> {
    let p = root().join("../shared/realdata");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: ../shared/realdata is missing, and CI=true requires it");
    }
    not_run(&format!(
        "{test}: ../shared/realdata is not here (it is in CI)"
    ));
    None
}

/// Says that a test (or part of one) did not run, on the real standard error: the test harness
/// captures `eprintln!` of passing tests, and this must be seen.
pub fn not_run(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOT RUN: {what}");
}

/// Compares two texts line by line, failing with the first differing lines shown.
pub fn assert_same_text(what: &str, want: &str, got: &str) {
    if want == got {
        return;
    }
    let mut msg =
        format!("{what} differs from the expected file (BLESS=1 rewrites it; review the diff)\n");
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            msg.push_str(&format!("line {}:\n  want: {w}\n  got:  {g}\n", i + 1));
            break;
        }
    }
    msg.push_str(&format!(
        "lines: want {}, got {}",
        want.lines().count(),
        got.lines().count()
    ));
    panic!("{msg}");
}
