//! The canonical value texts that the mapping stage writes (ISO dates and times, plain decimals), read
//! back into numbers for the binary formats: PostgreSQL's binary COPY, Parquet and Arrow. The texts have
//! fixed shapes, so these are byte scans, not general parsers; a text of another shape gives None.

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian; H. Hinnant's days_from_civil).
pub fn unix_days(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Some(days_from_civil(
        digits(&b[0..4])?,
        digits(&b[5..7])?,
        digits(&b[8..10])?,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a count of days since 1970-01-01 (H. Hinnant's civil_from_days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The number written by ASCII digits.
pub fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |a, &c| {
        c.is_ascii_digit().then(|| a * 10 + i64::from(c - b'0'))
    })
}

/// Nanoseconds of `HH:MM:SS[.fraction]` (up to nine fraction digits, as the mapping writes them).
pub fn nanos_of_day(s: &str) -> Option<i64> {
    let (whole, frac) = clock(s)?;
    let mut ns = 0i64;
    for k in 0..9 {
        ns = ns * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
    }
    if frac.len() > 9 {
        return None;
    }
    Some(whole * 1_000_000_000 + ns)
}

/// Microseconds of `HH:MM:SS[.fraction]`; digits past the sixth round half up, as PostgreSQL's text
/// input does.
pub fn micros_of_day(s: &str) -> Option<i64> {
    let (whole, frac) = clock(s)?;
    let mut us = 0i64;
    for k in 0..6 {
        us = us * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
    }
    if frac.get(6).is_some_and(|c| *c >= b'5') {
        us += 1;
    }
    Some(whole * 1_000_000 + us)
}

/// Whole seconds of `HH:MM:SS` and the fraction's digits (checked to be digits).
fn clock(s: &str) -> Option<(i64, &[u8])> {
    let b = s.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    let frac = match b.get(8) {
        None => &[][..],
        Some(b'.') => &b[9..],
        Some(_) => return None,
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(((h * 60 + m) * 60 + sec, frac))
}

/// Microseconds since 1970-01-01T00:00:00 of `YYYY-MM-DDTHH:MM:SS[.f]`, with or without a final `Z`
/// (timestamptz texts are always written in UTC).
pub fn unix_micros(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    // A date is ten bytes (`unix_days` takes no other length), so the `T` can only be the eleventh:
    // looking there rather than searching for it was a fifth of this function.
    let (d, t) = (s.get(..10)?, s.get(10..)?.strip_prefix('T')?);
    Some(unix_days(d)? * 86_400_000_000 + micros_of_day(t)?)
}

/// The unscaled integer of a decimal text `-?digits[.digits]` whose fraction has exactly `scale`
/// digits (as the decimal cast writes it): `-12.50` at scale 2 is -1250.
pub fn decimal_mantissa(s: &str, scale: u8) -> Option<i128> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    // The point, if any, is where the scale puts it: no search for it.
    let (int, frac) = match usize::from(scale) {
        0 => (s.strip_suffix('.').unwrap_or(s), ""),
        n => {
            let at = s.len().checked_sub(n + 1)?;
            (s.get(..at)?, s.get(at..)?.strip_prefix('.')?)
        }
    };
    if int.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(unix_days("1970-01-01"), Some(0));
        assert_eq!(unix_days("1969-12-31"), Some(-1));
        assert_eq!(unix_days("2000-01-01"), Some(10_957));
        assert_eq!(unix_days("4000-12-31"), Some(741_807));
        assert_eq!(unix_days("2024-2-29"), None);
        assert_eq!(nanos_of_day("23:59:59.123456789"), Some(86_399_123_456_789));
        assert_eq!(nanos_of_day("00:00:01"), Some(1_000_000_000));
        assert_eq!(nanos_of_day("00:00:01.1234567891"), None);
        assert_eq!(micros_of_day("23:59:59.5"), Some(86_399_500_000));
        assert_eq!(micros_of_day("00:00:00.0000005"), Some(1));
        assert_eq!(micros_of_day("00:00:00.x"), None);
        assert_eq!(unix_micros("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(unix_micros("1969-12-31T23:59:59.999999"), Some(-1));
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal_mantissa("-12.50", 2), Some(-1250));
        assert_eq!(decimal_mantissa("0.00", 2), Some(0));
        assert_eq!(decimal_mantissa("7", 0), Some(7));
        assert_eq!(decimal_mantissa("7.5", 2), None);
        assert_eq!(
            decimal_mantissa("99999999999999999999999999999999.999999", 6),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(decimal_mantissa("1e5", 0), None);
        for (text, scale) in [
            ("12.", 0),
            ("1.2.", 0),
            (".", 0),
            ("1.2.3", 1),
            (".50", 2),
            ("1.5", 0),
        ] {
            let by_search = text.split_once('.').unwrap_or((text, ""));
            let want = (!by_search.0.is_empty() && by_search.1.len() == usize::from(scale))
                .then(|| {
                    format!("{}{}", by_search.0, by_search.1)
                        .parse::<i128>()
                        .ok()
                })
                .flatten();
            assert_eq!(
                decimal_mantissa(text, scale),
                want,
                "{text:?} at scale {scale}"
            );
        }
        assert_eq!(unix_micros("1970-01-01X00:00:01Z"), None);
        assert_eq!(unix_micros("1970-1-01T00:00:01Z"), None);
        assert_eq!(unix_micros("1970-01-01T"), None);
    }
}
