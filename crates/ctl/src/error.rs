//! Errors, and the one format every ctl error string has: `ctl: line K: VERB: WHAT`.
//!
//! Nothing here can hold input: [`ErrorKind`] carries only `&'static str`s from this crate's
//! own tables and [`CtlError`] adds a line number and a verb from the same table. A name, a
//! value or an unknown command word therefore cannot reach an error string, whatever the
//! input (a value split by a stray newline becomes "unknown command", not an echo).

use std::fmt;

use crate::MAX_VALUE_LEN;

/// What was wrong with a command. The text says what to do about it and never echoes input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A duration (`overlap`, `expires`) that does not read.
    #[error("{0}")]
    BadDuration(model::DurationError),
    /// A prompt's `min` or `max` that is not a whole number.
    #[error("min and max are whole numbers: digits, with - before a negative one")]
    BadNumber,
    /// An audit record's number or a limit that is not a whole number.
    #[error("a record number and a limit are whole numbers: digits only")]
    BadSequence,
    /// An audit head that is not `[CHAIN:]SEQ:HASH`.
    #[error("a head is [CHAIN:]SEQ:HASH, as deploy audit head prints it")]
    BadHead,
    /// A `reason` that is not text, too long, or holds a control character.
    #[error("a reason is UTF-8 text of at most 1024 bytes, without control characters")]
    BadReason,
    /// A token ID that is not 16 hex digits.
    #[error("a token ID is 16 hex digits, as deploy token list shows it")]
    BadTokenId,
    /// `service … uid` with something other than a decimal number from 0 to 4294967294.
    #[error("uid must be a decimal number from 0 to 4294967294")]
    BadUid,
    /// A catalog file larger than [`MAX_CATALOG_LEN`](crate::MAX_CATALOG_LEN).
    #[error("a catalog file is at most 16 MiB ({} bytes)", crate::MAX_CATALOG_LEN)]
    CatalogTooLarge,
    /// The pending, unterminated command passed [`MAX_LINE_LEN`](crate::MAX_LINE_LEN).
    #[error("command too long; a value may be at most 1 MiB ({MAX_VALUE_LEN} bytes)")]
    CommandTooLong,
    /// A secret or service name that breaks the name rule.
    #[error("invalid {0} name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)")]
    InvalidName(NameKind),
    /// A word of the grammar that must come here and did not (`tier` in `strategy NAME
    /// tier TIER ...`).
    #[error("expected '{word}' here; usage: {usage}")]
    ExpectedWord {
        /// The word.
        word: &'static str,
        /// The command's usage line.
        usage: &'static str,
    },
    /// The stream ended inside the bytes of a `{N}` literal.
    #[error("literal cut short; the stream ended before all N bytes of a {{N}} literal arrived")]
    LiteralCutShort,
    /// A `{N}` literal with N above [`MAX_VALUE_LEN`].
    #[error("literal too long; a {{N}} literal may hold at most 1 MiB ({MAX_VALUE_LEN} bytes)")]
    LiteralTooLong,
    /// A word shaped like `{…}` that is not a literal header, or a literal not followed by a
    /// blank or the end of the line.
    #[error(
        "malformed literal; send {{N}}, a newline, then exactly N bytes \
         (to send a word in braces, quote it)"
    )]
    MalformedLiteral,
    /// A command with too few arguments; `arg` names the first one missing.
    #[error("missing {arg}; usage: {usage}")]
    MissingArgument {
        /// The missing argument, in words ("name", "value", …).
        arg: &'static str,
        /// The command's usage line.
        usage: &'static str,
    },
    /// Text (a tier, a template, a label) that is not UTF-8.
    #[error("not UTF-8 text; tiers, classes, templates and labels are text")]
    NotText,
    /// `commit` or `abort` with no transaction open.
    #[error("no transaction is open; start one with begin")]
    NoTransaction,
    /// `rotate-key` inside a transaction: it is a transaction of its own.
    #[error("cannot run inside a transaction; commit or abort it first")]
    NotInTransaction,
    /// `promote NAME overlap DURATION revoke-previous`: the previous value cannot both stay
    /// readable and be destroyed.
    #[error("overlap and revoke-previous exclude each other: revoking destroys the old value")]
    OverlapAndRevoke,
    /// `promote NAME retire-when-read` without `overlap DURATION`: nothing would read the
    /// previous version, so there is nothing to wait for.
    #[error(
        "retire-when-read needs an overlap: give overlap DURATION (the latest the previous value is retired)"
    )]
    RetireWhenReadWithoutOverlap,
    /// An option given twice (`meta NAME owner a owner b`).
    #[error("an option is given twice; give each once")]
    RepeatedOption,
    /// `admin` or `secrets` used as a service name.
    #[error("'admin' and 'secrets' are reserved service names")]
    ReservedService,
    /// A command with more arguments than it takes.
    #[error(
        "too many arguments; usage: {usage}{}",
        if *.value { " (quote a value that holds spaces)" } else { "" }
    )]
    TooManyArguments {
        /// The command's usage line.
        usage: &'static str,
        /// Whether the command takes a VALUE (then the likely cause is an unquoted space).
        value: bool,
    },
    /// A write whose bytes all belong to the rest of a command refused earlier (a literal
    /// too long, a line too long): they are skipped, never read as commands.
    #[error("skipping the rest of the command refused earlier; nothing in this write was applied")]
    StillSkipping,
    /// `commit` of a transaction that an error inside it aborted.
    #[error("the transaction was aborted by the error at line {line}; nothing was applied")]
    TransactionAborted {
        /// The line of the error that aborted it.
        line: usize,
    },
    /// The fid was closed with a transaction open.
    #[error("transaction not committed before ctl was closed; nothing was applied")]
    TransactionNotCommitted,
    /// `begin` inside a transaction.
    #[error("a transaction is already open; commit or abort it first")]
    TransactionOpen,
    /// A transaction past [`MAX_TXN_COMMANDS`](crate::MAX_TXN_COMMANDS) commands or
    /// [`MAX_TXN_BYTES`](crate::MAX_TXN_BYTES) bytes.
    #[error(
        "transaction too large; at most {} commands and 4 MiB ({} bytes)",
        crate::MAX_TXN_COMMANDS,
        crate::MAX_TXN_BYTES
    )]
    TransactionTooLarge,
    /// `service SERVICE` followed by something other than uid, manifest, tiers, remove,
    /// suspend or resume.
    #[error(
        "unknown action; {}expected: manifest, remove, resume, suspend, tiers, uid",
        Suggest(*.suggestion)
    )]
    UnknownAction {
        /// The action the word most resembles, from our list (never the word itself).
        suggestion: Option<&'static str>,
    },
    /// An action, option or keyword a command does not have (`tier frob`, `meta a colour
    /// x`, `strategy a tier t serv`).
    #[error("unknown option; {}expected: {expected}", Suggest(*.suggestion))]
    UnknownOption {
        /// The word of `expected` it most resembles (never the word itself).
        suggestion: Option<&'static str>,
        /// What may come there.
        expected: &'static str,
    },
    /// A line whose first word is no command. The commands are not listed: there are more
    /// than fit in the 127 bytes a Plan 9 client keeps of an error; `help` lists them.
    #[error("unknown command; {}write 'help' for the list", Suggest(*.suggestion))]
    UnknownCommand {
        /// The command the word most resembles, from our list (never the word itself).
        suggestion: Option<&'static str>,
    },
    /// The stream ended inside a quoted string.
    #[error("unterminated quote; close it with ' or send the value as a {{N}} literal")]
    UnterminatedQuote,
    /// A VALUE longer than [`MAX_VALUE_LEN`] once unquoted.
    #[error("value too long; the limit is 1 MiB ({MAX_VALUE_LEN} bytes)")]
    ValueTooLong,
}

