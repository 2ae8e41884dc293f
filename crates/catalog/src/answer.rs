//! How an answer to a first-run prompt is checked against its [`PromptSpec`]: the
//! reference behaviour that `deploy prompt` implements, and that a desktop or mobile
//! packager implements with its own widgets.
//!
//! An empty answer is skipped when the prompt is optional, else refused. A `number` is a
//! whole number (`-` before a negative one) within `min` and `max`; any other kind has
//! `min` to `max` characters. A `url` is `scheme://` and more; an `email` is
//! `local@domain.tld`. The `pattern`, if any, must match the whole answer. Errors never
//! hold the answer.

use std::fmt;

use crate::model::{MAX_PATTERN_SIZE, PromptKind, PromptSpec};

/// Why an answer was refused; the text says what would be accepted, never the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerError {
    /// An empty answer to a prompt that is not optional.
    Required,
    /// A `number` that is not a whole number.
    NotANumber,
    /// A `number` below `min` or above `max`.
    OutOfRange {
        /// The least value, if bounded.
        min: Option<i64>,
        /// The greatest value, if bounded.
        max: Option<i64>,
    },
    /// Fewer than `min` or more than `max` characters.
    Length {
        /// The fewest characters, if bounded.
        min: Option<i64>,
        /// The most characters, if bounded.
        max: Option<i64>,
    },
    /// A `url` that is not `scheme://...`.
    NotAUrl,
    /// An `email` that is not `local@domain.tld`.
    NotAnEmail,
    /// The pattern does not match the whole answer.
    Pattern {
        /// The pattern, as declared (a declaration, not a secret).
        pattern: String,
    },
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bounds =
            |f: &mut fmt::Formatter<'_>, min: &Option<i64>, max: &Option<i64>| match (min, max) {
                (Some(a), Some(b)) => write!(f, "from {a} to {b}"),
                (Some(a), None) => write!(f, "at least {a}"),
                (None, Some(b)) => write!(f, "at most {b}"),
                (None, None) => write!(f, "any"),
            };
        match self {
            AnswerError::Required => f.write_str("an answer is required"),
            AnswerError::NotANumber => {
                f.write_str("a whole number is expected (digits, - before a negative one)")
            }
            AnswerError::OutOfRange { min, max } => {
                f.write_str("the number must be ")?;
                bounds(f, min, max)
            }
            AnswerError::Length { min, max } => {
                f.write_str("the answer must have ")?;
                bounds(f, min, max)?;
                f.write_str(" characters")
            }
            AnswerError::NotAUrl => f.write_str("a URL is expected, such as https://example.com"),
            AnswerError::NotAnEmail => {
                f.write_str("an e-mail address is expected, such as ops@example.com")
            }
            AnswerError::Pattern { pattern } => {
                write!(f, "the answer must match the pattern {pattern:?}")
            }
        }
    }
}

impl std::error::Error for AnswerError {}

impl PromptSpec {
    /// Checks an answer as the spec says. `Ok(false)`: an empty answer to an optional
    /// prompt, to be skipped (nothing is stored); `Ok(true)`: an answer to keep.
    ///
    /// # Errors
    /// What is wrong with it ([`AnswerError`]), never the answer itself.
    pub fn check_answer(&self, answer: &str) -> Result<bool, AnswerError> {
        if answer.is_empty() {
            return if self.optional {
                Ok(false)
            } else {
                Err(AnswerError::Required)
            };
        }
        let within = |n: i64| self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m);
        match self.kind {
            PromptKind::Number => {
                let n = parse_whole(answer).ok_or(AnswerError::NotANumber)?;
                if !within(n) {
                    return Err(AnswerError::OutOfRange {
                        min: self.min,
                        max: self.max,
                    });
                }
            }
            kind => {
                let chars = i64::try_from(answer.chars().count()).unwrap_or(i64::MAX);
                if !within(chars) {
                    return Err(AnswerError::Length {
                        min: self.min,
                        max: self.max,
                    });
                }
                if kind == PromptKind::Url && !is_url(answer) {
                    return Err(AnswerError::NotAUrl);
                }
                if kind == PromptKind::Email && !is_email(answer) {
                    return Err(AnswerError::NotAnEmail);
                }
            }
        }
        if let Some(pattern) = &self.pattern {
            let whole = format!("^(?:{})$", pattern.as_str());
            // The pattern was checked to compile within this limit when it was declared;
            // one that does not (a later build's rules) refuses every answer.
            let matches = regex::RegexBuilder::new(&whole)
                .size_limit(MAX_PATTERN_SIZE)
                .build()
                .is_ok_and(|re| re.is_match(answer));
            if !matches {
                return Err(AnswerError::Pattern {
                    pattern: pattern.as_str().to_string(),
                });
            }
        }
        Ok(true)
    }
}

