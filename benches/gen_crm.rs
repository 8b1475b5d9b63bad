//! Seeded generator of a realistic CRM export for the benchmarks: `Account.csv` and `Contact.csv` in the
//! shape Salesforce writes them, with the awkward values real exports carry (accents and CJK, multi-line
//! quoted notes with commas and quotes, US and ISO dates, offsets, mixed boolean spellings, empty fields).
//!
//! Usage: cargo run --release --example gen_crm -- OUT_DIR [CONTACTS] [SEED]

// One readable template per row matters more here than avoiding nested format! calls.
#![allow(clippy::format_in_format_args)]

use std::fs::File;
use std::io::{BufWriter, Write};

/// SplitMix64: tiny, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Jürgen",
    "Zoë",
    "Chloé",
    "François",
    "José",
    "Søren",
    "Ana",
    "Łukasz",
    "花子",
    "太郎",
    "Wei",
    "Priya",
    "Olamide",
    "Mateo",
    "Ingrid",
    "Hélène",
    "Björn",
    "Aiko",
];
const LAST: &[&str] = &[
    "Smith",
    "Müller",
    "O'Brien",
    "Dubois",
    "García",
    "Nguyen",
    "山田",
    "佐藤",
    "Kowalski",
    "Johansson",
    "Rossi",
    "Papadopoulos",
    "Okafor",
    "Silva",
    "Van der Berg",
    "Łukaszewicz",
    "Öztürk",
    "Chen",
    "Kim",
    "Patel",
];
const CITY: &[&str] = &[
    "Berlin",
    "München",
    "東京",
    "Paris",
    "São Paulo",
    "New York",
    "Zürich",
    "København",
    "Kraków",
    "Lagos",
    "Toronto",
    "Sydney",
];
const COUNTRY: &[&str] = &[
    "DE", "DE", "JP", "FR", "BR", "US", "CH", "DK", "PL", "NG", "CA", "AU",
];
const LEAD: &[&str] = &[
    "Web",
    "Partner Referral",
    "Trade Show",
    "Cold Call",
    "Advertisement",
    "",
];
const STATUS: &[&str] = &["Active", "Inactive", "Prospect", "Churned"];
const SAL: &[&str] = &["Mr.", "Ms.", "Dr.", "Prof.", ""];
const BOOL: &[&str] = &[
    "true", "false", "TRUE", "False", "1", "0", "yes", "No", "Y", "n",
];
const INDUSTRY: &[&str] = &[
    "Manufacturing",
    "Technology",
    "Retail",
    "Consulting",
    "Finance",
    "Healthcare",
];
const NOTES: &[&str] = &[
    "Prefers calls, not email.",
    "Met at \"Tokyo Expo\" 2023;\nfollow up in Q3, ask about pricing",
    "Key account — renewal due.\nBudget: 50,000 EUR",
    "VIP, \"do not disturb\" after 6pm",
    "Requested datasheet; sent 2x.\r\nWaiting on legal, \"NDA\" pending",
];
const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An 18-character Salesforce-style id with a key prefix.
fn sf_id(prefix: &str, n: u64) -> String {
    let mut s = String::from(prefix);
    s.push_str("5g000");
    let mut v = n;
    let mut body = [b'0'; 7];
    for b in body.iter_mut().rev() {
        *b = ALNUM[(v % 62) as usize];
        v /= 62;
    }
    s.push_str(std::str::from_utf8(&body).unwrap_or("0000000"));
    s.push_str("AAF");
    s
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or("bench-data"));
    let contacts: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(42);
    let accounts = (contacts / 10).max(1);
    std::fs::create_dir_all(&dir)?;
    let mut rng = Rng(seed);

    let mut a = BufWriter::new(File::create(dir.join("Account.csv"))?);
    writeln!(
        a,
        "Id,Name,Industry,AnnualRevenue,NumberOfEmployees,BillingCity,BillingCountry,CreatedDate"
    )?;
    for i in 0..accounts {
        let city = rng.below(CITY.len() as u64) as usize;
        writeln!(
            a,
            "{},{},{},{}.{:02},{},{},{},{}",
            sf_id("001", i),
            quote(&format!(
                "{} {} {}",
                rng.pick(LAST),
                rng.pick(&["GmbH", "Inc.", "株式会社", "S.A.", "Ltd"]),
                i
            )),
            rng.pick(INDUSTRY),
            rng.below(50_000_000),
            rng.below(100),
            rng.below(5000),
            CITY[city],
            COUNTRY[city],
            format!(
                "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}.000+0000",
                10 + rng.below(14),
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ),
        )?;
    }
    a.flush()?;

    let mut c = BufWriter::with_capacity(1 << 20, File::create(dir.join("Contact.csv"))?);
    // The same contacts as JSON Lines (an API dump: Salesforce's `attributes`, numbers as numbers, empty
    // values as null) and as XML (one element per field), when asked for.
    let formats = args.get(4).map(String::as_str) == Some("all");
    let mut j = formats
        .then(|| {
            File::create(dir.join("Contact.jsonl")).map(|f| BufWriter::with_capacity(1 << 20, f))
        })
        .transpose()?;
    let mut x = formats
        .then(|| {
            File::create(dir.join("Contact.xml")).map(|f| BufWriter::with_capacity(1 << 20, f))
        })
        .transpose()?;
    if let Some(x) = &mut x {
        writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Contacts>")?;
    }
    const COLUMNS: [&str; 21] = [
        "Id",
        "AccountId",
        "Salutation",
        "FirstName",
        "LastName",
        "Email",
        "Phone",
        "MobilePhone",
        "MailingStreet",
        "MailingCity",
        "MailingPostalCode",
        "MailingCountry",
        "Birthdate",
        "LeadSource",
        "HasOptedOutOfEmail",
        "AnnualIncome__c",
        "Score__c",
        "Status__c",
        "CreatedDate",
        "LastActivityDate",
        "Description",
    ];
    writeln!(c, "{}", COLUMNS.join(","))?;
    for i in 0..contacts {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let city = rng.below(CITY.len() as u64) as usize;
        let email = format!(
            "{}.{}{}@{}.example.com",
            first.to_lowercase(),
            last.to_lowercase().replace([' ', '\''], ""),
            i,
            rng.pick(&["mail", "corp", "acme", "globex"])
        );
        let email = if rng.chance(20) {
            email.to_uppercase()
        } else {
            email
        };
        let birth = if rng.chance(15) {
            String::new()
        } else {
            format!(
                "{}/{}/{}",
                1 + rng.below(12),
                1 + rng.below(28),
                1940 + rng.below(65)
            )
        };
        let offset = rng.pick(&["+0000", "-0500", "+0100", "+0900", "-0800"]);
        let desc = if rng.chance(65) {
            rng.pick(NOTES).to_string()
        } else {
            String::new()
        };
        let vals: [String; 21] = [
            sf_id("003", i),
            sf_id("001", rng.below(accounts)),
            rng.pick(SAL).to_string(),
            first.to_string(),
            last.to_string(),
            email,
            format!(
                "+1 ({}) {:03}-{:04}",
                200 + rng.below(800),
                rng.below(1000),
                rng.below(10000)
            ),
            if rng.chance(40) {
                String::new()
            } else {
                format!("+49 {} {}", 150 + rng.below(30), rng.below(10_000_000))
            },
            format!(
                "{} {}straße, Apt {}",
                1 + rng.below(300),
                rng.pick(&["Haupt", "Linden", "Berg"]),
                rng.below(50)
            ),
            CITY[city].to_string(),
            format!("{:05}", rng.below(100_000)),
            COUNTRY[city].to_string(),
            birth,
            rng.pick(LEAD).to_string(),
            rng.pick(BOOL).to_string(),
            if rng.chance(10) {
                String::new()
            } else {
                format!("{}.{:02}", rng.below(500_000), rng.below(100))
            },
            format!("{:.3}", rng.below(100_000) as f64 / 1000.0),
            rng.pick(STATUS).to_string(),
            format!(
                "20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}.000{}",
                10 + rng.below(14),
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                offset
            ),
            format!(
                "20{:02}-{:02}-{:02}",
                20 + rng.below(5),
                1 + rng.below(12),
                1 + rng.below(28)
            ),
            desc,
        ];
        let line: Vec<String> = vals.iter().map(|v| quote(v)).collect();
        writeln!(c, "{}", line.join(","))?;
        if let Some(j) = &mut j {
            write!(
                j,
                "{{\"attributes\":{{\"type\":\"Contact\",\"url\":\"/services/data/v62.0/sobjects/Contact/{}\"}}",
                vals[0]
            )?;
            for (k, v) in COLUMNS.iter().zip(&vals) {
                let numeric = matches!(*k, "AnnualIncome__c" | "Score__c");
                if v.is_empty() {
                    write!(j, ",\"{k}\":null")?;
                } else if numeric {
                    write!(j, ",\"{k}\":{v}")?;
                } else {
                    write!(
                        j,
                        ",\"{k}\":{}",
                        serde_json::to_string(v).unwrap_or_default()
                    )?;
                }
            }
            writeln!(j, "}}")?;
        }
        if let Some(x) = &mut x {
            write!(x, "  <Contact>")?;
            for (k, v) in COLUMNS.iter().zip(&vals) {
                if !v.is_empty() {
                    let esc = v
                        .replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('\r', "&#13;");
                    write!(x, "<{k}>{esc}</{k}>")?;
                }
            }
            writeln!(x, "</Contact>")?;
        }
    }
    if let Some(mut j) = j {
        j.flush()?;
    }
    if let Some(mut x) = x {
        writeln!(x, "</Contacts>")?;
        x.flush()?;
    }
    c.flush()?;
    Ok(())
}
