//! The load scripts, run as a user runs them: `psql`, `mariadb` and `sqlite3` against real databases
//! (PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306, as on this project's machines and in
//! CI). Each test makes its own databases, so tests run in parallel. With `CI=true` a missing server or
//! client fails the test; elsewhere the test says which databases it did not run.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use util::{root, stderr, stdout, Workdir};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Mysql,
    Sqlite,
}

/// One scratch database of one kind.
struct Db {
    kind: Kind,
    name: String,
    /// The SQLite file.
    file: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn exe(c: &str) -> Command {
    let mut cmd = Command::new(c);
    cmd.stdin(Stdio::null());
    cmd
}

fn psql(db: &str) -> Command {
    let mut c = exe("psql");
    c.args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", db]);
    c
}

fn mariadb() -> Command {
    let mut c = exe("mariadb");
    c.args([
        "-h",
        "127.0.0.1",
        "-u",
        "root",
        "--default-character-set=utf8mb4",
    ]);
    c
}

fn ok(o: &Output) -> bool {
    o.status.success()
}

impl Db {
    /// A new empty database, or None (the test says so) when the server or client is not here.
    fn new(kind: Kind, test: &str, dir: &Path) -> Option<Db> {
        let name = format!(
            "crm_etl_{test}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let made = match kind {
            Kind::Postgres => psql("test")
                .args(["-c", &format!("CREATE DATABASE {name}")])
                .output(),
            Kind::Mysql => mariadb()
                .args(["-e", &format!("CREATE DATABASE {name}")])
                .output(),
            Kind::Sqlite => exe("sqlite3").arg("-version").output(),
        };
        match made {
            Ok(o) if ok(&o) => Some(Db {
                kind,
                file: dir.join(format!("{name}.db")),
                name,
            }),
            res => {
                let why = match res {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => format!(
                        "{}: {e}",
                        match kind {
                            Kind::Postgres => "psql",
                            Kind::Mysql => "mariadb",
                            Kind::Sqlite => "sqlite3",
                        }
                    ),
                };
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{test}: {kind:?} is required in CI and is not usable: {why}");
                }
                util::not_run(&format!("{test} on {kind:?}: {}", why.trim()));
                None
            }
        }
    }

    /// Runs `load/<dialect>/load.sql` from the output folder `out`, as the README says.
    fn load(&self, out: &Path) -> Output {
        let mut c = match self.kind {
            Kind::Postgres => {
                let mut c = psql(&self.name);
                c.args(["-v", "ON_ERROR_STOP=1", "-f", "load/postgres/load.sql"]);
                c
            }
            Kind::Mysql => {
                let mut c = mariadb();
                c.args(["--local-infile=1", &self.name]);
                c.stdin(std::fs::File::open(out.join("load/mysql/load.sql")).unwrap());
                c
            }
            Kind::Sqlite => {
                let mut c = exe("sqlite3");
                c.arg(&self.file);
                c.stdin(std::fs::File::open(out.join("load/sqlite/load.sql")).unwrap());
                c
            }
        };
        c.current_dir(out).output().unwrap()
    }

