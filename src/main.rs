//! The `crm-etl` binary: parse the command line, call the library, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use crm_etl::cli::{threads, Cli, Command, RaggedArg};
use crm_etl::error::FatalError;
use crm_etl::{convert, manifest, read, run, spec};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(FatalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crm-etl: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Command) -> Result<u8, FatalError> {
    match cmd {
        Command::Run {
            mapping,
            out,
            threads: t,
            format,
            max_rejects,
            quiet,
            dry_run,
            target,
            ddl,
            mode,
            report,
            since,
        } => {
            let opts = run::RunOptions {
                mapping,
                out: out.unwrap_or_default(),
                threads: threads(t),
                format: format.map(|fs| fs.into_iter().map(Into::into).collect()),
                max_rejects,
                dry_run,
                targets: target.map(|ts| ts.into_iter().map(Into::into).collect()),
                ddl: ddl.map(Into::into),
                mode: mode.map(Into::into),
                progress: crm_etl::progress::Mode::detect(quiet),
                since,
            };
            let res = run::run(&opts)?;
            if let Some(path) = &report {
                let mut f = crm_etl::write::AtomicFile::create(path)?;
                f.write_bytes(crm_etl::report::html(&res.manifest).as_bytes())?;
                f.finish()?;
            }
            if dry_run {
                print!("{}", dry_run_report(&res));
                return Ok(u8::from(res.over_limit));
            }
            if !quiet || res.over_limit {
                eprint!("{}", run_summary(&res.manifest));
            }
            if res.over_limit {
                eprintln!(
                    "crm-etl: {} records rejected, more than --max-rejects {}; see {}/rejects/",
                    res.manifest.rejected,
                    opts.max_rejects,
                    opts.out.display()
                );
                return Ok(1);
            }
            Ok(0)
        }
        Command::Check { mapping } => {
            for note in run::check(&mapping)? {
                println!("{note}");
            }
            println!("{}: OK", mapping.display());
            Ok(0)
        }
        Command::Convert {
            input,
            to,
            output,
            delimiter,
            quote,
            encoding,
            ragged,
            threads: t,
            from,
            record_path,
            columns,
            xml_root,
            xml_record,
            max_record_bytes,
        } => {
            if matches!(to, crm_etl::cli::Format::None) {
                return Err(FatalError::Usage(
                    "convert --to none: a conversion must write something; none is for `run` with load targets".into(),
                ));
            }
            let (dialect, encoding) = reading(delimiter, quote, &encoding)?;
            let opts = convert::ConvertOptions {
                input,
                output,
                to: to.into(),
                dialect,
                encoding,
                ragged: match ragged {
                    RaggedArg::Fail => spec::Ragged::Fail,
                    RaggedArg::Pad => spec::Ragged::Pad,
                },
                threads: threads(t),
                from: from.map(Into::into),
                record_path,
                columns,
                xml_root: Some(xml_root),
                xml_record: Some(xml_record),
                max_record_bytes,
                progress: crm_etl::progress::Mode::detect(false),
            };
            convert::convert(&opts)?;
            Ok(0)
        }
        Command::Inspect {
            files,
            from,
            record_path,
            mapping,
        } => {
            if let Some(m) = mapping.as_ref().filter(|m| m.exists()) {
                return Err(FatalError::Usage(format!(
                    "--mapping {}: the file exists; refusing to overwrite it",
                    m.display()
                )));
            }
            let (report, draft) = crm_etl::inspect::inspect(&crm_etl::inspect::InspectOptions {
                files,
                from: from.map(Into::into),
                record_path,
                mapping: mapping.clone(),
            })?;
            print!("{report}");
            if let (Some(path), Some(text)) = (mapping, draft) {
                let mut f = crm_etl::write::AtomicFile::create(&path)?;
                f.write_bytes(text.as_bytes())?;
                f.finish()?;
                eprintln!("crm-etl: inspect: draft mapping in {}", path.display());
            }
            Ok(0)
        }
        Command::Diff {
            old,
            new,
            key,
            out,
            to,
            from,
            record_path,
            columns,
            delimiter,
            quote,
            encoding,
        } => {
            let (dialect, encoding) = reading(delimiter, quote, &encoding)?;
            let side = |input: String| convert::ConvertOptions {
                input,
                output: String::new(),
                to: spec::OutputFormat::Csv,
                dialect: dialect.clone(),
                encoding,
                ragged: spec::Ragged::Fail,
                threads: 1,
                from: from.map(Into::into),
                record_path: record_path.clone(),
                columns: columns.clone(),
                xml_root: None,
                xml_record: None,
                max_record_bytes: 64 << 20,
                progress: crm_etl::progress::Mode::detect(false),
            };
            let counts = crm_etl::diff::diff(&crm_etl::diff::DiffOptions {
                old: side(old),
                new: side(new),
                key,
                out: out.clone(),
                format: match to {
                    crm_etl::cli::DiffFormatArg::Csv => crm_etl::diff::DiffFormat::Csv,
                    crm_etl::cli::DiffFormatArg::Jsonl => crm_etl::diff::DiffFormat::Jsonl,
                },
            })?;
            eprintln!(
                "crm-etl: diff: {} inserted, {} updated, {} deleted, {} unchanged; in {}",
                counts.inserted,
                counts.updated,
                counts.deleted,
                counts.unchanged,
                out.display()
            );
            Ok(0)
        }
        Command::Archive {
            runs,
            to,
            no_inputs,
        } => {
            let (members, bytes) = crm_etl::archive::archive(&crm_etl::archive::ArchiveOptions {
                runs,
                to: to.clone(),
                no_inputs,
            })?;
            eprintln!(
                "crm-etl: archive: {} members, {bytes} bytes in {}",
                members,
                to.display()
            );
            Ok(0)
        }
        Command::Verify { dir } => {
            let findings = if dir.is_file() {
                crm_etl::archive::verify_archive(&dir)?
            } else {
                manifest::verify(&dir)?
            };
            let bad = findings.iter().filter(|f| !f.is_ok()).count();
            for f in &findings {
                println!("{f}");
            }
            if bad > 0 {
                eprintln!("crm-etl: verify: {bad} problem(s) in {}", dir.display());
                Ok(1)
            } else {
                eprintln!("crm-etl: verify: all {} files match", findings.len());
                Ok(0)
            }
        }
        Command::Schema => {
            print!("{}", spec::json_schema());
            Ok(0)
        }
        Command::Digest {
            mapping,
            entity,
            from,
            mysql_query,
            input,
            expect,
            threads: t,
        } => match from {
            _ if mysql_query => {
                println!(
                    "{}",
                    crm_etl::digest::mysql_export_query(&mapping, &entity)?
                );
                Ok(0)
            }
            Some(from) => digest_command(
                &mapping,
                &entity,
                from,
                &input,
                expect.as_deref(),
                threads(t),
            ),
            None => Err(FatalError::Usage("digest: give --from".into())),
        },
    }
}

