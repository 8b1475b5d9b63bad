//! Date and time casts. Format strings (strftime style) are compiled once into token lists, so a record
//! never re-reads a format; calendar checks and time-zone arithmetic are jiff's.

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use crate::spec::Ambiguous;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Year4,
    Year2,
    Month,
    MonthAbbr,
    MonthName,
    Day,
    Hour24,
    Hour12,
    Minute,
    Second,
    /// `%.f`: an optional `.` and 1 to 9 digits. `%f`: 1 to 9 digits, required.
    Frac {
        optional: bool,
    },
    AmPm,
    Offset,
    Lit(char),
}

/// A compiled input format.
#[derive(Debug, Clone)]
pub struct Format {
    source: String,
    toks: Vec<Tok>,
    /// How many leading tokens spell `%Y-%m-%d` (5) or that and `T` or a space and `%H:%M:%S` (11):
    /// those read a value with every digit there in one fixed-width step (see [`Format::parse`]).
    fixed: usize,
}

/// The leading tokens of ISO dates and date-times that [`Format::parse`] reads in one step.
const ISO_DATE: [Tok; 5] = [
    Tok::Year4,
    Tok::Lit('-'),
    Tok::Month,
    Tok::Lit('-'),
    Tok::Day,
];
const ISO_CLOCK: [Tok; 5] = [
    Tok::Hour24,
    Tok::Lit(':'),
    Tok::Minute,
    Tok::Lit(':'),
    Tok::Second,
];

/// The parts a format can fill.
#[derive(Debug, Default, Clone, Copy)]
struct Parts {
    year: Option<i16>,
    month: Option<i8>,
    day: Option<i8>,
    hour: Option<i8>,
    pm: Option<bool>,
    minute: i8,
    second: i8,
    nano: i32,
    offset: Option<i32>,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl Format {
    /// Compiles a strftime-style format. Supported: `%Y %y %m %b %B %d %e %H %I %M %S %f %.f %p %z %F %T %%`.
    pub fn compile(fmt: &str) -> Result<Format, String> {
        let mut toks = Vec::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                toks.push(Tok::Lit(c));
                continue;
            }
            let t = match chars.next() {
                Some('Y') => Tok::Year4,
                Some('y') => Tok::Year2,
                Some('m') => Tok::Month,
                Some('b') | Some('h') => Tok::MonthAbbr,
                Some('B') => Tok::MonthName,
                Some('d') | Some('e') => Tok::Day,
                Some('H') => Tok::Hour24,
                Some('I') => Tok::Hour12,
                Some('M') => Tok::Minute,
                Some('S') => Tok::Second,
                Some('f') => Tok::Frac { optional: false },
                Some('.') => match chars.next() {
                    Some('f') => Tok::Frac { optional: true },
                    _ => return Err(format!("format {fmt:?}: `%.` must be followed by `f`")),
                },
                Some('p') | Some('P') => Tok::AmPm,
                Some('z') | Some('Z') => Tok::Offset,
                Some('F') => {
                    toks.extend([Tok::Year4, Tok::Lit('-'), Tok::Month, Tok::Lit('-')]);
                    Tok::Day
                }
                Some('T') => {
                    toks.extend([Tok::Hour24, Tok::Lit(':'), Tok::Minute, Tok::Lit(':')]);
                    Tok::Second
                }
                Some('%') => Tok::Lit('%'),
                Some(other) => {
                    return Err(format!(
                        "format {fmt:?}: unsupported directive %{other} (supported: %Y %y %m %b %B %d %e %H %I %M %S %f %.f %p %z %F %T %%)"
                    ))
                }
                None => return Err(format!("format {fmt:?} ends with a lone %")),
            };
            toks.push(t);
        }
        let has = |t: &Tok| toks.contains(t);
        if has(&Tok::Hour12) != has(&Tok::AmPm) {
            return Err(format!("format {fmt:?}: %I needs %p and %p needs %I"));
        }
        let fixed = match (toks.get(..5), toks.get(5), toks.get(6..11)) {
            (Some(d), Some(Tok::Lit('T' | ' ')), Some(c)) if d == ISO_DATE && c == ISO_CLOCK => 11,
            (Some(d), _, _) if d == ISO_DATE => 5,
            _ => 0,
        };
        Ok(Format {
            source: fmt.to_string(),
            toks,
            fixed,
        })
    }

    fn has_date(&self) -> bool {
        let has = |t: &Tok| self.toks.contains(t);
        (has(&Tok::Year4) || has(&Tok::Year2))
            && (has(&Tok::Month) || has(&Tok::MonthAbbr) || has(&Tok::MonthName))
            && has(&Tok::Day)
    }

    fn has_time(&self) -> bool {
        self.toks.contains(&Tok::Hour24) || self.toks.contains(&Tok::Hour12)
    }

    /// Whether the format reads a UTC offset.
    pub fn has_offset(&self) -> bool {
        self.toks.contains(&Tok::Offset)
    }

    /// The format as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn parse(&self, s: &str) -> Option<Parts> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut p = Parts::default();
        let mut toks = &self.toks[..];
        // An ISO date or date-time with every digit there is read in one step: what the tokens would
        // read, since they take two digits where two are there (the token loop was most of a
        // timestamp cast's instructions). Any other shape goes through the tokens from the start.
        if self.fixed > 0 {
            if let Some((q, end)) = fixed_width(b, self.fixed, &self.toks) {
                p = q;
                i = end;
                toks = &self.toks[self.fixed..];
            }
        }
        for t in toks {
            match t {
                Tok::Lit(c) if c.is_ascii() => {
                    if b.get(i) != Some(&(*c as u8)) {
                        return None;
                    }
                    i += 1;
                }
                Tok::Lit(c) => {
                    let mut buf = [0; 4];
                    let lit = c.encode_utf8(&mut buf).as_bytes();
                    if !b[i..].starts_with(lit) {
                        return None;
                    }
                    i += lit.len();
                }
                Tok::Year4 => p.year = Some(four(b, &mut i)? as i16),
                Tok::Year2 => {
                    // POSIX pivot: 69-99 are 1969-1999, 00-68 are 2000-2068.
                    let y = two_digits(b, &mut i)? as i16;
                    p.year = Some(if y >= 69 { 1900 + y } else { 2000 + y });
                }
                Tok::Month => p.month = Some(one_or_two(b, &mut i)? as i8),
                Tok::Day => p.day = Some(one_or_two(b, &mut i)? as i8),
                Tok::Hour24 => p.hour = Some(one_or_two(b, &mut i)? as i8),
                Tok::Hour12 => {
                    let h = one_or_two(b, &mut i)?;
                    if !(1..=12).contains(&h) {
                        return None;
                    }
                    p.hour = Some(h as i8);
                }
                Tok::Minute => p.minute = two_digits(b, &mut i)? as i8,
                Tok::Second => p.second = two_digits(b, &mut i)? as i8,
                Tok::Frac { optional } => {
                    if *optional {
                        if b.get(i) != Some(&b'.') {
                            continue;
                        }
                        i += 1;
                    }
                    let start = i;
                    let v = digits(b, &mut i, 1, 9)?;
                    let n = i - start;
                    p.nano = (v * 10u32.pow(9 - n as u32)) as i32;
                }
                Tok::AmPm => {
                    let word = b.get(i..i + 2)?;
                    p.pm = Some(if word.eq_ignore_ascii_case(b"am") {
                        false
                    } else if word.eq_ignore_ascii_case(b"pm") {
                        true
                    } else {
                        return None;
                    });
                    i += 2;
                }
                Tok::MonthAbbr | Tok::MonthName => {
                    let rest = &s[i..];
                    let mut found = None;
                    for (n, name) in MONTHS.iter().enumerate() {
                        let want = if *t == Tok::MonthAbbr {
                            &name[..3]
                        } else {
                            name
                        };
                        if rest.len() >= want.len()
                            && rest.as_bytes()[..want.len()].eq_ignore_ascii_case(want.as_bytes())
                        {
                            found = Some((n as i8 + 1, want.len()));
                            break;
                        }
                    }
                    let (m, len) = found?;
                    p.month = Some(m);
                    i += len;
                }
                Tok::Offset => p.offset = Some(offset(b, &mut i)?),
            }
        }
        (i == b.len()).then_some(p)
    }
}

