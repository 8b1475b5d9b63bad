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
        } => {
            let opts = run::RunOptions {
                mapping,
                out,
                threads: threads(t),
                format: format.map(Into::into),
                max_rejects,
            };
            let res = run::run(&opts)?;
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
            let encoding: spec::Encoding = serde_json::from_value(serde_json::Value::String(
                encoding.clone(),
            ))
            .map_err(|_| FatalError::Usage(format!("--encoding: unknown encoding {encoding:?}")))?;
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
            };
            convert::convert(&opts)?;
            Ok(0)
        }
        Command::Verify { dir } => {
            let findings = manifest::verify(&dir)?;
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
    }
}

/// The per-entity table printed after a run.
fn run_summary(m: &manifest::Manifest) -> String {
    let mut s = format!(
        "{:<24} {:>12} {:>12} {:>10}  reasons\n",
        "entity", "read", "written", "rejected"
    );
    for e in &m.entities {
        let reasons: Vec<String> = e
            .rejects_by_reason
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>10}  {}\n",
            e.name,
            e.read,
            e.written,
            e.rejected,
            reasons.join(" ")
        ));
    }
    s
}
