//! Rotation periods: `90d`, `12h`, `30m`, `2w`.

use std::fmt;
use std::str::FromStr;

use crate::error::FieldError;

const MINUTE: u32 = 1;
const HOUR: u32 = 60 * MINUTE;
const DAY: u32 = 24 * HOUR;
const WEEK: u32 = 7 * DAY;

/// How often a secret should be rotated, to the minute.
///
/// Written as a whole number and a unit: `m` minutes, `h` hours, `d` days, `w` weeks. It is
/// at least a minute and at most [`Period::MAX`] (ten years: beyond that a period means
/// "never", and that should be said plainly rather than by a huge number). It prints in the
/// largest unit that divides it (`14d` prints as `2w`), so exports are canonical.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Period {
    minutes: u32,
}

impl Period {
    /// The rotation period of a secret that declares none: 90 days.
    pub const DEFAULT: Period = Period { minutes: 90 * DAY };
    /// The longest period: 3650 days.
    pub const MAX: Period = Period {
        minutes: 3650 * DAY,
    };

    /// The period in minutes.
    pub fn minutes(self) -> u32 {
        self.minutes
    }

    /// A period of `minutes` minutes.
    ///
    /// # Errors
    /// [`FieldError::Period`] for zero or above [`Period::MAX`].
    pub fn from_minutes(minutes: u32) -> Result<Period, FieldError> {
        if minutes == 0 {
            return Err(FieldError::Period("a rotation period is at least 1m"));
        }
        if minutes > Period::MAX.minutes {
            return Err(FieldError::Period(
                "a rotation period is at most 3650d (ten years)",
            ));
        }
        Ok(Period { minutes })
    }

    /// Parses `90d`, `12h`, `30m`, `2w`.
    ///
    /// # Errors
    /// [`FieldError::Period`], saying what form is expected; it does not echo the text.
    pub fn parse(text: &str) -> Result<Period, FieldError> {
        const FORM: &str =
            "a rotation period is a whole number and a unit: 30m, 12h, 90d or 2w (no spaces)";
        let Some(unit) = text.bytes().last() else {
            return Err(FieldError::Period(FORM));
        };
        let scale = match unit {
            b'm' => MINUTE,
            b'h' => HOUR,
            b'd' => DAY,
            b'w' => WEEK,
            _ => return Err(FieldError::Period(FORM)),
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::Period(FORM));
        }
        let count: u64 = digits.parse().map_err(|_| FieldError::Period(FORM))?;
        let minutes = count.saturating_mul(u64::from(scale));
        let minutes = u32::try_from(minutes).unwrap_or(u32::MAX);
        Period::from_minutes(minutes)
    }
}

impl Default for Period {
    fn default() -> Period {
        Period::DEFAULT
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.minutes;
        for (scale, unit) in [(WEEK, 'w'), (DAY, 'd'), (HOUR, 'h')] {
            if m.is_multiple_of(scale) {
                return write!(f, "{}{unit}", m / scale);
            }
        }
        write!(f, "{m}m")
    }
}

impl FromStr for Period {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Period, FieldError> {
        Period::parse(s)
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units() {
        assert_eq!(Period::parse("30m").unwrap().minutes(), 30);
        assert_eq!(Period::parse("12h").unwrap().minutes(), 12 * 60);
        assert_eq!(Period::parse("90d").unwrap(), Period::DEFAULT);
        assert_eq!(Period::parse("2w").unwrap().minutes(), 14 * 24 * 60);
        assert_eq!(Period::parse("3650d").unwrap(), Period::MAX);
    }

    #[test]
    fn refuses_what_is_not_a_period() {
        for bad in [
            "",
            "d",
            "90",
            "90 d",
            " 90d",
            "-1d",
            "+1d",
            "1.5d",
            "0m",
            "0w",
            "3651d",
            "1y",
            "90D",
            "99999999999999999999d",
            "1d2h",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prints_canonically() {
        for (text, canon) in [
            ("90d", "90d"),
            ("14d", "2w"),
            ("24h", "1d"),
            ("90m", "90m"),
            ("120m", "2h"),
        ] {
            let p = Period::parse(text).unwrap();
            assert_eq!(p.to_string(), canon);
            assert_eq!(Period::parse(canon).unwrap(), p);
        }
    }
}
