//! The lines of a service manifest: which secrets a service needs and its plain config.
//!
//! ```text
//! # web's manifest
//! secret db_password
//! secret api_key
//! config log_level=debug
//! config greeting=hello, world
//! ```
//!
//! One declaration per line, lines separated by `\n`:
//! - `secret NAME`: the service needs secret NAME (the deployer checks it is granted);
//! - `config KEY=VALUE`: VALUE is everything after the first `=`, possibly empty, exactly as
//!   written (spaces kept); KEY follows the name rule;
//! - blank lines (only spaces/tabs) and lines whose first non-blank character is `#` are
//!   ignored.
//!
//! The keyword and its argument are separated by spaces or tabs; a `secret` line may end in
//! spaces or tabs.
//!
//! Everyone reads a line through [`lines`]: the vault's parser (`secrets::Manifest::parse`),
//! which adds the rules a stored manifest must keep (the name rule, no name declared twice,
//! the size) and refuses a manifest that breaks one, naming the line and never its text;
//! and a client reading a services file ([`declared_secrets`]), which takes what it can
//! read and skips the rest, so that a newer server may declare more.

/// A line that is not UTF-8.
pub const NOT_UTF8: &str = "not valid UTF-8";
/// A `config` line without `=`.
pub const CONFIG_NEEDS_KV: &str = "`config` needs KEY=VALUE";
/// A line that is neither blank, a comment, `secret` nor `config`.
pub const UNKNOWN: &str = "unknown declaration; expected `secret NAME` or `config KEY=VALUE`";

/// What one line declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Nothing: a blank line or a comment.
    Nothing,
    /// `secret NAME`: the argument, without the blanks around it. It may be empty or hold
    /// blanks, which the vault refuses.
    Secret(&'a str),
    /// `config KEY=VALUE`: KEY is what lies between the blanks after the keyword and the
    /// first `=`, VALUE everything after it.
    Config {
        /// The key, as written.
        key: &'a str,
        /// The value, as written.
        value: &'a str,
    },
}

/// Each line of `src` with its 1-based number: what it declares, or the fixed reason it
/// declares nothing readable ([`NOT_UTF8`], [`CONFIG_NEEDS_KV`], [`UNKNOWN`]).
pub fn lines(src: &[u8]) -> impl Iterator<Item = (usize, Result<Line<'_>, &'static str>)> {
    src.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| (i + 1, line(raw)))
}

fn line(raw: &[u8]) -> Result<Line<'_>, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| NOT_UTF8)?;
    let trimmed = text.trim_start_matches(is_blank);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Line::Nothing);
    }
    let (keyword, rest) = trimmed.split_once(is_blank).unwrap_or((trimmed, ""));
    let arg = rest.trim_start_matches(is_blank);
    match keyword {
        "secret" => Ok(Line::Secret(arg.trim_end_matches(is_blank))),
        "config" => {
            let (key, value) = arg.split_once('=').ok_or(CONFIG_NEEDS_KV)?;
            Ok(Line::Config { key, value })
        }
        _ => Err(UNKNOWN),
    }
}

/// Whether `c` separates a keyword from its argument: a space or a tab.
pub fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The secrets a manifest declares, as a client reads one from a services file: each
/// `secret` line's name, in order; lines it cannot read, and `secret` lines without a
/// name, are skipped (the server checked the manifest when it was set).
pub fn declared_secrets(manifest: &[u8]) -> Vec<String> {
    lines(manifest)
        .filter_map(|(_, line)| match line {
            Ok(Line::Secret(name)) if !name.is_empty() => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_line_declares() {
        let src = b"# c\n\n \t\nsecret a\n  secret\tb \nconfig k= v \nconfig eq=a=b\nsecret\n\xff\nfrob x\nconfig x";
        let read: Vec<_> = lines(src).collect();
        assert_eq!(
            read,
            [
                (1, Ok(Line::Nothing)),
                (2, Ok(Line::Nothing)),
                (3, Ok(Line::Nothing)),
                (4, Ok(Line::Secret("a"))),
                (5, Ok(Line::Secret("b"))),
                (
                    6,
                    Ok(Line::Config {
                        key: "k",
                        value: " v "
                    })
                ),
                (
                    7,
                    Ok(Line::Config {
                        key: "eq",
                        value: "a=b"
                    })
                ),
                (8, Ok(Line::Secret(""))),
                (9, Err(NOT_UTF8)),
                (10, Err(UNKNOWN)),
                (11, Err(CONFIG_NEEDS_KV)),
            ]
        );
    }

    #[test]
    fn manifest_lines_that_are_not_secrets() {
        let m =
            b"#secret commented\nsecrets plural\nsecret\nconfig a=secret b\nsecretx y\nsecret ok";
        assert_eq!(declared_secrets(m), ["ok"]);
        let m = b"# web\nsecret db_password\n  secret\tapi_key \nconfig secret=x\n\n";
        assert_eq!(declared_secrets(m), ["db_password", "api_key"]);
    }
}
