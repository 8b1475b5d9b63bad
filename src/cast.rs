//! Casts from source text to the normalized text of a typed value. Each cast writes its output into a
//! buffer it is handed (no allocation per value) and returns a message saying what was expected on failure.
//! Numbers never pass through a float unless the type is `float`.

use std::fmt::Write as _;

/// `s` without leading and trailing whitespace. Most values start and end with a visible ASCII
/// character, which no trim removes: they skip the search for Unicode whitespace.
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Options of the number casts, compiled once from a field's spec.
#[derive(Debug, Clone, Copy)]
pub struct NumberFormat {
    pub decimal_separator: char,
    pub thousands_separator: Option<char>,
}

impl Default for NumberFormat {
    fn default() -> Self {
        NumberFormat {
            decimal_separator: '.',
            thousands_separator: None,
        }
    }
}

/// A number split into its parts, before any range check.
struct Digits<'a> {
    negative: bool,
    int: std::borrow::Cow<'a, str>,
    frac: std::borrow::Cow<'a, str>,
    exponent: i32,
}

/// Splits `[+-]digits[.digits][e[+-]digits]`, dropping thousands separators that stand between digits.
fn split_number<'a>(s: &'a str, nf: &NumberFormat) -> Option<Digits<'a>> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    match plain_number(body, nf) {
        Some(d) => d.map(|(int, frac)| Digits {
            negative,
            int: std::borrow::Cow::Borrowed(int),
            frac: std::borrow::Cow::Borrowed(frac),
            exponent: 0,
        }),
        None => split_general(negative, body, nf),
    }
}

/// [`split_number`] of any number, after its sign.
fn split_general<'a>(negative: bool, body: &'a str, nf: &NumberFormat) -> Option<Digits<'a>> {
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = body[i + 1..].parse().ok()?;
            if !(-400..=400).contains(&e) {
                return None;
            }
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int, frac) = match mantissa.find(nf.decimal_separator) {
        Some(i) => (
            &mantissa[..i],
            &mantissa[i + nf.decimal_separator.len_utf8()..],
        ),
        None => (mantissa, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = match nf.thousands_separator {
        Some(sep) if int.contains(sep) => {
            // A separator must sit between digit groups: "1,234" yes, ",1" or "1,,2" no.
            let mut cleaned = String::with_capacity(int.len());
            let mut prev_digit = false;
            let mut chars = int.chars().peekable();
            while let Some(c) = chars.next() {
                if c == sep {
                    let next_digit = chars.peek().is_some_and(|n| n.is_ascii_digit());
                    if !prev_digit || !next_digit {
                        return None;
                    }
                    prev_digit = false;
                } else if c.is_ascii_digit() {
                    cleaned.push(c);
                    prev_digit = true;
                } else {
                    return None;
                }
            }
            std::borrow::Cow::Owned(cleaned)
        }
        _ => {
            if !int.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            std::borrow::Cow::Borrowed(int)
        }
    };
    Some(Digits {
        negative,
        int,
        frac: std::borrow::Cow::Borrowed(frac),
        exponent,
    })
}

/// Splits the common number, digits with at most one ASCII decimal separator and no exponent (and no
/// thousands separator defined), in one pass over its bytes: the general split's searches for the
/// exponent and the separators cost more than the rest of a decimal or float cast. Some(None) for no
/// digits at all; None for any other text, which the general split then reads (or refuses).
fn plain_number<'a>(body: &'a str, nf: &NumberFormat) -> Option<Option<(&'a str, &'a str)>> {
    let sep = nf.decimal_separator;
    // A separator that could be read as part of a number (a sign, `e`) takes the general path.
    if !sep.is_ascii_punctuation() || matches!(sep, '+' | '-') || nf.thousands_separator.is_some() {
        return None;
    }
    let b = body.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int_end = digits_from(0);
    let (frac_start, end) = match b.get(int_end) {
        Some(&c) if c == sep as u8 => (int_end + 1, digits_from(int_end + 1)),
        _ => (int_end, int_end),
    };
    if end != b.len() {
        return None;
    }
    let (int, frac) = (&body[..int_end], &body[frac_start..]);
    Some((!int.is_empty() || !frac.is_empty()).then_some((int, frac)))
}

