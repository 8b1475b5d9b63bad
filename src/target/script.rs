//! The load scripts: per database, `load/<dialect>/schema.sql` (the DDL) and `load/<dialect>/load.sql`
//! (the entry script a user runs with the database's own client), around the data files the entity runs
//! wrote. Tables are created and loaded parents first; deferred references are applied after every
//! insert; everything that the database allows runs in one transaction.

use std::fmt::Write as _;

use crate::spec::{Ddl, Dialect, LoadMode, Mapping, Orphans};
use crate::target::{column_type, ident, literal};
use crate::types::FieldType;

/// A column of a target table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: FieldType,
    pub max_length: Option<usize>,
    pub not_null: bool,
    /// Part of a key or a foreign key (MySQL text columns then need a bounded length).
    pub key: bool,
}

/// A foreign key of a target table.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub column: String,
    pub parent: String,
    pub parent_column: String,
    /// The parent table is created later (a deferred reference to a later entity): added afterwards.
    pub later: bool,
}

/// What the scripts need to know of one entity's table.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub unique: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Deferred reference fields, set by the updates file.
    pub deferred: Vec<String>,
}

/// The tables of a mapping's entities, in run order.
pub fn tables(m: &Mapping, order: &[usize]) -> Vec<Table> {
    let ty = |t: &str| FieldType::parse(t).unwrap_or(FieldType::Text);
    let pk_field = |entity: &str| {
        m.entities.iter().find(|e| e.name == entity).and_then(|e| {
            let k = e.primary_key.first()?;
            e.fields.iter().find(|f| &f.name == k)
        })
    };
    let referenced: Vec<(&str, &str)> = m
        .entities
        .iter()
        .flat_map(|e| e.fields.iter().filter_map(|f| f.references.as_ref()))
        .filter_map(|r| Some((r.entity.as_str(), pk_field(&r.entity)?.name.as_str())))
        .collect();
    let position = |name: &str| order.iter().position(|&i| m.entities[i].name == name);
    order
        .iter()
        .map(|&i| {
            let e = &m.entities[i];
            let mut columns = Vec::new();
            let mut foreign_keys = Vec::new();
            let mut deferred = Vec::new();
            for f in &e.fields {
                let in_pk = e.primary_key.contains(&f.name);
                let mut column = Column {
                    name: f.name.clone(),
                    ty: ty(&f.type_name),
                    max_length: f.max_length,
                    not_null: in_pk
                        || (f.required && !f.references.as_ref().is_some_and(|r| r.defer)),
                    key: in_pk
                        || f.unique
                        || referenced.contains(&(e.name.as_str(), f.name.as_str())),
                };
                if let Some(r) = &f.references {
                    // The column holds the parent's primary key.
                    if let Some(pk) = pk_field(&r.entity) {
                        column.ty = ty(&pk.type_name);
                        column.max_length = pk.max_length;
                        column.key = true;
                        // A kept orphan has no parent row: no foreign key can hold it.
                        if r.orphans != Orphans::Keep {
                            foreign_keys.push(ForeignKey {
                                column: f.name.clone(),
                                parent: r.entity.clone(),
                                parent_column: pk.name.clone(),
                                later: position(&r.entity) > position(&e.name),
                            });
                        }
                    }
                    if r.defer {
                        deferred.push(f.name.clone());
                    }
                }
                columns.push(column);
            }
            Table {
                name: e.name.clone(),
                columns,
                primary_key: e.primary_key.clone(),
                unique: e
                    .fields
                    .iter()
                    .filter(|f| f.unique && e.primary_key != [f.name.clone()])
                    .map(|f| f.name.clone())
                    .collect(),
                foreign_keys,
                deferred,
            }
        })
        .collect()
}

/// Path of an entity's data file, relative to the output folder.
pub fn data_file(d: Dialect, entity: &str) -> String {
    let ext = match d {
        Dialect::Postgres => "pgcopy",
        Dialect::Mysql => "tsv",
        Dialect::Sqlite => "sql",
    };
    format!("load/{}/{entity}.{ext}", d.name())
}

