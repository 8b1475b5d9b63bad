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
        self.run_script(out, &format!("load/{}/load.sql", self.dialect()))
    }

    /// Runs an incremental run's `changes/load/<dialect>/apply.sql` from its output folder `out`.
    fn apply_changes(&self, out: &Path) -> Output {
        self.run_script(out, &format!("changes/load/{}/apply.sql", self.dialect()))
    }

    /// Runs the script at `script` (relative to `out`) with the database's own client, from `out`.
    fn run_script(&self, out: &Path, script: &str) -> Output {
        let mut c = match self.kind {
            Kind::Postgres => {
                let mut c = psql(&self.name);
                c.args(["-v", "ON_ERROR_STOP=1", "-f", script]);
                c
            }
            Kind::Mysql => {
                let mut c = mariadb();
                c.args(["--local-infile=1", &self.name]);
                c.stdin(std::fs::File::open(out.join(script)).unwrap());
                c
            }
            Kind::Sqlite => {
                let mut c = exe("sqlite3");
                c.arg(&self.file);
                c.stdin(std::fs::File::open(out.join(script)).unwrap());
                c
            }
        };
        c.current_dir(out).output().unwrap()
    }

    fn dialect(&self) -> &'static str {
        match self.kind {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
            Kind::Sqlite => "sqlite",
        }
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

/// The mapping of the incremental-run property: accounts (each with a parent account, a deferred
/// self-reference), contacts that reference them, and each contact's tags, a child table from a
/// nested JSON array keyed by contact and position.
const SNAPSHOT_MAPPING: &str = r#"
[sources.accounts]
path = "accounts.csv"

[sources.contacts]
path = "contacts.jsonl"
format = "jsonl"

[[entities]]
name = "account"
source = "accounts"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id" },
  { name = "name", column = "Name" },
  { name = "revenue", column = "Revenue", type = "decimal(12,2)" },
  { name = "active", column = "Active", type = "boolean" },
  { name = "parent_id", column = "ParentId", references = { entity = "account", defer = true, orphans = "null" } },
]

[[entities]]
name = "contact"
source = "contacts"
primary_key = ["id"]
fields = [
  { name = "id", column = "Id", type = "integer" },
  { name = "account_id", column = "AccountId", references = { entity = "account" } },
  { name = "email", column = "Email" },
  { name = "seen_at", column = "SeenAt", type = "timestamptz" },
]

[[entities]]
name = "contact_tag"
source = "contacts"
nested = { path = "Tags" }
primary_key = ["contact_id", "position"]
fields = [
  { name = "contact_id", parent = "Id", type = "integer", references = { entity = "contact" } },
  { name = "position", ordinal = true, type = "integer" },
  { name = "tag", column = "Name" },
]
"#;

/// A small seeded generator (xorshift64*), so that a failing pair can be rerun from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone)]
struct Contact {
    account: u64,
    email: String,
    seen: u64,
    tags: Vec<String>,
}

/// One export: accounts by number (name, revenue in cents, active, parent account) and contacts by
/// number.
#[derive(Clone, Default)]
struct Snapshot {
    accounts: std::collections::BTreeMap<u64, (String, i64, bool, Option<u64>)>,
    contacts: std::collections::BTreeMap<u64, Contact>,
}

const TAGS: [&str; 5] = ["vip", "press", "o'brien \"quoted\"", "tab\there", "ünï"];

fn tags(r: &mut Rng) -> Vec<String> {
    (0..r.below(4))
        .map(|_| TAGS[r.below(TAGS.len() as u64) as usize].to_string())
        .collect()
}

impl Snapshot {
    fn first(r: &mut Rng) -> Snapshot {
        let mut s = Snapshot::default();
        for a in 0..5 + r.below(10) {
            let parent = (a > 0 && r.chance(60)).then(|| r.below(a.max(1)));
            let account = (
                format!("Account {a}"),
                r.below(1_000_000) as i64,
                r.chance(50),
                parent,
            );
            s.accounts.insert(a, account);
        }
        let accounts: Vec<u64> = s.accounts.keys().copied().collect();
        for c in 0..10 + r.below(30) {
            let contact = Contact {
                account: accounts[r.below(accounts.len() as u64) as usize],
                email: format!("c{c}@example.com"),
                seen: r.below(1_000_000),
                tags: tags(r),
            };
            s.contacts.insert(c, contact);
        }
        s
    }