/// `digits` without its leading zeros.
fn strip_leading_zeros(digits: &str) -> &str {
    &digits[digits.bytes().take_while(|&b| b == b'0').count()..]
}

/// `digits` without its trailing zeros.
fn strip_trailing_zeros(digits: &str) -> &str {
    &digits[..digits.len() - digits.bytes().rev().take_while(|&b| b == b'0').count()]
}

/// Casts to a 64-bit integer. A fraction of only zeros (`12.00`) is accepted, since nothing is lost.
pub fn integer(s: &str, nf: &NumberFormat, out: &mut String) -> Result<(), String> {
    let t = trim(s);
    let d = split_number(t, nf).filter(|d| d.exponent == 0 && !d.int.is_empty());
    let Some(d) = d else {
        return Err(format!("expected an integer, got {s:?}"));
    };
    if d.frac.bytes().any(|b| b != b'0') {
        return Err(format!(
            "expected an integer, got {s:?} (it has a fraction)"
        ));
    }
    let mut v: i64 = 0;
    for b in d.int.bytes() {
        let digit = i64::from(b - b'0');
        v = v
            .checked_mul(10)
            .and_then(|v| {
                if d.negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            })
            .ok_or_else(|| format!("integer {s:?} is out of the 64-bit range"))?;
    }
    let _ = write!(out, "{v}");
    Ok(())
}

/// Casts to decimal(precision, scale) exactly: the digits are moved, never converted through a float.
/// The output has exactly `scale` fraction digits.
pub fn decimal(
    s: &str,
    precision: u8,
    scale: u8,
    round: bool,
    nf: &NumberFormat,
    out: &mut String,
) -> Result<(), String> {
    let t = trim(s);
    let Some(d) = split_number(t, nf) else {
        return Err(format!("expected a decimal number, got {s:?}"));
    };
    if plain_decimal(&d, precision, scale, out) {
        return Ok(());
    }
    decimal_by_digits(s, d, precision, scale, round, out)
}

/// Writes a number without exponent whose fraction fits the scale and whose integer part fits the
/// precision, as [`decimal_by_digits`] does, without its digit vector: only zeros are added or dropped.
/// False (nothing written) for any other number, which takes the general path (and its errors).
fn plain_decimal(d: &Digits<'_>, precision: u8, scale: u8, out: &mut String) -> bool {
    let int = strip_leading_zeros(&d.int);
    if d.exponent != 0
        || d.frac.len() > usize::from(scale)
        || int.len() > usize::from(precision - scale)
    {
        return false;
    }
    if d.negative && !(int.is_empty() && d.frac.bytes().all(|b| b == b'0')) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if scale > 0 {
        out.push('.');
        out.push_str(&d.frac);
        for _ in d.frac.len()..usize::from(scale) {
            out.push('0');
        }
    }
    true
}

