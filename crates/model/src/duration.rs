//! Durations as people write them on a command line and in ctl: `30s`, `15m`, `12h`,
//! `90d`, `2w`. An overlap window (`promote NAME overlap 1d`, `deploy secret rotate
//! --overlap 1d`) and a grant's lifetime (`grant SERVICE NAME expires 30d`) are given so,
//! and checked here once, for the ctl parser and for deploy alike.

use std::fmt;

/// Seconds in a minute, an hour, a day and a week.
const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// The longest duration: 3650 days (ten years), as a rotation period's longest.
pub const MAX_DURATION_SECS: u64 = 3650 * DAY;

/// Why a duration does not read. Its text never holds the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Not a whole number followed by one of the units.
    Form,
    /// Zero.
    Zero,
    /// Past [`MAX_DURATION_SECS`].
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationError::Form => {
                "a duration is a whole number and a unit: 30s, 15m, 12h, 90d or 2w (no spaces)"
            }
            DurationError::Zero => "a duration is at least 1s",
            DurationError::TooLong => "a duration is at most 3650d (ten years)",
        })
    }
}

impl std::error::Error for DurationError {}

/// Parses `30s`, `15m`, `12h`, `90d`, `2w` into seconds: at least 1, at most
/// [`MAX_DURATION_SECS`].
///
/// # Errors
/// [`DurationError`], saying what form is expected; it does not echo the text.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let Some(unit) = text.bytes().last() else {
        return Err(DurationError::Form);
    };
    let scale = match unit {
        b's' => 1,
        b'm' => MINUTE,
        b'h' => HOUR,
        b'd' => DAY,
        b'w' => WEEK,
        _ => return Err(DurationError::Form),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::Form);
    }
    let count: u64 = digits.parse().map_err(|_| DurationError::Form)?;
    let secs = count.saturating_mul(scale);
    match secs {
        0 => Err(DurationError::Zero),
        s if s > MAX_DURATION_SECS => Err(DurationError::TooLong),
        s => Ok(s),
    }
}

/// `secs` in the largest unit that divides it whole: `90d`, `36h`, `90s` (what
/// [`parse_duration`] reads back to the same number).
pub fn format_duration(secs: u64) -> String {
    for (unit, scale) in [("w", WEEK), ("d", DAY), ("h", HOUR), ("m", MINUTE)] {
        if secs >= scale && secs.is_multiple_of(scale) {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn units_and_limits() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("90d"), Ok(90 * DAY));
        assert_eq!(parse_duration("2w"), Ok(14 * DAY));
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION_SECS));
        assert_eq!(parse_duration("3651d"), Err(DurationError::TooLong));
        assert_eq!(parse_duration("999999999999w"), Err(DurationError::TooLong));
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        for bad in [
            "", "s", "10", "1 d", "1.5h", "-1d", "1D", "1y", "1dd", "+1d", "1ms",
        ] {
            assert_eq!(parse_duration(bad), Err(DurationError::Form), "{bad:?}");
        }
        for e in [
            DurationError::Form,
            DurationError::Zero,
            DurationError::TooLong,
        ] {
            assert!(e.to_string().len() <= 80, "{e}");
        }
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format_duration(90 * DAY), "90d");
        assert_eq!(format_duration(14 * DAY), "2w");
        assert_eq!(format_duration(36 * HOUR), "36h");
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(120), "2m");
        assert_eq!(format_duration(0), "0s");
    }

    proptest! {
        #[test]
        fn what_is_formatted_reads_back(secs in 1u64..=MAX_DURATION_SECS) {
            prop_assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }

        #[test]
        fn never_panics(text in "\\PC{0,20}") {
            let _ = parse_duration(&text);
        }
    }
}
