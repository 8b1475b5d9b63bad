//! Progress on stderr for long runs: bytes read of the input's size, records, throughput and time left,
//! per entity. Shown only when stderr is a terminal and the run is not `--quiet`, and only once a step
//! has taken longer than a moment, so short runs and scripts see nothing. `CRM_ETL_PROGRESS=always` or
//! `never` overrides the terminal check.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::read::InputHash;

/// A step is shown once it has run this long.
const SHOW_AFTER: Duration = Duration::from_millis(800);

/// Whether progress is shown at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// On a terminal, after [`SHOW_AFTER`].
    Auto,
    /// Always, as a plain line about every second whatever stderr is (`CRM_ETL_PROGRESS=always`; for
    /// logs of long runs, and tests).
    Always,
}

impl Mode {
    /// The mode for a command: off with `--quiet`, else per `CRM_ETL_PROGRESS` or the terminal.
    pub fn detect(quiet: bool) -> Mode {
        use std::io::IsTerminal;
        if quiet {
            return Mode::Off;
        }
        match std::env::var("CRM_ETL_PROGRESS").as_deref() {
            Ok("always") => Mode::Always,
            Ok("never") => Mode::Off,
            _ if std::io::stderr().is_terminal() => Mode::Auto,
            _ => Mode::Off,
        }
    }
}

/// The progress of one step (an entity's run, a conversion) over its input files.
pub struct Step {
    bar: ProgressBar,
    mode: Mode,
    started: Instant,
    shown: bool,
    /// Bytes of the files already read, and the file being read.
    done: u64,
    hash: Option<InputHash>,
    name: String,
    total: u64,
    /// When the last plain line was printed ([`Mode::Always`]), and at how many records.
    last_line: Option<Instant>,
    last_records: Option<u64>,
}

impl Step {
    /// A step named `name` over `total` input bytes (0: unknown, as for standard input).
    pub fn new(mode: Mode, name: &str, total: u64) -> Option<Step> {
        if mode == Mode::Off {
            return None;
        }
        let bar = if total > 0 {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        };
        let template = if total > 0 {
            "{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
        } else {
            "{prefix:>16} {bytes} {bytes_per_sec} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_string());
        let step = Step {
            bar,
            mode,
            started: Instant::now(),
            shown: false,
            done: 0,
            hash: None,
            name: name.to_string(),
            total,
            last_line: None,
            last_records: None,
        };
        Some(step)
    }

    /// Starts reading a file whose bytes are counted by `hash`.
    pub fn file(&mut self, hash: InputHash) {
        if let Some(h) = self.hash.take() {
            self.done += h.bytes();
        }
        self.hash = Some(hash);
    }

    /// Called after each batch: bytes read so far and records read.
    pub fn update(&mut self, records: u64) {
        let now = self.done + self.hash.as_ref().map_or(0, InputHash::bytes);
        if self.mode == Mode::Always {
            if self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.last_line = Some(Instant::now());
                self.last_records = Some(records);
                self.line(now, records);
            }
            return;
        }
        self.show_if_due();
        self.bar.set_position(now);
        self.bar.set_message(format!("{records} records"));
    }

    /// A plain progress line.
    fn line(&self, bytes: u64, records: u64) {
        use std::io::Write;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mb = |b: u64| b as f64 / 1e6;
        let of = if self.total > 0 {
            format!(
                " of {:.1} MB ({:.0} %)",
                mb(self.total),
                100.0 * bytes as f64 / self.total as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            std::io::stderr(),
            "progress: {}: {:.1} MB{of}, {records} records, {:.1} MB/s",
            self.name,
            mb(bytes),
            mb(bytes) / secs
        );
    }

    fn show_if_due(&mut self) {
        if !self.shown && self.started.elapsed() >= SHOW_AFTER {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Clears the bar (the run's summary table follows); a plain log gets its last line.
    pub fn finish(self, records: u64) {
        if self.mode == Mode::Always && self.last_records != Some(records) {
            self.line(
                self.done + self.hash.as_ref().map_or(0, InputHash::bytes),
                records,
            );
        }
        self.bar.finish_and_clear();
    }
}