/// Reads the first `n` tokens of a format (5: `%Y-%m-%d`, 11: that, a separator and `%H:%M:%S`) from
/// a value that has every digit: the parts and where they end, or None for any other shape.
fn fixed_width(b: &[u8], n: usize, toks: &[Tok]) -> Option<(Parts, usize)> {
    let at = |i: usize, c: u8| (b.get(i) == Some(&c)).then_some(());
    let two = |i: usize| two_digits(b, &mut { i });
    let mut p = Parts {
        year: Some(four(b, &mut 0)? as i16),
        month: Some(two(5)? as i8),
        day: Some(two(8)? as i8),
        ..Parts::default()
    };
    at(4, b'-')?;
    at(7, b'-')?;
    if n == 5 {
        return Some((p, 10));
    }
    let Tok::Lit(sep) = toks[5] else { return None };
    at(10, sep as u8)?;
    p.hour = Some(two(11)? as i8);
    at(13, b':')?;
    p.minute = two(14)? as i8;
    at(16, b':')?;
    p.second = two(17)? as i8;
    Some((p, 19))
}

/// Whether `b` is a real date written `YYYY-MM-DD` with every digit there (years 0000 to 9999).
fn is_iso_date(b: &[u8]) -> bool {
    match fixed_width(b, 5, &ISO_DATE) {
        Some((
            Parts {
                year: Some(y),
                month: Some(m),
                day: Some(d),
                ..
            },
            10,
        )) => b.len() == 10 && real_date(y, m, d),
        _ => false,
    }
}