/// Path of an entity's updates file (deferred references), relative to the output folder.
pub fn updates_file(d: Dialect, entity: &str) -> String {
    let ext = match d {
        Dialect::Postgres => "updates.pgcopy",
        Dialect::Mysql => "updates.tsv",
        Dialect::Sqlite => "updates.sql",
    };
    format!("load/{}/{entity}.{ext}", d.name())
}

/// The staging table that upserts go through.
pub fn stage_table(entity: &str) -> String {
    format!("crm_etl_stage_{entity}")
}

/// The staging table of an incremental run's deleted keys.
pub fn delete_table(entity: &str) -> String {
    format!("crm_etl_delete_{entity}")
}

fn updates_table(entity: &str) -> String {
    format!("crm_etl_updates_{entity}")
}

fn cols(d: Dialect, names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(d, n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table a data file's rows go into: the entity's own, or its staging table in upsert mode (only
/// for an entity with a primary key).
pub fn load_table(t: &Table, mode: LoadMode) -> String {
    if mode == LoadMode::Upsert && !t.primary_key.is_empty() {
        stage_table(&t.name)
    } else {
        t.name.clone()
    }
}

/// Whether keys and foreign keys are added after the rows (PostgreSQL, into tables this load creates
/// empty, without upserts, which need the keys): one index build after a bulk load is faster than
/// keeping the index up to date row by row, and checking a foreign key once is one join.
pub fn keys_after_rows(d: Dialect, ddl: Ddl, mode: LoadMode) -> bool {
    d == Dialect::Postgres && ddl == Ddl::Recreate && mode == LoadMode::Insert
}

/// `constraints.sql` (see [`keys_after_rows`]): primary keys and unique keys, then foreign keys.
pub fn constraints(d: Dialect, tables: &[Table]) -> String {
    let mut s = String::from(
        "-- Keys and foreign keys, added after the rows are loaded (written by crm-etl).\n",
    );
    for t in tables {
        let tn = ident(d, &t.name);
        if !t.primary_key.is_empty() {
            let _ = writeln!(
                s,
                "ALTER TABLE {tn} ADD PRIMARY KEY ({});",
                cols(d, &t.primary_key)
            );
        }
        for u in &t.unique {
            let _ = writeln!(s, "ALTER TABLE {tn} ADD UNIQUE ({});", ident(d, u));
        }
    }
    for t in tables {
        for fk in &t.foreign_keys {
            let _ = writeln!(
                s,
                "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({});",
                ident(d, &t.name),
                ident(d, &fk.column),
                ident(d, &fk.parent),
                ident(d, &fk.parent_column)
            );
        }
    }
    s
}

/// `schema.sql`: DROP (with `recreate`) and CREATE TABLE statements, parents first; foreign keys to
/// tables created later are added at the end. With `keys_after`, keys wait for `constraints.sql`.
pub fn schema(d: Dialect, tables: &[Table], ddl: Ddl, keys_after: bool) -> String {
    let mut s = format!(
        "-- Tables for {}, written by crm-etl ({}), parents first.\n",
        match d {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
        },
        match ddl {
            Ddl::Create => "created when missing",
            Ddl::Recreate => "dropped and created again",
            Ddl::None => "none: the tables must exist",
        }
    );
    if ddl == Ddl::None {
        return s;
    }
    if ddl == Ddl::Recreate {
        if d == Dialect::Mysql {
            s.push_str("SET FOREIGN_KEY_CHECKS = 0;\n");
        }
        for t in tables.iter().rev() {
            let cascade = if d == Dialect::Postgres {
                " CASCADE"
            } else {
                ""
            };
            let _ = writeln!(s, "DROP TABLE IF EXISTS {}{cascade};", ident(d, &t.name));
        }
        if d == Dialect::Mysql {
            s.push_str("SET FOREIGN_KEY_CHECKS = 1;\n");
        }
    }
    for t in tables {
        let mut parts: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                format!(
                    "  {} {}{}",
                    ident(d, &c.name),
                    column_type(d, c.ty, c.max_length, c.key),
                    if c.not_null { " NOT NULL" } else { "" }
                )
            })
            .collect();
        if !t.primary_key.is_empty() && !keys_after {
            parts.push(format!("  PRIMARY KEY ({})", cols(d, &t.primary_key)));
        }
        for u in t.unique.iter().filter(|_| !keys_after) {
            parts.push(format!("  UNIQUE ({})", ident(d, u)));
        }
        // SQLite checks foreign keys when rows change, so it may name a table created later.
        for fk in t
            .foreign_keys
            .iter()
            .filter(|f| (!f.later || d == Dialect::Sqlite) && !keys_after)
        {
            parts.push(format!(
                "  FOREIGN KEY ({}) REFERENCES {} ({})",
                ident(d, &fk.column),
                ident(d, &fk.parent),
                ident(d, &fk.parent_column)
            ));
        }
        let _ = write!(
            s,
            "CREATE TABLE IF NOT EXISTS {} (\n{}\n)",
            ident(d, &t.name),
            parts.join(",\n")
        );
        if d == Dialect::Mysql {
            // A binary collation: keys compare as the values are, case and accents included.
            s.push_str(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin");
        }
        s.push_str(";\n");
    }
    for t in tables.iter().filter(|_| !keys_after) {
        for fk in t.foreign_keys.iter().filter(|f| f.later) {
            let name = format!("fk_{}_{}", t.name, fk.column);
            let add = |if_not_exists: &str| {
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY {if_not_exists}({}) REFERENCES {} ({})",
                    ident(d, &t.name),
                    ident(d, &name),
                    ident(d, &fk.column),
                    ident(d, &fk.parent),
                    ident(d, &fk.parent_column)
                )
            };
            match d {
                Dialect::Postgres => {
                    let _ = writeln!(
                        s,
                        "DO $$ BEGIN {}; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
                        add("")
                    );
                }
                Dialect::Mysql => {
                    let _ = writeln!(s, "{};", add("IF NOT EXISTS "));
                }
                Dialect::Sqlite => {}
            }
        }
    }
    s
}

/// What one entity contributed to the load: its rows, and update rows for deferred references.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub rows: u64,
    pub update_rows: u64,
    /// Columns of the updates file: the primary key, then the deferred fields.
    pub update_columns: Vec<String>,
}