/// The general decimal cast: exponents, rounding (half to even) and the errors for digits that do not
/// fit.
fn decimal_by_digits(
    s: &str,
    d: Digits<'_>,
    precision: u8,
    scale: u8,
    round: bool,
    out: &mut String,
) -> Result<(), String> {
    // All digits in one string with the position of the point, shifted by the exponent.
    let mut digits: Vec<u8> = Vec::with_capacity(d.int.len() + d.frac.len() + 8);
    digits.extend(d.int.bytes().map(|b| b - b'0'));
    digits.extend(d.frac.bytes().map(|b| b - b'0'));
    let mut point = d.int.len() as i64 + i64::from(d.exponent);
    if point < 0 {
        let pad = (-point) as usize;
        digits.splice(0..0, std::iter::repeat_n(0, pad));
        point = 0;
    }
    let point = point as usize;
    if digits.len() < point {
        digits.resize(point, 0);
    }
    let scale_u = usize::from(scale);
    let frac_len = digits.len() - point;
    if frac_len > scale_u {
        let dropped = &digits[point + scale_u..];
        if dropped.iter().any(|&x| x != 0) {
            if !round {
                return Err(format!(
                    "{s:?} has {frac_len} digits after the point, more than the scale {scale} of decimal({precision},{scale}) (set round = true to round half to even)"
                ));
            }
            let first = dropped[0];
            let rest_nonzero = dropped[1..].iter().any(|&x| x != 0);
            digits.truncate(point + scale_u);
            let last_odd = digits.last().is_some_and(|&x| x % 2 == 1);
            if first > 5 || (first == 5 && (rest_nonzero || last_odd)) {
                let mut i = digits.len();
                loop {
                    if i == 0 {
                        digits.insert(0, 1);
                        return finish_decimal(
                            s,
                            d.negative,
                            &digits,
                            point + 1,
                            precision,
                            scale,
                            out,
                        );
                    }
                    i -= 1;
                    if digits[i] == 9 {
                        digits[i] = 0;
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        } else {
            digits.truncate(point + scale_u);
        }
    }
    finish_decimal(s, d.negative, &digits, point, precision, scale, out)
}

fn finish_decimal(
    s: &str,
    negative: bool,
    digits: &[u8],
    point: usize,
    precision: u8,
    scale: u8,
    out: &mut String,
) -> Result<(), String> {
    let int = &digits[..point];
    let first_nonzero = int.iter().position(|&x| x != 0).unwrap_or(int.len());
    let int = &int[first_nonzero..];
    let max_int = usize::from(precision - scale);
    if int.len() > max_int {
        return Err(format!(
            "{s:?} has {} digits before the point; decimal({precision},{scale}) holds at most {max_int}",
            int.len()
        ));
    }
    let frac = &digits[point..];
    let is_zero = int.is_empty() && frac.iter().all(|&x| x == 0);
    if negative && !is_zero {
        out.push('-');
    }
    if int.is_empty() {
        out.push('0');
    }
    out.extend(int.iter().map(|&x| char::from(b'0' + x)));
    if scale > 0 {
        out.push('.');
        out.extend(frac.iter().map(|&x| char::from(b'0' + x)));
        for _ in frac.len()..usize::from(scale) {
            out.push('0');
        }
    }
    Ok(())
}

/// Casts to a 64-bit float, written in the shortest form that reads back to the same value.
pub fn float(s: &str, nf: &NumberFormat, out: &mut String) -> Result<(), String> {
    let t = trim(s);
    let Some(d) = split_number(t, nf) else {
        return Err(format!("expected a number, got {s:?}"));
    };
    if short_decimal(&d, out) {
        return Ok(());
    }
    let mut text = String::with_capacity(t.len() + 2);
    if d.negative {
        text.push('-');
    }
    text.push_str(if d.int.is_empty() { "0" } else { &d.int });
    if !d.frac.is_empty() {
        text.push('.');
        text.push_str(&d.frac);
    }
    if d.exponent != 0 {
        let _ = write!(text, "e{}", d.exponent);
    }
    let v: f64 = text
        .parse()
        .map_err(|_| format!("expected a number, got {s:?}"))?;
    if !v.is_finite() {
        return Err(format!("{s:?} is out of the range of a 64-bit float"));
    }
    // Negative zero is written as 0.0: databases differ in keeping its sign (SQLite and MariaDB drop it).
    let v = if v == 0.0 { 0.0 } else { v };
    let _ = write!(out, "{v:?}");
    Ok(())
}

/// Writes a number without exponent, of at most 15 significant digits and between 1e-4 and 1e15 (or
/// zero), exactly as [`float`] writes the f64 it reads as, without the float: 15 digits always read back
/// from an f64 to the same digits, so no shorter text reads as the same f64 and these digits are its
/// shortest form; `{:?}` writes that form in positional notation in this range, with at least one
/// fraction digit. False (nothing written) for any other number. A float cast went from about 1,600
/// instructions to about 520 (callgrind), most of them splitting the text.
fn short_decimal(d: &Digits<'_>, out: &mut String) -> bool {
    if d.exponent != 0 {
        return false;
    }
    let int = strip_leading_zeros(&d.int);
    let frac = strip_trailing_zeros(&d.frac);
    let significant = if int.is_empty() {
        let lead = frac.len() - strip_leading_zeros(frac).len();
        // Below 1e-4, `{:?}` writes an exponent.
        if lead > 3 {
            return false;
        }
        frac.len() - lead
    } else {
        int.len() + frac.len()
    };
    if significant > 15 || int.len() > 15 {
        return false;
    }
    // Negative zero is written as 0.0, as in `float`.
    if d.negative && significant > 0 {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    out.push('.');
    out.push_str(if frac.is_empty() { "0" } else { frac });
    true
}

/// Accepted spellings of booleans, compiled once per field.
#[derive(Debug, Clone)]
pub struct BoolWords {
    pub truthy: Vec<String>,
    pub falsy: Vec<String>,
}

impl Default for BoolWords {
    fn default() -> Self {
        let v = |w: &[&str]| w.iter().map(|s| s.to_string()).collect();
        BoolWords {
            truthy: v(&["true", "t", "yes", "y", "1"]),
            falsy: v(&["false", "f", "no", "n", "0"]),
        }
    }
}

/// Casts to a boolean, comparing without regard to case.
pub fn boolean(s: &str, words: &BoolWords) -> Result<bool, String> {
    let t = trim(s);
    let hit = |ws: &[String]| {
        ws.iter().any(|w| w.eq_ignore_ascii_case(t))
            || (!t.is_ascii() && {
                let lower = t.to_lowercase();
                ws.iter().any(|w| w.to_lowercase() == lower)
            })
    };
    if hit(&words.truthy) {
        return Ok(true);
    }
    if hit(&words.falsy) {
        return Ok(false);
    }
    Err(format!(
        "expected a boolean ({} or {}), got {s:?}",
        words.truthy.join("/"),
        words.falsy.join("/")
    ))
}

/// Casts to a UUID, written lower-case and hyphenated. Accepts braces, `urn:uuid:` and the 32-digit form.
pub fn uuid(s: &str, out: &mut String) -> Result<(), String> {
    let t = trim(s);
    let t = t.strip_prefix("urn:uuid:").unwrap_or(t);
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    let bytes = t.as_bytes();
    let hex: Vec<u8> = match bytes.len() {
        32 => bytes.to_vec(),
        36 if [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-') => {
            bytes.iter().copied().filter(|&b| b != b'-').collect()
        }
        _ => return Err(format!("expected a UUID, got {s:?}")),
    };
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!("expected a UUID, got {s:?}"));
    }
    for (i, b) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(b.to_ascii_lowercase()));
    }
    Ok(())
}