/// Whether month `m` of year `y` has a day `d`.
fn real_date(y: i16, m: i8, d: i8) -> bool {
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// The value of an ASCII digit, if `c` is one.
#[inline(always)]
fn digit(c: u8) -> Option<u32> {
    let d = c.wrapping_sub(b'0');
    (d <= 9).then_some(u32::from(d))
}

/// Reads exactly two ASCII digits: [`digits`] with both bounds 2, without its loop (the fields of most
/// formats have fixed widths, and the general loop was a fifth of a date cast's instructions).
#[inline(always)]
fn two_digits(b: &[u8], i: &mut usize) -> Option<u32> {
    let v = digit(*b.get(*i)?)? * 10 + digit(*b.get(*i + 1)?)?;
    *i += 2;
    Some(v)
}

/// Reads exactly four ASCII digits.
#[inline(always)]
fn four(b: &[u8], i: &mut usize) -> Option<u32> {
    Some(two_digits(b, i)? * 100 + two_digits(b, i)?)
}

/// Reads one ASCII digit, and a second if one follows: [`digits`] from 1 to 2.
#[inline(always)]
fn one_or_two(b: &[u8], i: &mut usize) -> Option<u32> {
    let first = digit(*b.get(*i)?)?;
    match b.get(*i + 1).and_then(|&c| digit(c)) {
        Some(second) => {
            *i += 2;
            Some(first * 10 + second)
        }
        None => {
            *i += 1;
            Some(first)
        }
    }
}

/// Reads between `min` and `max` ASCII digits.
fn digits(b: &[u8], i: &mut usize, min: usize, max: usize) -> Option<u32> {
    let mut v = 0u32;
    let start = *i;
    while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
        v = v * 10 + u32::from(b[*i] - b'0');
        *i += 1;
    }
    (*i - start >= min).then_some(v)
}

/// Reads `Z`, `UTC`, `GMT`, `+HH`, `+HHMM` or `+HH:MM`, as seconds east of UTC.
fn offset(b: &[u8], i: &mut usize) -> Option<i32> {
    let rest = &b[*i..];
    if rest.first().is_some_and(|c| *c == b'Z' || *c == b'z') {
        *i += 1;
        return Some(0);
    }
    if rest.len() >= 3
        && (rest[..3].eq_ignore_ascii_case(b"UTC") || rest[..3].eq_ignore_ascii_case(b"GMT"))
    {
        *i += 3;
        return Some(0);
    }
    let sign = match rest.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    *i += 1;
    let h = two_digits(b, i)?;
    let mut m = 0;
    if b.get(*i) == Some(&b':') {
        *i += 1;
        m = two_digits(b, i)?;
    } else if b.get(*i).is_some_and(u8::is_ascii_digit) {
        m = two_digits(b, i)?;
    }
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h as i32 * 3600 + m as i32 * 60))
}

/// Which temporal type a cast produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

/// A compiled temporal cast: formats tried in order, and the zone rules for naive timestamptz values.
#[derive(Debug, Clone)]
pub struct TemporalCast {
    kind: Kind,
    formats: Vec<Format>,
    zone: Option<TimeZone>,
    ambiguous: Ambiguous,
    /// A date cast whose first format is `%Y-%m-%d`: a value of that exact shape is its own ISO output.
    iso_date: bool,
}