    /// One value (or several, one per line) selected from the database.
    fn query(&self, sql: &str) -> String {
        let o = match self.kind {
            Kind::Postgres => psql(&self.name).args(["-At", "-c", sql]).output(),
            Kind::Mysql => mariadb()
                .args(["-N", "-B", "--raw", &self.name, "-e", sql])
                .output(),
            Kind::Sqlite => exe("sqlite3").arg(&self.file).arg(sql).output(),
        }
        .unwrap();
        assert!(ok(&o), "{sql}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .trim_end_matches('\n')
            .to_string()
    }

    fn quote(&self, name: &str) -> String {
        match self.kind {
            Kind::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// Exports a table the README's way and runs `crm-etl digest --expect` on it: true when the
    /// database holds exactly what the run in `out` produced.
    fn digest_matches(&self, w: &Workdir, mapping: &Path, entity: &str, out: &Path) -> bool {
        let bin = env!("CARGO_BIN_EXE_crm-etl");
        let export = match self.kind {
            Kind::Postgres => psql(&self.name)
                .args(["-c", &format!("\\copy {} TO STDOUT", self.quote(entity))])
                .output(),
            Kind::Mysql => {
                let q = w.run(&[
                    "digest",
                    mapping.to_str().unwrap(),
                    "--entity",
                    entity,
                    "--mysql-query",
                ]);
                assert!(ok(&q), "{}", stderr(&q));
                mariadb()
                    .args(["-N", "-B", "--raw", &self.name, "-e", stdout(&q).trim()])
                    .output()
            }
            Kind::Sqlite => exe("sqlite3")
                .arg("-json")
                .arg(&self.file)
                .arg(format!("SELECT * FROM {}", self.quote(entity)))
                .output(),
        }
        .unwrap();
        assert!(ok(&export), "{}", String::from_utf8_lossy(&export.stderr));
        let from = match self.kind {
            Kind::Postgres => "copy",
            Kind::Mysql => "jsonl",
            Kind::Sqlite => "json",
        };
        let mut c = Command::new(bin);
        c.args([
            "digest",
            mapping.to_str().unwrap(),
            "--entity",
            entity,
            "--from",
            from,
            "--expect",
            out.to_str().unwrap(),
        ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&export.stdout)
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "digest {entity} on {:?}: {}",
            self.kind,
            stderr(&o)
        );
        if !ok(&o) {
            eprintln!("{:?} {entity}: {}", self.kind, stdout(&o));
        }
        ok(&o)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = match self.kind {
            Kind::Postgres => psql("test")
                .args(["-c", &format!("DROP DATABASE IF EXISTS {}", self.name)])
                .output(),
            Kind::Mysql => mariadb()
                .args(["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)])
                .output(),
            Kind::Sqlite => Ok(exe("true").output().unwrap()),
        };
    }
}

const KINDS: [Kind; 3] = [Kind::Postgres, Kind::Mysql, Kind::Sqlite];

/// Runs a mapping with every target into `out` (extra arguments appended).
fn run(w: &Workdir, mapping: &Path, out: &str, extra: &[&str]) {
    let mut args = vec![
        "run",
        mapping.to_str().unwrap(),
        "--out",
        out,
        "--max-rejects",
        "100",
        "-q",
        "--target",
        "postgres,mysql,sqlite",
    ];
    args.extend_from_slice(extra);
    w.expect(&args, 0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

#[test]
fn hostile_values_load_into_all_three_databases_and_read_back_identical() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/load/hostile/mapping.toml");
    run(&w, &mapping, "out", &[]);
    // The NUL record is rejected, since PostgreSQL is a target.
    let rejects = w.read("out/rejects/order.csv");
    assert!(
        rejects.contains("cannot be stored in PostgreSQL text"),
        "{rejects}"
    );
    // The folder loads wherever it is: nothing in it names where it was written.
    copy_dir(&w.path("out"), &w.path("moved/elsewhere"));
    std::fs::remove_dir_all(w.path("out")).unwrap();
    let out = w.path("moved/elsewhere");
    for kind in KINDS {
        let Some(db) = Db::new(kind, "hostile", w.dir.path()) else {
            continue;
        };
        let o = db.load(&out);
        assert!(ok(&o), "{kind:?}: {}\n{}", stderr(&o), stdout(&o));
        for entity in ["group", "order"] {
            assert!(
                db.digest_matches(&w, &mapping, entity, &out),
                "{kind:?}: {entity} differs"
            );
        }
        let (t, sel) = (db.quote("order"), db.quote("Select"));
        let get = |col: &str, id: u32| {
            db.query(&format!(
                "SELECT {} FROM {t} WHERE id = {id}",
                db.quote(col)
            ))
        };
        assert_eq!(get("Select", 3), "back\\slash \\N \\t", "{kind:?}");
        assert_eq!(get("note", 4), "\\.", "{kind:?}");
        assert_eq!(get("CamelCase", 4), "emoji 😀 👩‍💻", "{kind:?}");
        assert_eq!(
            db.query(&format!("SELECT COUNT(*) FROM {t} WHERE {sel} = ''")),
            "1",
            "{kind:?}: the empty string stays an empty string"
        );
        assert_eq!(
            db.query(&format!(
                "SELECT COUNT(*) FROM {t} WHERE {} IS NULL",
                db.quote("CamelCase")
            )),
            "1",
            "{kind:?}: null stays null"
        );
    }
}

/// Writes a copy of the hostile fixture with other groups and values.
fn variant(w: &Workdir, dir: &str, groups: &str, values_keep: &[&str]) -> PathBuf {
    let src = root().join("fixtures/load/hostile");
    let d = w.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("mapping.toml"), d.join("mapping.toml")).unwrap();
    std::fs::write(d.join("groups.csv"), groups).unwrap();
    // Keep the header and the records whose id is listed (records span lines: split on record starts).
    let text = std::fs::read_to_string(src.join("values.csv")).unwrap();
    let mut out = String::new();
    let mut keep = true;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if n == 0 {
            out.push_str(line);
            continue;
        }
        if let Some(id) = line
            .strip_prefix('"')
            .and_then(|l| l.split_once("\",\""))
            .map(|(id, _)| id)
            .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        {
            keep = values_keep.contains(&id);
        }
        if keep {
            out.push_str(line);
        }
    }
    std::fs::write(d.join("values.csv"), out).unwrap();
    d.join("mapping.toml")
}

#[test]
fn a_load_that_fails_in_its_last_table_leaves_the_database_as_it_was() {
    let w = Workdir::new();
    let first = variant(
        &w,
        "v1",
        "code,Order\ng1,first\ng2,second\ng3,third\n",
        &["1", "2"],
    );
    run(&w, &first, "out1", &[]);
    // The second export adds a group, and an order whose key is already loaded: the last table fails.
    let second = variant(&w, "v2", "code,Order\ng4,fourth\n", &["2"]);
    std::fs::write(
        second.parent().unwrap().join("groups.csv"),
        "code,Order\ng4,fourth\n",
    )
    .unwrap();
    // The order references g1, which the second export lacks: map it without the check.
    let m = std::fs::read_to_string(&second)
        .unwrap()
        .replace("references = { entity = \"group\" }", "max_length = 10");
    std::fs::write(&second, m).unwrap();
    run(&w, &second, "out2", &["--ddl", "none"]);
    for kind in KINDS {
        let Some(db) = Db::new(kind, "atomic", w.dir.path()) else {
            continue;
        };
        let o = db.load(&w.path("out1"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        let o = db.load(&w.path("out2"));
        assert!(!ok(&o), "{kind:?}: a duplicate key must fail the load");
        // Nothing of the failed load stayed: the new group is not there and the tables are as before.
        assert_eq!(
            db.query(&format!("SELECT COUNT(*) FROM {}", db.quote("group"))),
            "3",
            "{kind:?}: {}",
            stderr(&o)
        );
        assert!(db.digest_matches(&w, &first, "group", &w.path("out1")));
        assert!(db.digest_matches(&w, &first, "order", &w.path("out1")));
    }
}

#[test]
fn upsert_mode_updates_existing_rows_and_inserts_new_ones() {
    let w = Workdir::new();
    let first = variant(
        &w,
        "v1",
        "code,Order\ng1,first\ng2,second\ng3,third\n",
        &["1", "2", "3"],
    );
    run(&w, &first, "out1", &[]);
    let second = variant(
        &w,
        "v2",
        "code,Order\ng1,FIRST\ng2,second\ng3,third\ng4,fourth\n",
        &["1", "2", "3"],
    );
    run(&w, &second, "out2", &["--mode", "upsert"]);
    let script = std::fs::read_to_string(w.path("out2/load/postgres/load.sql")).unwrap();
    assert!(
        script.contains("ON CONFLICT (\"code\") DO UPDATE SET"),
        "{script}"
    );
    for kind in KINDS {
        let Some(db) = Db::new(kind, "upsert", w.dir.path()) else {
            continue;
        };
        assert!(ok(&db.load(&w.path("out1"))));
        let o = db.load(&w.path("out2"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        // The table now holds exactly the second export's groups: g1 updated, g4 added.
        assert!(
            db.digest_matches(&w, &second, "group", &w.path("out2")),
            "{kind:?}"
        );
        assert!(
            db.digest_matches(&w, &second, "order", &w.path("out2")),
            "{kind:?}"
        );
        let g = db.quote("group");
        assert_eq!(
            db.query(&format!(
                "SELECT {} FROM {g} WHERE code = 'g1'",
                db.quote("Order")
            )),
            "FIRST"
        );
        // Loading the same upsert again changes nothing.
        assert!(ok(&db.load(&w.path("out2"))));
        assert!(db.digest_matches(&w, &second, "group", &w.path("out2")));
    }
}

#[test]
fn deferred_references_are_applied_after_the_inserts_in_every_database() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    run(&w, &mapping, "out", &["--ddl", "recreate"]);
    for kind in KINDS {
        let Some(db) = Db::new(kind, "deferred", w.dir.path()) else {
            continue;
        };
        let o = db.load(&w.path("out"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        // The digests cover the rows as they end up, deferred references set.
        for e in ["account", "contact", "contact_interest"] {
            assert!(
                db.digest_matches(&w, &mapping, e, &w.path("out")),
                "{kind:?} {e}"
            );
        }
        assert_eq!(
            db.query("SELECT parent_id FROM account WHERE id = 'A3'"),
            "A4",
            "{kind:?}: a forward self-reference"
        );
        // `recreate` loads again over the same tables.
        let o = db.load(&w.path("out"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        assert_eq!(db.query("SELECT COUNT(*) FROM account"), "5");
    }
}

#[test]
fn child_tables_load_with_their_foreign_keys_in_every_database() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/cases/children/mapping.toml");
    run(&w, &mapping, "out", &["--mode", "upsert"]);
    let m: serde_json::Value = serde_json::from_str(&w.read("out/manifest.json")).unwrap();
    let entities: Vec<String> = m["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    for kind in KINDS {
        let Some(db) = Db::new(kind, "children", w.dir.path()) else {
            continue;
        };
        let o = db.load(&w.path("out"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        for e in &entities {
            assert!(
                db.digest_matches(&w, &mapping, e, &w.path("out")),
                "{kind:?} {e}"
            );
        }
        // A junction row whose contact does not exist was rejected, so the foreign keys hold.
        assert_eq!(
            db.query(&format!(
                "SELECT COUNT(*) FROM {}",
                db.quote("account_contact")
            )),
            "3"
        );
    }
}

#[test]
fn digest_refuses_a_broken_export_with_its_position() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/cases/cycles/mapping.toml");
    let mut c = w.cmd(&[
        "digest",
        mapping.to_str().unwrap(),
        "--entity",
        "account",
        "--from",
        "jsonl",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"id\":\"A1\",\"name\":\"x\",\"parent_id\":null,\"primary_contact_id\":null}\n{\"id\":\"A2\",\"name\"")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("<stdin>: record 2 (line 2, byte"),
        "{}",
        stderr(&o)
    );
}