    /// The next export: accounts and contacts inserted, updated and deleted; contacts re-parented
    /// (also away from deleted accounts); tag arrays grown, shrunk and changed.
    fn next(&self, r: &mut Rng) -> Snapshot {
        let mut s = self.clone();
        let keys: Vec<u64> = s.accounts.keys().copied().collect();
        for a in keys {
            match r.below(10) {
                0 if s.accounts.len() > 2 => {
                    s.accounts.remove(&a);
                }
                1 | 2 => {
                    let e = s.accounts.get_mut(&a).unwrap();
                    e.1 += 1 + r.below(500) as i64;
                    e.2 = !e.2;
                }
                // A new parent (perhaps one deleted just now: an orphan, made null), or none.
                3 => {
                    let p = r.below(a + 3);
                    s.accounts.get_mut(&a).unwrap().3 = (p != a && r.chance(80)).then_some(p);
                }
                _ => {}
            }
        }
        let next_account = s.accounts.keys().max().map_or(0, |k| k + 1) + r.below(3);
        for a in next_account..next_account + r.below(4) {
            let parent = r.chance(50).then(|| r.below(a));
            s.accounts
                .insert(a, (format!("New {a}"), r.below(9999) as i64, true, parent));
        }
        let accounts: Vec<u64> = s.accounts.keys().copied().collect();
        let pick = |r: &mut Rng| accounts[r.below(accounts.len() as u64) as usize];
        let keys: Vec<u64> = s.contacts.keys().copied().collect();
        for c in keys {
            let gone = !s.accounts.contains_key(&s.contacts[&c].account);
            match r.below(12) {
                0 => {
                    s.contacts.remove(&c);
                    continue;
                }
                1 => s.contacts.get_mut(&c).unwrap().account = pick(r),
                2 => s.contacts.get_mut(&c).unwrap().email = format!("changed{c}@example.org"),
                3 => s.contacts.get_mut(&c).unwrap().tags = tags(r),
                4 => s.contacts.get_mut(&c).unwrap().tags.push("added".into()),
                5 => {
                    s.contacts.get_mut(&c).unwrap().tags.pop();
                }
                _ => {}
            }
            if gone {
                if r.chance(50) {
                    s.contacts.get_mut(&c).unwrap().account = pick(r);
                } else {
                    s.contacts.remove(&c);
                }
            }
        }
        let next_contact = s.contacts.keys().max().map_or(0, |k| k + 1) + r.below(3);
        for c in next_contact..next_contact + r.below(6) {
            let contact = Contact {
                account: pick(r),
                email: format!("new{c}@example.com"),
                seen: r.below(1_000_000),
                tags: tags(r),
            };
            s.contacts.insert(c, contact);
        }
        s
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let mut a = String::from("Id,Name,Revenue,Active,ParentId\n");
        for (id, (name, cents, active, parent)) in &self.accounts {
            a.push_str(&format!(
                "A{id},{name},{}.{:02},{active},{}\n",
                cents / 100,
                cents % 100,
                parent.map(|p| format!("A{p}")).unwrap_or_default()
            ));
        }
        std::fs::write(dir.join("accounts.csv"), a).unwrap();
        let mut c = String::new();
        for (id, k) in &self.contacts {
            let tags: Vec<serde_json::Value> = k
                .tags
                .iter()
                .map(|t| serde_json::json!({ "Name": t }))
                .collect();
            let v = serde_json::json!({
                "Id": id,
                "AccountId": format!("A{}", k.account),
                "Email": k.email,
                "SeenAt": format!(
                    "2024-01-01T{:02}:{:02}:{:02}Z",
                    k.seen / 3600 % 24,
                    k.seen / 60 % 60,
                    k.seen % 60
                ),
                "Tags": tags,
            });
            c.push_str(&v.to_string());
            c.push('\n');
        }
        std::fs::write(dir.join("contacts.jsonl"), c).unwrap();
        std::fs::write(dir.join("mapping.toml"), SNAPSHOT_MAPPING).unwrap();
    }
}