/// `load.sql`: the entry script.
pub fn load_script(
    d: Dialect,
    tables: &[Table],
    loaded: &[Loaded],
    mode: LoadMode,
    keys_after: bool,
) -> String {
    let mut s = String::new();
    let run = match d {
        Dialect::Postgres => {
            "psql -v ON_ERROR_STOP=1 -d DB -f load/postgres/load.sql   (from any folder)"
        }
        Dialect::Mysql => {
            "mariadb --local-infile=1 DB < load/mysql/load.sql   (from the output folder)"
        }
        Dialect::Sqlite => "sqlite3 DB < load/sqlite/load.sql   (from the output folder)",
    };
    let _ = writeln!(
        s,
        "-- Load script written by crm-etl. Run it with:\n--   {run}"
    );
    match d {
        Dialect::Postgres => {
            s.push_str("-- One transaction: a failure leaves the database as it was.\n");
            s.push_str(
                "\\set ON_ERROR_STOP on\nSET client_encoding = 'UTF8';\nBEGIN;\n-- Index builds after a bulk load sort in memory.\nSET LOCAL maintenance_work_mem = '256MB';\n\\ir schema.sql\n",
            );
        }
        Dialect::Mysql => {
            s.push_str(
                "-- The DDL commits by itself (MySQL cannot roll it back); every row is loaded in one\n\
                 -- transaction, which a failure (or any row LOAD DATA would skip) rolls back.\n",
            );
            s.push_str("SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nsource load/mysql/schema.sql\nSTART TRANSACTION;\n");
        }
        Dialect::Sqlite => {
            s.push_str("-- One transaction: a failure leaves the database as it was.\n");
            s.push_str(
                ".bail on\nPRAGMA foreign_keys = ON;\nBEGIN;\n-- Foreign keys are checked at COMMIT, so tables may be dropped and rows loaded in any order.\nPRAGMA defer_foreign_keys = ON;\n.read load/sqlite/schema.sql\n",
            );
        }
    }
    for (t, l) in tables.iter().zip(loaded) {
        let _ = writeln!(s, "-- {} ({} rows)", t.name, l.rows);
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let upsert = mode == LoadMode::Upsert && !t.primary_key.is_empty();
        let stage = stage_table(&t.name);
        if upsert {
            let _ = writeln!(s, "{}", create_like(d, &stage, &t.name, None));
        }
        let into = load_table(t, mode);
        match d {
            Dialect::Postgres => s.push_str(&pg_copy(&data_file(d, &t.name), &into, &names)),
            Dialect::Mysql => s.push_str(&load_data(&data_file(d, &t.name), &into, &names, l.rows)),
            Dialect::Sqlite => {
                let _ = writeln!(s, ".read {}", data_file(d, &t.name));
            }
        }
        if upsert {
            s.push_str(&upsert_from(d, t, &stage, &names));
            if d == Dialect::Mysql {
                let _ = writeln!(s, "DROP TEMPORARY TABLE {};", ident(d, &stage));
            }
        }
    }
    if keys_after {
        s.push_str("\\ir constraints.sql\n");
    }
    for (t, l) in tables.iter().zip(loaded) {
        if t.deferred.is_empty() || l.update_columns.is_empty() {
            continue;
        }
        s.push_str(&deferred_updates(d, t, l, false));
    }
    s.push_str("COMMIT;\n");
    s
}