impl TemporalCast {
    /// Default input formats of each kind, used when a field gives none.
    pub fn default_formats(kind: Kind) -> &'static [&'static str] {
        match kind {
            Kind::Date => &["%Y-%m-%d"],
            Kind::Time => &["%H:%M:%S%.f", "%H:%M"],
            Kind::Timestamp => &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d"],
            Kind::TimestampTz => &["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"],
        }
    }

    /// Compiles the cast, checking each format can produce the kind. Errors name the format at fault.
    pub fn compile(
        kind: Kind,
        formats: &[String],
        timezone: Option<&str>,
        ambiguous: Ambiguous,
    ) -> Result<TemporalCast, Vec<String>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for f in formats {
            match Format::compile(f) {
                Ok(c) => {
                    let ok = match kind {
                        Kind::Date => c.has_date() && !c.has_time(),
                        Kind::Time => c.has_time() && !c.has_date(),
                        Kind::Timestamp | Kind::TimestampTz => c.has_date(),
                    };
                    if !ok {
                        let need = match kind {
                            Kind::Date => "a year, a month and a day, and no time",
                            Kind::Time => "an hour and no date",
                            _ => "a year, a month and a day",
                        };
                        errors.push(format!("format {f:?} does not read {need}"));
                    } else if kind == Kind::Timestamp && c.has_offset() {
                        errors.push(format!(
                            "format {f:?} reads an offset, which a timestamp (without time zone) would drop; use timestamptz"
                        ));
                    } else {
                        compiled.push(c);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let zone = match timezone {
            Some(name) => match TimeZone::get(name) {
                Ok(z) => Some(z),
                Err(_) => {
                    errors.push(format!("unknown time zone {name:?} (expected an IANA name such as \"Europe/Paris\")"));
                    None
                }
            },
            None => None,
        };
        if kind == Kind::TimestampTz && timezone.is_none() {
            for f in &compiled {
                if !f.has_offset() {
                    errors.push(format!(
                        "format {:?} reads no offset (%z), so timestamptz needs `timezone` to place it",
                        f.source
                    ));
                }
            }
        }
        if errors.is_empty() {
            let iso_date =
                kind == Kind::Date && compiled.first().is_some_and(|f| f.toks == ISO_DATE);
            Ok(TemporalCast {
                kind,
                formats: compiled,
                zone,
                ambiguous,
                iso_date,
            })
        } else {
            Err(errors)
        }
    }

    /// Casts one value, writing ISO 8601 (timestamptz in UTC, with `Z`).
    pub fn cast(&self, s: &str, out: &mut String) -> Result<(), String> {
        let t = crate::cast::trim(s);
        if self.iso_date && is_iso_date(t.as_bytes()) {
            // What the first format reads and `write_date` writes back, byte for byte: ISO dates are
            // the most common input, and this skips the format's general reader (a tenth of a typed
            // CSV run's instructions went to date and time casts).
            out.push_str(t);
            return Ok(());
        }
        let mut last_err = None;
        for f in &self.formats {
            let Some(p) = f.parse(t) else { continue };
            if let Err(e) = self.build(&p) {
                last_err = Some(e);
                continue;
            }
            return self.write(&p, s, out);
        }
        let tried: Vec<&str> = self.formats.iter().map(|f| f.source.as_str()).collect();
        Err(match last_err {
            Some(e) => format!("{s:?} is not a valid {}: {e}", self.kind_name()),
            None => format!(
                "expected a {} in format {}, got {s:?}",
                self.kind_name(),
                tried.join(" or ")
            ),
        })
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Date => "date",
            Kind::Time => "time",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamptz",
        }
    }

    fn hour(p: &Parts) -> i8 {
        match (p.hour, p.pm) {
            (Some(12), Some(false)) => 0,
            (Some(h), Some(true)) if h < 12 => h + 12,
            (Some(h), _) => h,
            (None, _) => 0,
        }
    }

    /// Checks the parts make a real date and time: what jiff's `Date::new` and `Time::new` check (the
    /// formats read years 0 to 9999 only), without building them, which cost more than the parse.
    fn build(&self, p: &Parts) -> Result<(), String> {
        if let (Some(y), Some(m), Some(d)) = (p.year, p.month, p.day) {
            if !real_date(y, m, d) {
                return Err(format!("no day {d} in month {m} of {y}"));
            }
        }
        let h = Self::hour(p);
        if !((0..24).contains(&h)
            && (0..60).contains(&p.minute)
            && (0..60).contains(&p.second)
            && (0..1_000_000_000).contains(&p.nano))
        {
            return Err("hour, minute or second out of range".to_string());
        }
        Ok(())
    }

    fn write(&self, p: &Parts, raw: &str, out: &mut String) -> Result<(), String> {
        let hour = Self::hour(p);
        match self.kind {
            Kind::Date => {
                write_date(
                    out,
                    p.year.unwrap_or(0),
                    p.month.unwrap_or(1),
                    p.day.unwrap_or(1),
                );
            }
            Kind::Time => write_time(out, hour, p.minute, p.second, p.nano),
            Kind::Timestamp => {
                write_date(
                    out,
                    p.year.unwrap_or(0),
                    p.month.unwrap_or(1),
                    p.day.unwrap_or(1),
                );
                out.push('T');
                write_time(out, hour, p.minute, p.second, p.nano);
            }
            Kind::TimestampTz => {
                if let (Some(secs), Some(y)) = (p.offset, p.year.filter(|y| (1..=9998).contains(y)))
                {
                    // A fixed offset within these years: the UTC time is integer arithmetic on days
                    // and seconds, which costs a tenth of going through jiff's timestamps (the result
                    // is the same: `fixed_offset_matches_jiff`).
                    let (y, m, d, sod) = utc_of(
                        y,
                        p.month.unwrap_or(1),
                        p.day.unwrap_or(1),
                        i64::from(hour) * 3600 + i64::from(p.minute) * 60 + i64::from(p.second),
                        secs,
                    );
                    write_date(out, y, m, d);
                    out.push('T');
                    write_time(
                        out,
                        (sod / 3600) as i8,
                        (sod / 60 % 60) as i8,
                        (sod % 60) as i8,
                        p.nano,
                    );
                    out.push('Z');
                    return Ok(());
                }
                let dt = DateTime::new(
                    p.year.unwrap_or(0),
                    p.month.unwrap_or(1),
                    p.day.unwrap_or(1),
                    hour,
                    p.minute,
                    p.second,
                    p.nano,
                )
                .map_err(|e| format!("{raw:?} is not a valid timestamp: {e}"))?;
                let ts = match (p.offset, &self.zone) {
                    (Some(secs), _) => Offset::from_seconds(secs)
                        .and_then(|o| o.to_timestamp(dt))
                        .map_err(|e| format!("{raw:?} is out of range: {e}"))?,
                    (None, Some(zone)) => {
                        let amb = zone.to_ambiguous_timestamp(dt);
                        let r = match self.ambiguous {
                            Ambiguous::Reject => amb.unambiguous(),
                            Ambiguous::Earlier => amb.earlier(),
                            Ambiguous::Later => amb.later(),
                            Ambiguous::Compatible => amb.compatible(),
                        };
                        r.map_err(|_| {
                            format!(
                                "{raw:?} does not exist or exists twice in time zone {} (a DST change); set ambiguous = \"earlier\", \"later\" or \"compatible\" to accept it",
                                zone.iana_name().unwrap_or("?")
                            )
                        })?
                    }
                    (None, None) => {
                        return Err(format!(
                            "{raw:?} has no offset and the field has no timezone"
                        ))
                    }
                };
                let utc = Offset::UTC.to_datetime(ts);
                write_date(out, utc.year(), utc.month(), utc.day());
                out.push('T');
                write_time(
                    out,
                    utc.hour(),
                    utc.minute(),
                    utc.second(),
                    utc.subsec_nanosecond(),
                );
                out.push('Z');
            }
        }
        Ok(())
    }
}

/// Whether `y` is a leap year (proleptic Gregorian).
fn leap(y: i16) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Days in month `m` (1 to 12) of year `y`.
fn days_in_month(y: i16, m: i8) -> i8 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The UTC date and second of the day of a valid civil date and second of the day (below 86,400) at
/// `offset` seconds east of UTC (less than a day either way; proleptic Gregorian). An offset moves the
/// date by a day at most, so the day is stepped rather than converted to a day count and back (two
/// divisions by 146,097 and more).
fn utc_of(y: i16, m: i8, d: i8, second_of_day: i64, offset: i32) -> (i16, i8, i8, i64) {
    let t = second_of_day - i64::from(offset);
    if t < 0 {
        let (y, m, d) = match (m, d) {
            (1, 1) => (y - 1, 12, 31),
            (m, 1) => (y, m - 1, days_in_month(y, m - 1)),
            (m, d) => (y, m, d - 1),
        };
        (y, m, d, t + 86_400)
    } else if t >= 86_400 {
        let (y, m, d) = match (m, d) {
            (12, 31) => (y + 1, 1, 1),
            (m, d) if d == days_in_month(y, m) => (y, m + 1, 1),
            (m, d) => (y, m, d + 1),
        };
        (y, m, d, t - 86_400)
    } else {
        (y, m, d, t)
    }
}

/// Appends ASCII bytes.
fn push_ascii(out: &mut String, b: &[u8]) {
    debug_assert!(b.is_ascii());
    // SAFETY: callers pass ASCII digits and separators only, and ASCII is UTF-8.
    out.push_str(unsafe { std::str::from_utf8_unchecked(b) });
}

fn write_date(out: &mut String, y: i16, m: i8, d: i8) {
    if (0..=9999).contains(&y) && (0..=99).contains(&m) && (0..=99).contains(&d) {
        // The usual case, in one fixed-size piece: `Digits` took 160 instructions a date.
        let (c, yy, mm, dd) = (
            two(y as u32 / 100),
            two(y as u32 % 100),
            two(m as u32),
            two(d as u32),
        );
        push_ascii(
            out,
            &[
                c[0], c[1], yy[0], yy[1], b'-', mm[0], mm[1], b'-', dd[0], dd[1],
            ],
        );
        return;
    }
    if y < 0 {
        out.push('-');
    }
    // Formatting machinery costs more than the rest of a date cast: the digits go into a stack buffer
    // and from there into `out` in one piece.
    let mut buf = Digits::default();
    buf.push(u32::from(y.unsigned_abs()), 4);
    buf.lit(b'-');
    buf.push(m as u32, 2);
    buf.lit(b'-');
    buf.push(d as u32, 2);
    out.push_str(buf.text());
}

/// Writes `HH:MM:SS` and, when not zero, the fraction without trailing zeros.
fn write_time(out: &mut String, h: i8, m: i8, s: i8, nano: i32) {
    if nano == 0 && [h, m, s].iter().all(|v| (0..=99).contains(v)) {
        let (h, m, s) = (two(h as u32), two(m as u32), two(s as u32));
        push_ascii(out, &[h[0], h[1], b':', m[0], m[1], b':', s[0], s[1]]);
        return;
    }
    let mut buf = Digits::default();
    buf.push(h as u32, 2);
    buf.lit(b':');
    buf.push(m as u32, 2);
    buf.lit(b':');
    buf.push(s as u32, 2);
    if nano > 0 {
        let mut nano = nano as u32;
        let mut width = 9;
        while nano.is_multiple_of(10) {
            nano /= 10;
            width -= 1;
        }
        buf.lit(b'.');
        buf.push(nano, width);
    }
    out.push_str(buf.text());
}

/// The two ASCII digits of `v` (below 100).
fn two(v: u32) -> [u8; 2] {
    [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]
}

/// ASCII digits and separators of one date or time, at most 32 bytes.
#[derive(Default)]
struct Digits {
    buf: [u8; 32],
    len: usize,
}

impl Digits {
    fn lit(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends `v` in decimal, zero-padded to `width` digits (more if `v` needs them).
    fn push(&mut self, v: u32, width: usize) {
        // Months, days, hours, minutes, seconds and most years have a fixed width: written directly.
        match (width, v) {
            (2, 0..=99) => {
                self.buf[self.len..self.len + 2].copy_from_slice(&two(v));
                self.len += 2;
            }
            (4, 0..=9999) => {
                let (hi, lo) = (two(v / 100), two(v % 100));
                self.buf[self.len..self.len + 4].copy_from_slice(&[hi[0], hi[1], lo[0], lo[1]]);
                self.len += 4;
            }
            _ => {
                let mut n = 1;
                while n < 10 && v >= 10u32.pow(n as u32) {
                    n += 1;
                }
                let n = n.max(width);
                let mut v = v;
                for k in (0..n).rev() {
                    self.buf[self.len + k] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
                self.len += n;
            }
        }
    }

    fn text(&self) -> &str {
        let b = &self.buf[..self.len];
        debug_assert!(b.is_ascii());
        // SAFETY: only ASCII digits (`push`) and ASCII separators (`lit`) are ever written, and ASCII
        // is UTF-8. The checked conversion was 1.2 % of a typed run's instructions.
        unsafe { std::str::from_utf8_unchecked(b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{Date, Time};

    /// The checks of `build` against jiff's, on every month and day a format can read (two digits
    /// each), in leap, century and ordinary years, and on times out of range by one.
    #[test]
    fn date_and_time_checks_match_jiff() {
        let c = TemporalCast::compile(Kind::Timestamp, &["%F".into()], None, Ambiguous::Reject)
            .expect("a format");
        for y in [0, 1, 4, 100, 1900, 1999, 2000, 2024, 2100, 9999] {
            for m in 0..=99 {
                for d in 0..=99 {
                    let p = Parts {
                        year: Some(y),
                        month: Some(m),
                        day: Some(d),
                        ..Parts::default()
                    };
                    assert_eq!(
                        c.build(&p).is_ok(),
                        Date::new(y, m, d).is_ok(),
                        "{y}-{m}-{d}"
                    );
                }
            }
        }
        for (h, mi, s, n) in [
            (23, 59, 59, 999_999_999),
            (24, 0, 0, 0),
            (0, 60, 0, 0),
            (0, 0, 60, 0),
            (99, 99, 99, 0),
        ] {
            let p = Parts {
                hour: Some(h),
                minute: mi,
                second: s,
                nano: n,
                ..Parts::default()
            };
            assert_eq!(
                c.build(&p).is_ok(),
                Time::new(h, mi, s, n).is_ok(),
                "{h}:{mi}:{s}.{n}"
            );
        }
    }

    fn cast(
        kind: Kind,
        formats: &[&str],
        tz: Option<&str>,
        amb: Ambiguous,
        s: &str,
    ) -> Result<String, String> {
        let f: Vec<String> = formats.iter().map(|s| s.to_string()).collect();
        let c = TemporalCast::compile(kind, &f, tz, amb).map_err(|e| e.join("; "))?;
        let mut out = String::new();
        c.cast(s, &mut out).map(|()| out)
    }

    #[test]
    fn dates_in_several_formats() {
        let f = ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d %b %Y", "%B %e, %Y"];
        let d = |s| cast(Kind::Date, &f, None, Ambiguous::Reject, s);
        assert_eq!(d("2024-02-29"), Ok("2024-02-29".into()));
        assert_eq!(d("1/5/2024"), Ok("2024-01-05".into()));
        assert_eq!(d("31.12.1999"), Ok("1999-12-31".into()));
        assert_eq!(d("7 Mar 2021"), Ok("2021-03-07".into()));
        assert_eq!(d("March 7, 2021"), Ok("2021-03-07".into()));
        assert!(d("2023-02-29").unwrap_err().contains("no day 29"));
        assert!(d("2023-13-01").is_err());
        assert!(d("2023-01-01x").is_err());
        assert!(d("").is_err());
        assert_eq!(
            cast(Kind::Date, &["%y%m%d"], None, Ambiguous::Reject, "690101"),
            Ok("1969-01-01".into())
        );
    }

    #[test]
    fn times_and_twelve_hour_clocks() {
        let t = |f: &[&str], s| cast(Kind::Time, f, None, Ambiguous::Reject, s);
        assert_eq!(
            t(&["%H:%M:%S%.f"], "23:59:59.120"),
            Ok("23:59:59.12".into())
        );
        assert_eq!(t(&["%I:%M %p"], "12:05 AM"), Ok("00:05:00".into()));
        assert_eq!(t(&["%I:%M %p"], "1:05 pm"), Ok("13:05:00".into()));
        assert!(t(&["%H:%M"], "24:00").is_err());
        assert!(
            TemporalCast::compile(Kind::Time, &["%I:%M".into()], None, Ambiguous::Reject).is_err()
        );
    }

    #[test]
    fn timestamptz_with_offsets_and_zones() {
        let f = ["%Y-%m-%dT%H:%M:%S%.f%z"];
        let z = |s| cast(Kind::TimestampTz, &f, None, Ambiguous::Reject, s);
        assert_eq!(
            z("2024-03-10T08:30:00+02:00"),
            Ok("2024-03-10T06:30:00Z".into())
        );
        assert_eq!(
            z("2024-03-10T08:30:00.5-0130"),
            Ok("2024-03-10T10:00:00.5Z".into())
        );
        assert_eq!(z("2024-03-10T08:30:00Z"), Ok("2024-03-10T08:30:00Z".into()));
        let ny = |amb, s| {
            cast(
                Kind::TimestampTz,
                &["%m/%d/%Y %I:%M %p"],
                Some("America/New_York"),
                amb,
                s,
            )
        };
        assert_eq!(
            ny(Ambiguous::Reject, "1/15/2024 9:00 AM"),
            Ok("2024-01-15T14:00:00Z".into())
        );
        // 2:30 on 2024-03-10 does not exist in New York: refused unless asked.
        assert!(ny(Ambiguous::Reject, "3/10/2024 2:30 AM")
            .unwrap_err()
            .contains("DST"));
        assert_eq!(
            ny(Ambiguous::Compatible, "3/10/2024 2:30 AM"),
            Ok("2024-03-10T07:30:00Z".into())
        );
        // 1:30 on 2024-11-03 exists twice.
        assert!(ny(Ambiguous::Reject, "11/3/2024 1:30 AM").is_err());
        assert_eq!(
            ny(Ambiguous::Earlier, "11/3/2024 1:30 AM"),
            Ok("2024-11-03T05:30:00Z".into())
        );
        assert_eq!(
            ny(Ambiguous::Later, "11/3/2024 1:30 AM"),
            Ok("2024-11-03T06:30:00Z".into())
        );
    }

    /// The shortcut for ISO dates gives what the format's reader gives, output or error, on valid and
    /// invalid dates and on near misses of the shape.
    #[test]
    fn iso_dates_take_a_shortcut_to_the_same_result() {
        let fast =
            TemporalCast::compile(Kind::Date, &["%Y-%m-%d".into()], None, Ambiguous::Earlier)
                .unwrap();
        assert!(fast.iso_date);
        let general = TemporalCast {
            iso_date: false,
            ..fast.clone()
        };
        let mut inputs: Vec<String> = [
            "0000-01-01",
            "9999-12-31",
            "2023-02-29",
            "2024-02-29",
            "1900-02-29",
            "2000-02-29",
            "2024-00-10",
            "2024-13-01",
            "2024-04-31",
            "2024-04-00",
            " 2024-04-30 ",
            "2024-1-05",
            "2024-01-5",
            "2024/01/05",
            "2024-01-05T",
            "202a-01-05",
            "",
            "-2024-01-05",
            "２024-01-05",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut day = jiff::civil::date(1999, 12, 25);
        while day.year() < 2001 {
            inputs.push(day.to_string());
            day = day.tomorrow().unwrap();
        }
        for input in &inputs {
            let (mut a, mut b) = (String::new(), String::new());
            let (ra, rb) = (fast.cast(input, &mut a), general.cast(input, &mut b));
            assert_eq!((ra, a), (rb, b), "{input:?}");
        }
    }

    /// Formats that start with an ISO date or date-time read every value as their tokens alone do:
    /// full-width values in one step, others (one-digit fields, other shapes) through the tokens.
    #[test]
    fn fixed_width_starts_read_what_the_tokens_read() {
        let formats = [
            "%Y-%m-%d",
            "%Y-%m-%dT%H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M:%S",
            "%FT%T",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %I:%M:%S %p",
        ];
        let inputs = [
            "2024-02-29",
            "2024-2-29",
            "2024-02-9",
            "2024-02-29T13:14:15.5+0100",
            "2024-02-29T13:14:15Z",
            "2024-02-29T3:14:15Z",
            "2024-02-29 13:14:15",
            "2024-02-29 13:14",
            "2024-02-29T13:14",
            "2024-02-29T13:14:15",
            "2024-02-29 01:14:15 PM",
            "2024-02-29T13:1:15Z",
            "2024-02-29X13:14:15Z",
            "2024-02-29T13:14:15.123456789-08:00",
            "2024-02-29T24:00:00Z",
            "",
            "2024",
            "2024-02-29T",
            "20240229",
            "2024-02-29T13:14:15.Z",
        ];
        for f in formats {
            let fast = Format::compile(f).unwrap();
            assert!(fast.fixed > 0, "{f}");
            let general = Format {
                fixed: 0,
                ..fast.clone()
            };
            for input in inputs {
                let (a, b) = (fast.parse(input), general.parse(input));
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{f} on {input:?}");
            }
        }
        assert_eq!(Format::compile("%m/%d/%Y").unwrap().fixed, 0);
        assert_eq!(Format::compile("%Y-%m-%dT%H").unwrap().fixed, 5);
    }

    /// The fixed-width digit readers read what the general one reads with the same bounds, and stop at
    /// the same place, on every string of up to five bytes from digits and other characters.
    #[test]
    fn fixed_digit_readers_match_the_general_one() {
        let alphabet = b"059/a";
        let mut strings: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = strings
                .iter()
                .filter(|s| s.len() == strings.last().map_or(0, Vec::len))
                .flat_map(|s| alphabet.iter().map(move |&c| [s.clone(), vec![c]].concat()))
                .collect();
            strings.extend(longer);
        }
        assert_eq!(strings.len(), 1 + 5 + 25 + 125 + 625 + 3125);
        type Reader = fn(&[u8], &mut usize) -> Option<u32>;
        let readers: [(Reader, usize, usize); 3] =
            [(two_digits, 2, 2), (four, 4, 4), (one_or_two, 1, 2)];
        for s in &strings {
            for start in 0..=s.len() {
                for (read, min, max) in readers {
                    let (mut a, mut b) = (start, start);
                    let fast = read(s, &mut a);
                    let general = digits(s, &mut b, min, max);
                    assert_eq!(fast, general, "{s:?} from {start}, {min}..{max}");
                    if fast.is_some() {
                        assert_eq!(a, b, "{s:?} from {start}, {min}..{max}");
                    }
                }
            }
        }
    }

    /// The fixed-offset arithmetic against jiff's timestamps, over years, offsets and times of day
    /// that carry into other days, months and years (leap days and century years included).
    #[test]
    fn fixed_offset_matches_jiff() {
        let mut rng = crate::testing::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = |n: u64| rng.below(n);
        let edges = [
            (1, 1, 1),
            (1600, 2, 29),
            (1900, 2, 28),
            (2000, 2, 29),
            (2000, 12, 31),
        ];
        for k in 0..200_000 {
            let (y, m, d) = match edges.get(k % 50) {
                Some(&e) => e,
                None => (
                    1 + next(9998) as i16,
                    1 + next(12) as i8,
                    1 + next(31) as i8,
                ),
            };
            let Ok(date) = Date::new(y, m, d) else {
                continue;
            };
            let (h, mi, s) = (next(24) as i8, next(60) as i8, next(60) as i8);
            let offset = (next(2 * 86_340 + 1) as i32 - 86_340) / 60 * 60;
            let dt = date.to_datetime(Time::new(h, mi, s, 0).unwrap());
            let want = Offset::UTC.to_datetime(
                Offset::from_seconds(offset)
                    .unwrap()
                    .to_timestamp(dt)
                    .unwrap(),
            );
            let sod = i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
            let got = utc_of(y, m, d, sod, offset);
            let want_sod = i64::from(want.hour()) * 3600
                + i64::from(want.minute()) * 60
                + i64::from(want.second());
            assert_eq!(
                got,
                (want.year(), want.month(), want.day(), want_sod),
                "{dt} at offset {offset}"
            );
        }
        // The years at the ends of the range go through jiff, and out of range is refused as before.
        let f = ["%Y-%m-%dT%H:%M:%S%z"];
        let z = |s| cast(Kind::TimestampTz, &f, None, Ambiguous::Reject, s);
        // jiff's timestamps end at 9999-12-30T22:00:00Z.
        assert_eq!(
            z("9999-06-30T10:00:00+05:00"),
            Ok("9999-06-30T05:00:00Z".into())
        );
        assert!(z("9999-12-31T10:00:00+05:00").is_err());
        assert_eq!(
            z("0001-01-01T00:30:00+01:00"),
            Ok("0000-12-31T23:30:00Z".into())
        );
    }

    #[test]
    fn dates_and_times_are_written_zero_padded() {
        let mut out = String::new();
        write_date(&mut out, 12, 1, 2);
        out.push(' ');
        write_date(&mut out, -44, 3, 15);
        out.push(' ');
        write_time(&mut out, 0, 5, 9, 1);
        out.push(' ');
        write_time(&mut out, 23, 59, 59, 120_000_000);
        assert_eq!(out, "0012-01-02 -0044-03-15 00:05:09.000000001 23:59:59.12");
    }

    #[test]
    fn spec_errors_for_formats() {
        let e = TemporalCast::compile(
            Kind::TimestampTz,
            &["%Y-%m-%d %H:%M".into()],
            None,
            Ambiguous::Reject,
        )
        .unwrap_err();
        assert!(e[0].contains("needs `timezone`"), "{e:?}");
        let e = TemporalCast::compile(Kind::Date, &["%Y-%q".into()], None, Ambiguous::Reject)
            .unwrap_err();
        assert!(e[0].contains("%q"), "{e:?}");
        let e = TemporalCast::compile(
            Kind::Date,
            &["%Y".into()],
            Some("Mars/Olympus"),
            Ambiguous::Reject,
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        let e = TemporalCast::compile(
            Kind::Timestamp,
            &["%FT%T%z".into()],
            None,
            Ambiguous::Reject,
        )
        .unwrap_err();
        assert!(e[0].contains("timestamptz"), "{e:?}");
    }
}
