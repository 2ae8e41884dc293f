//! Shell-style globs over secret names, for `deploy secret list PATTERN`.
//!
//! `*` matches any run of characters (also none), `?` one character, `[abc]` one of a
//! set, `[a-z]` one of a range, `[!abc]` or `[^abc]` one character not in the set, and
//! `\c` the character c itself. As in POSIX shells, a `]` right after `[` (or `[!`) is
//! part of the set. Names have no `/`, so there are no path rules.

/// A parsed glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    One,
    Run,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    /// Whether this single-character token matches `c` (never called on [`Token::Run`]).
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(want) => *want == c,
            Token::One => true,
            Token::Run => false,
            Token::Set { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl Glob {
    /// Parses `pattern`.
    ///
    /// # Errors
    /// A `[` without its `]`, worded for the operator.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    // `**` is `*`: keeps matching linear.
                    if tokens.last() != Some(&Token::Run) {
                        tokens.push(Token::Run);
                    }
                }
                '?' => tokens.push(Token::One),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    tokens.push(Token::Char(chars[i]));
                }
                '[' => {
                    let (set, end) = parse_set(&chars, i + 1).ok_or_else(|| {
                        format!(
                            "pattern '{pattern}' has a '[' without its ']'; write \\[ for a \
                             plain ["
                        )
                    })?;
                    tokens.push(set);
                    i = end;
                }
                c => tokens.push(Token::Char(c)),
            }
            i += 1;
        }
        Ok(Glob { tokens })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let (mut t, mut n) = (0, 0);
        // Where the last `*` was, and how much of the name it has taken so far: on a
        // mismatch it takes one character more (the classic linear-space backtrack).
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Run) => {
                    star = Some((t, n));
                    t += 1;
                }
                Some(token) if token.matches(name[n]) => {
                    t += 1;
                    n += 1;
                }
                _ => match star {
                    Some((star_t, star_n)) => {
                        star = Some((star_t, star_n + 1));
                        t = star_t + 1;
                        n = star_n + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t..].iter().all(|token| *token == Token::Run)
    }
}

/// The set starting at `chars[start]` (just after its `[`): the token and the index of
/// its `]`, or None if it is not closed.
fn parse_set(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let first = i;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && i > first {
            return Some((Token::Set { negated, ranges }, i));
        }
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i)?
        } else {
            c
        };
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&c| c != ']') {
            let hi = chars[i + 2];
            ranges.push((lo.min(hi), lo.max(hi)));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("db_*", "db_password"));
        assert!(matches("db_*", "db_"));
        assert!(!matches("db_*", "api_db_password"));
        assert!(matches("*_key", "api_key"));
        assert!(!matches("*_key", "api_key_old"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "a__b__b__c"));
        assert!(!matches("a*b*c", "a__b__b__"));
        assert!(matches("**x", "yyx"));
        assert!(matches("?", "a"));
        assert!(!matches("?", ""));
        assert!(!matches("?", "ab"));
        assert!(matches("v?.?", "v1.2"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(!matches("", "x"));
        assert!(matches("", ""));
    }

    #[test]
    fn sets_and_ranges() {
        assert!(matches("[abc]", "b"));
        assert!(!matches("[abc]", "d"));
        assert!(matches("key[0-9]", "key7"));
        assert!(!matches("key[0-9]", "keyx"));
        assert!(matches("[!0-9]*", "abc"));
        assert!(!matches("[!0-9]*", "1bc"));
        assert!(matches("[^a]", "b"));
        assert!(matches("[a-cx-z]", "y"));
        assert!(!matches("[a-cx-z]", "m"));
        // A ']' first is a member; a '-' last is a member.
        assert!(matches("[]a]", "]"));
        assert!(matches("[a-]", "-"));
        assert!(matches("[!]]", "x"));
        assert!(!matches("[!]]", "]"));
    }

    #[test]
    fn escapes_and_errors() {
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("[\\]]", "]"));
        assert!(matches("trailing\\", "trailing\\"));
        for bad in ["[abc", "db_[", "[!", "[]"] {
            let e = Glob::parse(bad).unwrap_err();
            assert!(e.contains("without its ']'"), "{bad}: {e}");
        }
    }

    #[test]
    fn long_names_match_in_linear_time() {
        // The naive recursive matcher takes exponential time on this.
        let name = "a".repeat(128);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &name));
    }
}