/// A temporary table shaped like `like` (all its columns, or `only` these), dropped at the end.
fn create_like(d: Dialect, name: &str, like: &str, only: Option<&[String]>) -> String {
    let (n, l) = (ident(d, name), ident(d, like));
    let select = only.map_or("*".to_string(), |c| cols(d, c));
    match d {
        Dialect::Postgres => {
            format!(
                "CREATE TEMP TABLE {n} ON COMMIT DROP AS SELECT {select} FROM {l} WITH NO DATA;"
            )
        }
        // Without indexes or foreign keys: a staging table takes the rows as they come.
        Dialect::Mysql => {
            format!("CREATE TEMPORARY TABLE {n} AS SELECT {select} FROM {l} LIMIT 0;")
        }
        Dialect::Sqlite => {
            format!("CREATE TEMP TABLE {n} AS SELECT {select} FROM {l} WHERE 0;")
        }
    }
}

/// psql's `\copy` of one binary COPY file (relative to the folder psql runs in).
fn pg_copy(file: &str, into: &str, columns: &[String]) -> String {
    let d = Dialect::Postgres;
    format!(
        "\\copy {} ({}) FROM {} WITH (FORMAT binary)\n",
        ident(d, into),
        cols(d, columns),
        literal(file)
    )
}

/// LOAD DATA LOCAL of one file, then a check that it skipped nothing: with LOCAL, MySQL turns
/// duplicate keys, foreign-key failures and bad values into warnings and goes on.
fn load_data(file: &str, into: &str, columns: &[String], rows: u64) -> String {
    let d = Dialect::Mysql;
    format!(
        "LOAD DATA LOCAL INFILE {} INTO TABLE {} CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({});\n\
         SET @crm_etl_rows = ROW_COUNT(), @crm_etl_warnings = @@warning_count;\n\
         SHOW WARNINGS LIMIT 10;\n\
         DELIMITER //\n\
         IF @crm_etl_warnings > 0 OR @crm_etl_rows <> {rows} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {}; END IF //\n\
         DELIMITER ;\n",
        literal(file),
        ident(d, into),
        cols(d, columns),
        literal(&format!(
            "crm-etl: loading {file} skipped or changed rows (see the warnings above); nothing was committed"
        )),
    )
}