/// The CSV dialect and encoding given on the command line.
fn reading(
    delimiter: String,
    quote: String,
    encoding: &str,
) -> Result<(read::csv::Dialect, spec::Encoding), FatalError> {
    let dspec = spec::CsvDialect {
        delimiter,
        quote,
        ..spec::CsvDialect::default()
    };
    let dialect = read::compile_dialect(&dspec).map_err(|es| {
        FatalError::Usage(
            es.into_iter()
                .map(|(k, m)| format!("--{k}: {m}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let encoding: spec::Encoding =
        serde_json::from_value(serde_json::Value::String(encoding.to_string()))
            .map_err(|_| FatalError::Usage(format!("--encoding: unknown encoding {encoding:?}")))?;
    Ok((dialect, encoding))
}

/// `crm-etl digest`: standard input is copied to a temporary file first, so that an empty export (no
/// rows) can be told from a broken one.
fn digest_command(
    mapping: &std::path::Path,
    entity: &str,
    from: crm_etl::cli::ExportArg,
    input: &std::path::Path,
    expect: Option<&std::path::Path>,
    threads: usize,
) -> Result<u8, FatalError> {
    use crm_etl::cli::ExportArg;
    use crm_etl::digest::{digest_export, ExportFormat};
    let format = match from {
        ExportArg::Copy => ExportFormat::Copy,
        ExportArg::Jsonl => ExportFormat::Jsonl,
        ExportArg::Json => ExportFormat::Json,
    };
    let mut tmp = None;
    let path = if input.as_os_str() == "-" {
        let p = std::env::temp_dir().join(format!("crm-etl-digest-{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&p).map_err(|e| FatalError::io(&p, e))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f)
            .map_err(|e| FatalError::io("<stdin>", e))?;
        tmp = Some(p.clone());
        p
    } else {
        input.to_path_buf()
    };
    let display = if tmp.is_some() {
        "<stdin>".to_string()
    } else {
        path.to_string_lossy().into_owned()
    };
    let res = digest_export(mapping, entity, format, &path, &display, threads);
    if let Some(p) = tmp {
        let _ = std::fs::remove_file(p);
    }
    let (rows, digest) = res?;
    println!("{entity}: {rows} rows, {}", digest.text());
    let Some(dir) = expect else { return Ok(0) };
    let text = std::fs::read_to_string(dir.join(manifest::MANIFEST))
        .map_err(|e| FatalError::io(dir.join(manifest::MANIFEST), e))?;
    let m: manifest::Manifest = serde_json::from_str(&text).map_err(|e| {
        FatalError::Usage(format!("{}: not a crm-etl manifest: {e}", dir.display()))
    })?;
    let Some(e) = m.entities.iter().find(|e| e.name == entity) else {
        return Err(FatalError::Usage(format!(
            "{}: no entity {entity:?} in the manifest",
            dir.display()
        )));
    };
    if e.written == rows && e.digest == digest.text() {
        println!("{entity}: matches {} ({} rows)", dir.display(), e.written);
        Ok(0)
    } else {
        println!(
            "{entity}: DIFFERS from {}: the run wrote {} rows, {}",
            dir.display(),
            e.written,
            e.digest
        );
        Ok(1)
    }
}

/// What `run --dry-run` prints: per entity, its counts and a few rejects.
fn dry_run_report(res: &run::RunResult) -> String {
    let mut s = String::from("dry run: nothing was written\n");
    for (e, (_, samples)) in res.manifest.entities.iter().zip(&res.samples) {
        s.push_str(&format!(
            "\n{}: read {}, would write {}, rejected {}\n",
            e.name, e.read, e.written, e.rejected
        ));
        let list = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !e.rejects_by_reason.is_empty() {
            s.push_str(&format!(
                "  rejects by reason: {}\n",
                list(&e.rejects_by_reason)
            ));
        }
        if !e.orphans.is_empty() {
            s.push_str(&format!("  orphans (null or kept): {}\n", list(&e.orphans)));
        }
        if !e.unmapped.is_empty() {
            s.push_str(&format!(
                "  unmapped values (kept, null or default): {}\n",
                list(&e.unmapped)
            ));
        }
        if let Some(u) = &e.updates {
            s.push_str(&format!(
                "  deferred references: {} update rows ({})\n",
                u.rows,
                u.columns.join(", ")
            ));
        }
        for (file, r) in samples {
            let first = r.errors.first();
            s.push_str(&format!(
                "  reject {file}:{} (record {}): {}\n",
                r.line,
                r.number,
                first.map(ToString::to_string).unwrap_or_default()
            ));
        }
    }
    s
}

/// The per-entity table printed after a run (the same figures are in the manifest).
fn run_summary(m: &manifest::Manifest) -> String {
    let mut s = format!(
        "{:<24} {:>10} {:>10} {:>9} {:>8} {:>8} {:>7}  rejects by reason\n",
        "entity", "read", "written", "rejected", "orphans", "time (s)", "MB/s"
    );
    for e in &m.entities {
        let reasons: Vec<String> = e
            .rejects_by_reason
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let secs = e.millis as f64 / 1000.0;
        let rate = if e.millis > 0 {
            format!("{:.0}", e.input_bytes as f64 / 1e6 / secs)
        } else {
            "-".into()
        };
        s.push_str(&format!(
            "{:<24} {:>10} {:>10} {:>9} {:>8} {:>8.2} {:>7}  {}\n",
            e.name,
            e.read,
            e.written,
            e.rejected,
            e.orphans.values().sum::<u64>(),
            secs,
            rate,
            reasons.join(" ")
        ));
    }
    s
}