/// Which name rule an [`ErrorKind::InvalidName`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A secret's name (`set`, `delete`, `grant`, `revoke`, the catalog's commands).
    Secret,
    /// A service's name (`grant`, `revoke`, `service`).
    Service,
    /// A deployment's id (`bundle`).
    Deployment,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Secret => "secret",
            NameKind::Service => "service",
            NameKind::Deployment => "deployment",
        })
    }
}

/// A rejected command: its line in the fid's stream, its verb when the line began with
/// one, and what was wrong.
///
/// `Display` gives the whole 9P error string, `ctl: line K: VERB: WHAT` (or
/// `ctl: line K: WHAT` when no verb is known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtlError {
    /// The 1-based line of the command in this buffer's stream.
    pub line: usize,
    /// The command's verb, when the line began with one of ours.
    pub verb: Option<&'static str>,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ctl: line {}: ", self.line)?;
        if let Some(verb) = self.verb {
            write!(f, "{verb}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for CtlError {}

/// Formats the caller's own error for a command in the ctl error format,
/// `ctl: line K: VERB: WHAT`, so that application errors (no such service, …) read like
/// parse errors.
///
/// `verb` is `'static` so that it comes from [`Command::verb`](crate::Command::verb), not
/// from input; `what` must not hold input either (say "no such service; add it first with:
/// service NAME uid UID", not the name).
pub fn command_error(line: usize, verb: &'static str, what: impl fmt::Display) -> String {
    format!("ctl: line {line}: {verb}: {what}")
}

/// Displays "did you mean 'X'? " for a suggestion, nothing without one.
struct Suggest(Option<&'static str>);

impl fmt::Display for Suggest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(word) => write!(f, "did you mean '{word}'? "),
            None => Ok(()),
        }
    }
}