/// The property of incremental runs: loading snapshot 1, then applying the changes of a `--since`
/// run on snapshot 2, gives the same tables (the same dataset digests) as a full load of snapshot 2,
/// in every database, over random snapshot pairs.
#[test]
fn applying_the_changes_of_random_snapshot_pairs_equals_a_full_load_in_every_database() {
    let w = Workdir::new();
    let pairs = 10;
    let mut totals = [0u64; 3];
    for seed in 1..=pairs {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let one = Snapshot::first(&mut r);
        let two = one.next(&mut r);
        let (d1, d2) = (format!("s{seed}/one"), format!("s{seed}/two"));
        one.write(&w.path(&d1));
        two.write(&w.path(&d2));
        let (o1, o2) = (format!("s{seed}/out1"), format!("s{seed}/out2"));
        run(&w, &w.path(&format!("{d1}/mapping.toml")), &o1, &[]);
        run(
            &w,
            &w.path(&format!("{d2}/mapping.toml")),
            &o2,
            &["--since", &o1],
        );
        let manifest: serde_json::Value =
            serde_json::from_str(&w.read(&format!("{o2}/manifest.json"))).unwrap();
        for e in manifest["entities"].as_array().unwrap() {
            for (i, k) in ["insert", "update", "delete"].iter().enumerate() {
                totals[i] += e["changes"][k].as_u64().unwrap();
            }
        }
        let mapping2 = w.path(&format!("{d2}/mapping.toml"));
        for kind in KINDS {
            let Some(db) = Db::new(kind, "since", w.dir.path()) else {
                continue;
            };
            let o = db.load(&w.path(&o1));
            assert!(ok(&o), "seed {seed} {kind:?} load: {}", stderr(&o));
            let o = db.apply_changes(&w.path(&o2));
            assert!(ok(&o), "seed {seed} {kind:?} apply: {}", stderr(&o));
            for entity in ["account", "contact", "contact_tag"] {
                assert!(
                    db.digest_matches(&w, &mapping2, entity, &w.path(&o2)),
                    "seed {seed} {kind:?}: {entity} after the changes differs from a full load"
                );
            }
        }
    }
    // The generator makes every kind of change.
    assert!(
        totals.iter().all(|&t| t > 0),
        "inserts, updates, deletes: {totals:?}"
    );
}

#[test]
fn since_refuses_an_earlier_run_that_does_not_verify() {
    let w = Workdir::new();
    let mut r = Rng(7);
    let one = Snapshot::first(&mut r);
    one.write(&w.path("one"));
    let mapping = w.path("one/mapping.toml");
    run(&w, &mapping, "out1", &[]);
    let state = w.path("out1/state/account.rows");
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&state, bytes).unwrap();
    let o = w.expect(
        &[
            "run",
            mapping.to_str().unwrap(),
            "--out",
            "out2",
            "--since",
            "out1",
            "-q",
        ],
        2,
    );
    let err = stderr(&o);
    assert!(
        err.contains("does not verify") && err.contains("state/account.rows"),
        "{err}"
    );
    assert!(!w.path("out2/manifest.json").exists());
}

/// `--format none`: only the load files are written, and they load to the same digests.
#[test]
fn a_run_without_an_output_file_still_loads_every_database() {
    let w = Workdir::new();
    let mapping = root().join("fixtures/demo/mapping.toml");
    let m = mapping.to_str().unwrap();
    w.expect(
        &[
            "run",
            m,
            "--out",
            "out",
            "--format",
            "none",
            "-q",
            "--max-rejects",
            "10",
            "--target",
            "postgres,mysql,sqlite",
        ],
        0,
    );
    assert!(!w.path("out/contact.csv").exists() && !w.path("out/account.csv").exists());
    let manifest: serde_json::Value = serde_json::from_str(&w.read("out/manifest.json")).unwrap();
    for e in manifest["entities"].as_array().unwrap() {
        assert_eq!(e["output"], "", "{e}");
        assert!(e["written"].as_u64().unwrap() > 0);
    }
    w.expect(&["verify", "out"], 0);
    let o = w.expect(&["convert", m, "--to", "none", "-o", "x"], 2);
    assert!(stderr(&o).contains("none"), "{}", stderr(&o));
    for kind in KINDS {
        let Some(db) = Db::new(kind, "none", w.dir.path()) else {
            continue;
        };
        let o = db.load(&w.path("out"));
        assert!(ok(&o), "{kind:?}: {}", stderr(&o));
        for entity in ["account", "contact"] {
            assert!(
                db.digest_matches(&w, &mapping, entity, &w.path("out")),
                "{kind:?} {entity}"
            );
        }
    }
}