/// Moves a staging table's rows into the table: new keys inserted, existing ones updated.
fn upsert_from(d: Dialect, t: &Table, stage: &str, names: &[String]) -> String {
    let (tn, sn, c) = (ident(d, &t.name), ident(d, stage), cols(d, names));
    let others: Vec<&String> = names
        .iter()
        .filter(|n| !t.primary_key.contains(n))
        .collect();
    let pk = cols(d, &t.primary_key);
    match d {
        Dialect::Postgres | Dialect::Sqlite => {
            let action = if others.is_empty() {
                "NOTHING".to_string()
            } else {
                format!(
                    "UPDATE SET {}",
                    others
                        .iter()
                        .map(|n| format!("{} = excluded.{}", ident(d, n), ident(d, n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
            format!("INSERT INTO {tn} ({c}) SELECT {c} FROM {sn} WHERE true ON CONFLICT ({pk}) DO {action};\n")
        }
        Dialect::Mysql => {
            let action = if others.is_empty() {
                format!(
                    "{} = {}",
                    ident(d, &t.primary_key[0]),
                    ident(d, &t.primary_key[0])
                )
            } else {
                others
                    .iter()
                    .map(|n| format!("{} = VALUES({})", ident(d, n), ident(d, n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "INSERT INTO {tn} ({c}) SELECT {c} FROM {sn} ON DUPLICATE KEY UPDATE {action};\n"
            )
        }
    }
}

/// Sets a table's deferred references from its updates file (the full load's): the rows' keys and
/// their resolved references. With `reset`, rows left out of the file (every reference an orphan made
/// null) get null first, so that the table ends as a full load leaves it whatever it held before.
fn deferred_updates(d: Dialect, t: &Table, l: &Loaded, reset: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- {}: deferred references ({} update rows)",
        t.name, l.update_rows
    );
    let upd = updates_table(&t.name);
    let _ = writeln!(
        s,
        "{}",
        create_like(d, &upd, &t.name, Some(&l.update_columns))
    );
    match d {
        Dialect::Postgres => {
            s.push_str(&pg_copy(&updates_file(d, &t.name), &upd, &l.update_columns))
        }
        Dialect::Mysql => s.push_str(&load_data(
            &updates_file(d, &t.name),
            &upd,
            &l.update_columns,
            l.update_rows,
        )),
        Dialect::Sqlite => {
            let _ = writeln!(s, ".read {}", updates_file(d, &t.name));
        }
    }
    let key = &l.update_columns[0];
    let (tn, un, k) = (ident(d, &t.name), ident(d, &upd), ident(d, key));
    if reset {
        let refs = &l.update_columns[1..];
        let nulls = refs
            .iter()
            .map(|c| format!("{} = NULL", ident(d, c)))
            .collect::<Vec<_>>()
            .join(", ");
        let set = refs
            .iter()
            .map(|c| format!("{tn}.{} IS NOT NULL", ident(d, c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let _ = writeln!(
            s,
            "UPDATE {tn} SET {nulls} WHERE ({set}) AND NOT EXISTS (SELECT 1 FROM {un} AS u WHERE u.{k} = {tn}.{k});"
        );
    }
    let sets = |prefix: &str| {
        l.update_columns[1..]
            .iter()
            .map(|c| format!("{prefix}{} = u.{}", ident(d, c), ident(d, c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = match d {
        Dialect::Postgres => writeln!(
            s,
            "UPDATE {tn} AS t SET {} FROM {un} AS u WHERE t.{k} = u.{k};",
            sets("")
        ),
        Dialect::Mysql => writeln!(
            s,
            "UPDATE {tn} AS t JOIN {un} AS u ON t.{k} = u.{k} SET {};",
            sets("t.")
        ),
        Dialect::Sqlite => writeln!(
            s,
            "UPDATE {tn} AS t SET {} FROM {un} AS u WHERE t.{k} = u.{k};",
            sets("")
        ),
    };
    if d == Dialect::Mysql {
        let _ = writeln!(s, "DROP TEMPORARY TABLE {un};");
    }
    s
}

/// One table's changes in an incremental run: rows to upsert and keys to delete.
pub struct Changed {
    pub upserts: u64,
    pub deletes: u64,
}

/// `changes/load/<dialect>/apply.sql`: applies an incremental run's changes in one transaction. Inserts
/// and updates go first, parents before children (through staging tables, as upserts), so that a
/// re-parented child finds its new parent; deletes follow, children before parents, so that no row
/// is deleted while a row still references it.
///
/// A table with deferred references then gets them from the full load's updates file (`load/<dialect>/`
/// of the same run), its other rows' references made null first: upserted rows arrive with them null,
/// and a reference may have changed (or lost its parent) in a row that did not.
pub fn change_script(
    d: Dialect,
    tables: &[Table],
    changed: &[Changed],
    loaded: &[Loaded],
) -> String {
    let mut s = String::new();
    let run = match d {
        Dialect::Postgres => "psql -v ON_ERROR_STOP=1 -d DB -f changes/load/postgres/apply.sql",
        Dialect::Mysql => "mariadb --local-infile=1 DB < changes/load/mysql/apply.sql",
        Dialect::Sqlite => "sqlite3 DB < changes/load/sqlite/apply.sql",
    };
    let _ = writeln!(
        s,
        "-- Changes since the earlier run, written by crm-etl. Run from the output folder:\n--   {run}"
    );
    s.push_str("-- One transaction: a failure leaves the database as it was.\n");
    match d {
        Dialect::Postgres => {
            s.push_str("\\set ON_ERROR_STOP on\nSET client_encoding = 'UTF8';\nBEGIN;\n")
        }
        Dialect::Mysql => {
            s.push_str("SET NAMES utf8mb4;\nSET time_zone = '+00:00';\nSTART TRANSACTION;\n")
        }
        Dialect::Sqlite => s.push_str(
            ".bail on\nPRAGMA foreign_keys = ON;\nBEGIN;\nPRAGMA defer_foreign_keys = ON;\n",
        ),
    }
    let load = |s: &mut String, file: &str, into: &str, columns: &[String], rows: u64| match d {
        Dialect::Postgres => s.push_str(&pg_copy(file, into, columns)),
        Dialect::Mysql => s.push_str(&load_data(file, into, columns, rows)),
        Dialect::Sqlite => {
            let _ = writeln!(s, ".read {file}");
        }
    };
    let drop_temp = |s: &mut String, name: &str| {
        if d == Dialect::Mysql {
            let _ = writeln!(s, "DROP TEMPORARY TABLE {};", ident(d, name));
        }
    };
    for (t, c) in tables.iter().zip(changed) {
        if c.upserts == 0 || t.primary_key.is_empty() {
            continue;
        }
        let _ = writeln!(s, "-- {}: {} inserted or updated rows", t.name, c.upserts);
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let stage = stage_table(&t.name);
        let _ = writeln!(s, "{}", create_like(d, &stage, &t.name, None));
        let file = crate::since::change_data_file(d, &t.name, "upsert");
        load(&mut s, &file, &stage, &names, c.upserts);
        s.push_str(&upsert_from(d, t, &stage, &names));
        drop_temp(&mut s, &stage);
    }
    for (t, l) in tables.iter().zip(loaded) {
        if !t.deferred.is_empty() && !l.update_columns.is_empty() {
            s.push_str(&deferred_updates(d, t, l, true));
        }
    }
    for (t, c) in tables.iter().zip(changed).rev() {
        if c.deletes == 0 || t.primary_key.is_empty() {
            continue;
        }
        let _ = writeln!(s, "-- {}: {} deleted rows", t.name, c.deletes);
        let del = delete_table(&t.name);
        let _ = writeln!(s, "{}", create_like(d, &del, &t.name, Some(&t.primary_key)));
        let file = crate::since::change_data_file(d, &t.name, "delete");
        load(&mut s, &file, &del, &t.primary_key, c.deletes);
        let (tn, dn) = (ident(d, &t.name), ident(d, &del));
        let on = t
            .primary_key
            .iter()
            .map(|k| format!("t.{} = k.{}", ident(d, k), ident(d, k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let _ = match d {
            Dialect::Postgres => writeln!(s, "DELETE FROM {tn} AS t USING {dn} AS k WHERE {on};"),
            Dialect::Mysql => writeln!(s, "DELETE t FROM {tn} AS t JOIN {dn} AS k ON {on};"),
            Dialect::Sqlite => {
                let pk = cols(d, &t.primary_key);
                writeln!(
                    s,
                    "DELETE FROM {tn} WHERE ({pk}) IN (SELECT {pk} FROM {dn});"
                )
            }
        };
        drop_temp(&mut s, &del);
    }
    s.push_str("COMMIT;\n");
    s
}