/// `-?[0-9]+` as an i64.
fn parse_whole(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `scheme://rest`: a scheme as RFC 3986 has it, something after it, no blanks or
/// control characters.
fn is_url(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let mut s = scheme.bytes();
    s.next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
        && !rest.is_empty()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `local@domain.tld`: one `@`, something before it, a dotted domain after it, no blanks.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use crate::model::Pattern;

    fn spec(kind: PromptKind) -> PromptSpec {
        let mut s = PromptSpec::new("Q");
        s.kind = kind;
        s
    }

    #[test]
    fn empty_answers() {
        let mut s = spec(PromptKind::Text);
        assert_eq!(s.check_answer(""), Err(AnswerError::Required));
        s.optional = true;
        assert_eq!(s.check_answer(""), Ok(false));
        assert_eq!(s.check_answer("x"), Ok(true));
    }

    #[test]
    fn numbers_and_lengths() {
        let mut n = spec(PromptKind::Number);
        n.min = Some(1);
        n.max = Some(65535);
        assert_eq!(n.check_answer("8080"), Ok(true));
        assert_eq!(
            n.check_answer("0").unwrap_err().to_string(),
            "the number must be from 1 to 65535"
        );
        assert_eq!(n.check_answer("80a"), Err(AnswerError::NotANumber));
        assert_eq!(n.check_answer("-"), Err(AnswerError::NotANumber));
        assert_eq!(n.check_answer("+5"), Err(AnswerError::NotANumber));
        n.min = Some(-10);
        assert_eq!(n.check_answer("-3"), Ok(true));
        let mut t = spec(PromptKind::Password);
        t.min = Some(3);
        assert_eq!(
            t.check_answer("ab").unwrap_err().to_string(),
            "the answer must have at least 3 characters"
        );
        assert_eq!(t.check_answer("äöü"), Ok(true), "characters, not bytes");
    }

    #[test]
    fn urls_emails_and_patterns() {
        let u = spec(PromptKind::Url);
        assert_eq!(u.check_answer("https://openrouter.ai/api"), Ok(true));
        for bad in ["openrouter.ai", "https://", "1http://x", "https://a b"] {
            assert_eq!(u.check_answer(bad), Err(AnswerError::NotAUrl), "{bad}");
        }
        let e = spec(PromptKind::Email);
        assert_eq!(e.check_answer("ops@example.com"), Ok(true));
        for bad in [
            "ops",
            "@example.com",
            "ops@example",
            "ops@.com",
            "a@b@c.d",
            "o ps@x.y",
        ] {
            assert_eq!(e.check_answer(bad), Err(AnswerError::NotAnEmail), "{bad}");
        }
        let mut p = spec(PromptKind::Password);
        p.pattern = Some(Pattern::new("sk-or-[a-z0-9]{4,}").unwrap());
        assert_eq!(p.check_answer("sk-or-abcd1234"), Ok(true));
        // The whole answer: a match inside it is not enough.
        let err = p.check_answer("xsk-or-abcd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the answer must match the pattern \"sk-or-[a-z0-9]{4,}\""
        );
        assert!(!err.to_string().contains("xsk"));
        let mut alt = spec(PromptKind::Text);
        alt.pattern = Some(Pattern::new("a|b").unwrap());
        assert_eq!(alt.check_answer("b"), Ok(true));
        assert!(
            alt.check_answer("ab").is_err(),
            "alternation is grouped whole"
        );
    }
}