/// The entry of `choices` that `word` most resembles, if any is close.
///
/// Close means equal ignoring ASCII case, or within an edit distance (with adjacent
/// transpositions) of a third of the choice's length, at least 1: `st` and `sett` suggest
/// `set`, `grnat` suggests `grant`, `x` suggests nothing. Only the choice is ever shown;
/// what a suggestion does reveal is that the word was short and close to one of ours.
pub(crate) fn suggest(
    word: &[u8],
    choices: impl IntoIterator<Item = &'static str>,
) -> Option<&'static str> {
    // Longer words are not typos of ours (and this bounds the work on a huge token).
    const LONGEST: usize = 16;
    if word.len() > LONGEST {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    for choice in choices {
        let distance = if word.eq_ignore_ascii_case(choice.as_bytes()) {
            0
        } else {
            edit_distance(word, choice.as_bytes())
        };
        let limit = (choice.len() / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, choice));
        }
    }
    best.map(|(_, choice)| choice)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions each cost 1.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    // Three rows of the classic table: two back (for transpositions), previous, current.
    let mut two_back: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(two_back[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The actions of `service`, in the order "expected one of" shows them.
pub(crate) const ACTIONS: [&str; 6] = ["manifest", "remove", "resume", "suspend", "tiers", "uid"];

#[cfg(test)]
mod tests {
    use super::*;

    fn verb_words() -> impl Iterator<Item = &'static str> {
        crate::command::VERBS.iter().map(|v| v.word)
    }

    #[test]
    fn display_with_and_without_verb() {
        let e = CtlError {
            line: 2,
            verb: Some("set"),
            kind: ErrorKind::MissingArgument {
                arg: "value",
                usage: "set NAME VALUE",
            },
        };
        assert_eq!(
            e.to_string(),
            "ctl: line 2: set: missing value; usage: set NAME VALUE"
        );
        let e = CtlError {
            line: 1,
            verb: None,
            kind: ErrorKind::UnknownCommand {
                suggestion: Some("set"),
            },
        };
        assert_eq!(
            e.to_string(),
            "ctl: line 1: unknown command; did you mean 'set'? write 'help' for the list"
        );
    }

    #[test]
    fn command_error_format() {
        assert_eq!(
            command_error(
                2,
                "grant",
                "no such service; add it first with: service NAME uid UID"
            ),
            "ctl: line 2: grant: no such service; add it first with: service NAME uid UID"
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance(b"", b""), 0);
        assert_eq!(edit_distance(b"set", b"set"), 0);
        assert_eq!(edit_distance(b"st", b"set"), 1);
        assert_eq!(edit_distance(b"sett", b"set"), 1);
        assert_eq!(edit_distance(b"grnat", b"grant"), 1);
        assert_eq!(edit_distance(b"", b"set"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest(b"st", verb_words()), Some("set"));
        assert_eq!(suggest(b"SET", verb_words()), Some("set"));
        assert_eq!(suggest(b"grnat", verb_words()), Some("grant"));
        assert_eq!(suggest(b"rotatekey", verb_words()), Some("rotate-key"));
        assert_eq!(suggest(b"rotate_key", verb_words()), Some("rotate-key"));
        assert_eq!(suggest(b"delet", verb_words()), Some("delete"));
        assert_eq!(suggest(b"sevice", verb_words()), Some("service"));
        assert_eq!(suggest(b"x", verb_words()), None);
        assert_eq!(suggest(b"", verb_words()), None);
        assert_eq!(suggest(b"hello", verb_words()), None);
        assert_eq!(suggest(b"setsetsetsetsetsetset", verb_words()), None);
        assert_eq!(suggest(b"remve", ACTIONS), Some("remove"));
        assert_eq!(suggest(b"UID", ACTIONS), Some("uid"));
        assert_eq!(suggest(b"manifests", ACTIONS), Some("manifest"));
    }
}