/// Checks that the value is one JSON document (RFC 8259) and keeps it as written, without surrounding space.
pub fn json(s: &str, out: &mut String) -> Result<(), String> {
    let t = trim(s);
    match serde_json::from_str::<serde::de::IgnoredAny>(t) {
        Ok(_) => {
            out.push_str(t);
            Ok(())
        }
        Err(e) => Err(format!("expected JSON, got {s:?} ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl Fn(&mut String) -> Result<(), String>) -> Result<String, String> {
        let mut out = String::new();
        f(&mut out).map(|()| out)
    }

    #[test]
    fn plain_numbers_split_as_the_general_split_does() {
        let mut rng = crate::testing::Rng::new(0x5eed_cafe);
        let alphabet = b"0123456789.,-+eE 0123456789";
        for sep in ['.', ','] {
            let nf = NumberFormat {
                decimal_separator: sep,
                thousands_separator: None,
            };
            for _ in 0..100_000 {
                let len = rng.below(8) as usize;
                let body: String = (0..len)
                    .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
                    .collect();
                let Some(plain) = plain_number(&body, &nf) else {
                    continue;
                };
                let general = split_general(false, &body, &nf)
                    .map(|d| (d.int.into_owned(), d.frac.into_owned(), d.exponent));
                let plain = plain.map(|(i, f)| (i.to_string(), f.to_string(), 0));
                assert_eq!(plain, general, "{body:?} with separator {sep:?}");
            }
        }
    }

    #[test]
    fn integers() {
        let nf = NumberFormat::default();
        let i = |s: &str| run(|o| integer(s, &nf, o));
        assert_eq!(i(" 42 "), Ok("42".into()));
        assert_eq!(i("-9223372036854775808"), Ok("-9223372036854775808".into()));
        assert!(i("9223372036854775808")
            .unwrap_err()
            .contains("64-bit range"));
        assert_eq!(i("+7"), Ok("7".into()));
        assert_eq!(i("12.000"), Ok("12".into()));
        assert!(i("12.5").unwrap_err().contains("fraction"));
        assert!(i("1,234").is_err());
        assert!(i("").is_err());
        assert!(i("-").is_err());
        assert!(i("1e3").is_err());
        let us = NumberFormat {
            decimal_separator: '.',
            thousands_separator: Some(','),
        };
        assert_eq!(run(|o| integer("1,234,567", &us, o)), Ok("1234567".into()));
        assert!(run(|o| integer("1,,234", &us, o)).is_err());
        assert!(run(|o| integer(",234", &us, o)).is_err());
    }

    #[test]
    fn decimals_are_exact() {
        let nf = NumberFormat::default();
        let d = |s: &str, p, sc, r| run(|o| decimal(s, p, sc, r, &nf, o));
        assert_eq!(d("12.5", 18, 2, false), Ok("12.50".into()));
        assert_eq!(d("-0.00", 18, 2, false), Ok("0.00".into()));
        assert_eq!(d(".5", 5, 2, false), Ok("0.50".into()));
        assert_eq!(d("1.5E3", 10, 2, false), Ok("1500.00".into()));
        assert_eq!(d("15e-3", 10, 3, false), Ok("0.015".into()));
        assert_eq!(d("007", 3, 0, false), Ok("7".into()));
        assert_eq!(
            d("12345678901234567890123456789012.123456", 38, 6, false),
            Ok("12345678901234567890123456789012.123456".into())
        );
        assert!(d("1.234", 18, 2, false).unwrap_err().contains("scale 2"));
        assert_eq!(d("1.2300", 18, 2, false), Ok("1.23".into()));
        assert_eq!(d("1.235", 18, 2, true), Ok("1.24".into()));
        assert_eq!(d("1.245", 18, 2, true), Ok("1.24".into()));
        assert_eq!(d("1.2451", 18, 2, true), Ok("1.25".into()));
        assert!(d("9.995", 3, 2, true).unwrap_err().contains("at most 1"));
        assert_eq!(d("-9.995", 4, 2, true), Ok("-10.00".into()));
        assert!(d("1000", 5, 2, false).unwrap_err().contains("at most 3"));
        assert!(d("1.2.3", 5, 2, false).is_err());
        assert!(d("abc", 5, 2, false).is_err());
        let eu = NumberFormat {
            decimal_separator: ',',
            thousands_separator: Some('.'),
        };
        assert_eq!(
            run(|o| decimal("1.234,5", 10, 2, false, &eu, o)),
            Ok("1234.50".into())
        );
    }

    #[test]
    fn floats_round_trip() {
        let nf = NumberFormat::default();
        let f = |s: &str| run(|o| float(s, &nf, o));
        assert_eq!(f("0.1"), Ok("0.1".into()));
        assert_eq!(f("1"), Ok("1.0".into()));
        assert_eq!(f("-2.5e10"), Ok("-25000000000.0".into()));
        assert!(f("inf").is_err());
        assert!(f("NaN").is_err());
        assert!(f("1e999").is_err());
    }

    /// The positional fast path writes what the f64 round trip writes, for every shape it takes and
    /// the edges where it must step aside (16 digits, 1e15, below 1e-4, zeros, signs).
    #[test]
    fn short_decimals_match_the_float_round_trip() {
        let nf = NumberFormat::default();
        let by_float = |t: &str| {
            let v: f64 = t.parse().unwrap();
            let v = if v == 0.0 { 0.0 } else { v };
            format!("{v:?}")
        };
        let mut rng = crate::testing::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.000",
            "00012.3400",
            "0.0001",
            "0.00012",
            "0.00009",
            "-0.0001",
            "999999999999999",
            "999999999999999.9",
            "1000000000000000",
            "123456789012345",
            "1234567890123456",
            "0.123456789012345",
            "0.1234567890123456",
            "9007199254740993",
            ".5",
            "5.",
            "+7.25",
            "-0.1",
            "100",
            "0.30000000000000004",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend((0..100_000).filter_map(|_| rng.number_text(18, 18)));
        for t in &cases {
            let mut out = String::new();
            float(t, &nf, &mut out).unwrap();
            assert_eq!(out, by_float(t), "{t}");
        }
    }

    /// The plain fast path writes what the general path writes, at several precisions and scales.
    #[test]
    fn plain_decimals_match_the_general_path() {
        let nf = NumberFormat::default();
        let mut rng = crate::testing::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut cases: Vec<String> = ["0", "-0", "-0.00", "007.5", "12", ".5", "5.", "-000.10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cases.extend((0..50_000).filter_map(|_| rng.number_text(14, 6)));
        let mut taken = 0;
        for (precision, scale) in [(12, 2), (5, 0), (38, 4), (3, 3), (10, 5)] {
            for t in &cases {
                let mut fast = String::new();
                let d = split_number(t, &nf).unwrap();
                if !plain_decimal(&d, precision, scale, &mut fast) {
                    continue;
                }
                taken += 1;
                let mut general = String::new();
                let d = split_number(t, &nf).unwrap();
                decimal_by_digits(t, d, precision, scale, false, &mut general).unwrap();
                assert_eq!(fast, general, "{t} as decimal({precision},{scale})");
            }
        }
        assert!(taken > 50_000, "the fast path took only {taken} cases");
    }

    #[test]
    fn booleans_in_any_case() {
        let w = BoolWords::default();
        for t in ["TRUE", "t", "Yes", "Y", "1"] {
            assert_eq!(boolean(t, &w), Ok(true), "{t}");
        }
        for f in ["false", "F", "NO", "n", "0"] {
            assert_eq!(boolean(f, &w), Ok(false), "{f}");
        }
        assert!(boolean("maybe", &w).is_err());
        let custom = BoolWords {
            truthy: vec!["ja".into()],
            falsy: vec!["nein".into()],
        };
        assert_eq!(boolean("JA", &custom), Ok(true));
        assert!(boolean("yes", &custom).is_err());
    }

    #[test]
    fn uuids_normalize() {
        let u = |s: &str| run(|o| uuid(s, o));
        let want = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(u("0F8FAD5B-D9CB-469F-A165-70867728950E"), Ok(want.into()));
        assert_eq!(u("{0f8fad5b-d9cb-469f-a165-70867728950e}"), Ok(want.into()));
        assert_eq!(u("0f8fad5bd9cb469fa16570867728950e"), Ok(want.into()));
        assert_eq!(
            u("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"),
            Ok(want.into())
        );
        assert!(u("0f8fad5b-d9cb-469f-a165-70867728950").is_err());
        assert!(u("0f8fad5b-d9cb-469f-a165-70867728950g").is_err());
    }

    #[test]
    fn json_is_validated_and_kept() {
        let j = |s: &str| run(|o| json(s, o));
        assert_eq!(j(" {\"a\": [1, 2.50]} "), Ok("{\"a\": [1, 2.50]}".into()));
        assert!(j("{a:1}").is_err());
        assert!(j("[1,]").is_err());
    }
}
