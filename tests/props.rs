//! Property tests: write-then-read round trips, hash-then-verify, and exact decimals.

use proptest::prelude::*;

use crm_etl::manifest::{self, FileRef, Finding, Manifest, OutputEntry};
use crm_etl::read::csv::{Batch, CsvReader, Dialect};
use crm_etl::write::encode::csv_field;

fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(','),
            Just('"'),
            Just('\n'),
            Just('\r'),
            Just(' '),
            Just('é'),
            Just('東'),
            any::<char>(),
            Just('a')
        ],
        0..12,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Records written by our CSV writer read back identical through our reader (at any buffer size)
    /// and through the csv crate, an independent implementation.
    #[test]
    fn csv_write_then_read(rows in prop::collection::vec(prop::collection::vec(field(), 1..6), 1..20), chunk in 1usize..64) {
        let mut bytes = Vec::new();
        for r in &rows {
            for (i, f) in r.iter().enumerate() {
                if i > 0 { bytes.push(b','); }
                csv_field(f.as_bytes(), true, &mut bytes);
            }
            bytes.push(b'\n');
        }
        struct Chunky(Vec<u8>, usize, usize);
        impl std::io::Read for Chunky {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = (self.0.len() - self.2).min(self.1).min(b.len());
                b[..n].copy_from_slice(&self.0[self.2..self.2 + n]);
                self.2 += n;
                Ok(n)
            }
        }
        let mut r = CsvReader::new(Chunky(bytes.clone(), chunk, 0), Dialect::default(), "p.csv", 0);
        let mut b = Batch::default();
        while r.read_record(&mut b).unwrap() {}
        let ours: Vec<Vec<String>> = b.records.iter().map(|m| (0..m.n_fields).map(|i| String::from_utf8(b.field(m, i).to_vec()).unwrap()).collect()).collect();
        prop_assert_eq!(&ours, &rows);
        // A first value starting with U+FEFF is indistinguishable from a byte-order mark, which the csv
        // crate strips (as crm-etl's file opener does); only that case is left out of the comparison.
        if rows[0][0].starts_with('\u{feff}') {
            return Ok(());
        }
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&bytes[..]);
        let theirs: Vec<Vec<String>> = rdr.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
        prop_assert_eq!(&theirs, &rows);
    }

    /// A folder hashed into checksums and a manifest verifies; flipping any one byte of any file fails it.
    #[test]
    fn hash_then_verify(files in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..5), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        let dir = tempfile::tempdir().unwrap();
        let mut outputs = Vec::new();
        for (i, content) in files.iter().enumerate() {
            let name = format!("f{i}.bin");
            std::fs::write(dir.path().join(&name), content).unwrap();
            outputs.push(OutputEntry { path: name, bytes: content.len() as u64, rows: 0, blake3: blake3::hash(content).to_hex().to_string() });
        }
        let checksums = manifest::write_checksums(dir.path(), &outputs).unwrap();
        let m = Manifest {
            tool: "crm-etl".into(), version: "test".into(),
            mapping: FileRef { path: "m.toml".into(), blake3: String::new() },
            started_at: String::new(), finished_at: String::new(), threads: 1,
            inputs: vec![], outputs: outputs.clone(), entities: vec![],
            read: 0, written: 0, rejected: 0, max_rejects: 0, status: "ok".into(), checksums,
            since: None,
        };
        manifest::write_manifest(dir.path(), &m).unwrap();
        let findings = manifest::verify(dir.path()).unwrap();
        prop_assert!(findings.iter().all(Finding::is_ok), "{:?}", findings);
        let victim = pick.index(files.len());
        let path = dir.path().join(format!("f{victim}.bin"));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = pick.index(bytes.len());
        bytes[at] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        let findings = manifest::verify(dir.path()).unwrap();
        prop_assert!(findings.contains(&Finding::Changed(format!("f{victim}.bin"))), "{:?}", findings);
    }

    /// Any decimal written with its scale reads back as the same text, and a scale too small is refused
    /// unless rounding was asked for.
    #[test]
    fn decimals_round_trip(mantissa in any::<i64>(), scale in 0u8..10) {
        let digits = mantissa.unsigned_abs().to_string();
        let s = usize::from(scale);
        let padded = format!("{digits:0>width$}", width = s + 1);
        let (int, frac) = padded.split_at(padded.len() - s);
        let text = format!("{}{}{}{}", if mantissa < 0 { "-" } else { "" }, int, if s > 0 { "." } else { "" }, frac);
        let nf = crm_etl::cast::NumberFormat::default();
        let mut out = String::new();
        crm_etl::cast::decimal(&text, 38, scale, false, &nf, &mut out).unwrap();
        let want = if mantissa == 0 { text.trim_start_matches('-').to_string() } else { text.clone() };
        prop_assert_eq!(&out, &want);
        if scale > 0 && mantissa % 10 != 0 {
            let mut o2 = String::new();
            prop_assert!(crm_etl::cast::decimal(&text, 38, scale - 1, false, &nf, &mut o2).is_err());
        }
    }
}
