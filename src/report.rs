//! `run --report report.html`: the run's figures as one self-contained HTML page (inline style, no
//! script, no network), readable in any browser: per entity the counts, rejects by reason and by field,
//! orphans, time and throughput.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::manifest::Manifest;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.bad{color:#a00}.ok{color:#070}\
.bar{display:inline-block;height:.8em;background:#c44;vertical-align:middle}";

/// A counts table with a bar per row, largest first.
fn counts_table(title: &str, key: &str, counts: &BTreeMap<String, u64>, out: &mut String) {
    if counts.is_empty() {
        return;
    }
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = write!(
        out,
        "<table><caption>{}</caption><tr><th>{}</th><th>records</th><th></th></tr>",
        esc(title),
        esc(key)
    );
    for (k, v) in rows {
        let shown = if k.is_empty() { "(whole record)" } else { k };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{v}</td><td style=\"text-align:left\"><span class=\"bar\" style=\"width:{}px\"></span></td></tr>",
            esc(shown),
            (200 * v / max).max(1)
        );
    }
    out.push_str("</table>");
}

/// The page for a run's manifest.
pub fn html(m: &Manifest) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>crm-etl run report</title><style>{STYLE}</style></head><body>"
    );
    let status = if m.status == "ok" { "ok" } else { "bad" };
    let _ = write!(
        s,
        "<h1>crm-etl run report</h1><p>Mapping <code>{}</code>, {} to {}, {} threads, crm-etl {}. Status: <b class=\"{status}\" id=\"status\">{}</b>.</p>",
        esc(&m.mapping.path),
        esc(&m.started_at),
        esc(&m.finished_at),
        m.threads,
        esc(&m.version),
        esc(&m.status)
    );
    let _ = write!(
        s,
        "<p id=\"totals\">Read {} records: {} written, {} rejected (allowed: {}).</p>",
        m.read, m.written, m.rejected, m.max_rejects
    );
    s.push_str("<table id=\"entities\"><caption>Entities, in the order they ran</caption><tr><th>entity</th><th>read</th><th>written</th><th>rejected</th><th>orphans</th><th>unmapped</th><th>input MB</th><th>time (s)</th><th>MB/s</th></tr>");
    for e in &m.entities {
        let secs = e.millis as f64 / 1000.0;
        let rate = if e.millis > 0 {
            format!("{:.0}", e.input_bytes as f64 / 1e6 / secs)
        } else {
            "-".into()
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{secs:.2}</td><td>{rate}</td></tr>",
            esc(&e.name),
            e.read,
            e.written,
            if e.rejected > 0 { "bad" } else { "ok" },
            e.rejected,
            e.orphans.values().sum::<u64>(),
            e.unmapped.values().sum::<u64>(),
            e.input_bytes as f64 / 1e6,
        );
    }
    s.push_str("</table>");
    for e in m
        .entities
        .iter()
        .filter(|e| e.rejected > 0 || !e.orphans.is_empty())
    {
        let _ = write!(s, "<h2>{}</h2>", esc(&e.name));
        if let Some(f) = &e.rejects_file {
            let _ = write!(s, "<p>Rejects: <code>{}</code></p>", esc(f));
        }
        counts_table("Rejects by reason", "reason", &e.rejects_by_reason, &mut s);
        counts_table("Rejects by field", "field", &e.rejects_by_field, &mut s);
        counts_table(
            "Orphans (written as null or kept)",
            "field",
            &e.orphans,
            &mut s,
        );
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_would_read() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
