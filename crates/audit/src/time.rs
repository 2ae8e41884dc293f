//! Times as RFC 3339, in UTC, to the millisecond: the exported form's, and what
//! `deploy audit list --since` reads. No time zone database: UTC offsets only.

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix milliseconds `ms`.
pub fn format_ms(ms: u64) -> String {
    let days = ms / DAY_MS;
    let rest = ms % DAY_MS;
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// Unix milliseconds of an RFC 3339 time (`2025-06-01T10:00:00Z`, with a fraction of a
/// second or not, `Z` or an offset such as `+02:00`; a space for the `T` too), at or after
/// 1970. A fraction finer than a millisecond is cut to the millisecond.
pub fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let dash = b.iter().position(|&c| c == b'-')?;
    if dash < 4 {
        return None;
    }
    let year = digits(&b[..dash])?;
    let rest = &b[dash..];
    // -MM-DDTHH:MM:SS
    if rest.len() < 15
        || rest[0] != b'-'
        || rest[3] != b'-'
        || !matches!(rest[6], b'T' | b't' | b' ')
        || rest[9] != b':'
        || rest[12] != b':'
    {
        return None;
    }
    let month = digits(&rest[1..3])?;
    let day = digits(&rest[4..6])?;
    let hour = digits(&rest[7..9])?;
    let minute = digits(&rest[10..12])?;
    let second = digits(&rest[13..15])?;
    let mut tail = &rest[15..];
    let mut milli = 0;
    if let Some(frac) = tail.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut scaled = 0u64;
        for (i, c) in frac[..n].iter().enumerate().take(3) {
            scaled += u64::from(c - b'0') * [100, 10, 1][i];
        }
        milli = scaled;
        tail = &frac[n..];
    }
    let offset_s: i64 = match tail {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::try_from(h * 3600 + m * 60).ok()?;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let local = days * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = i64::try_from(local).ok()?.checked_sub(offset_s)?;
    let utc = u64::try_from(utc).ok()?;
    utc.checked_mul(1000)?.checked_add(milli)
}

fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 12 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm), `None` before it.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// The civil date of a count of days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_times() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14 22:13:20.123456789Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "1969-12-31T23:59:59Z",
            "2023-11-14T22:13:20+2:00",
            "x023-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn format_parses_back(ms in 0u64..253_402_300_800_000) {
            prop_assert_eq!(parse_time(&format_ms(ms)), Some(ms));
        }
    }
}
