//! The lines of an events file (`/events` of a service's view, `secrets/events` of the
//! admin tree): what changed, one line each, as the server writes them and `deploy watch`
//! reads them.
//!
//! ```text
//! set db_password 4
//! rotated api_key 7
//! granted db_password 4 web          (admin tree: the service it is about)
//! config log_level 118               (the version of a config key: the store's revision)
//! lost 12                            (this many lines were dropped: the reader fell behind)
//! ```
//!
//! A line is `VERB NAME VERSION`, and in the admin tree ` SERVICE` after it for the changes
//! that concern one service (granted, revoked, config). Names follow the name rule, so a
//! line has no blank but its separators; a reader skips a line it cannot read (a newer
//! server's verb), so that verbs can be added.

use std::fmt;

/// What happened to a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A new current version: `set` (or a rollback, or a stage and promote in one step
    /// that stores what a set does), or a new secret.
    Set,
    /// A pending version was promoted: it is the current one now.
    Rotated,
    /// A version was staged: readable as `NAME@pending` by the secret's grantees.
    Pending,
    /// A version that was current or previous is gone for good, or its overlap ended:
    /// `NAME@previous` no longer reads it.
    PreviousRetired,
    /// The service's grant of the secret was removed (by a revoke, or it ended).
    Revoked,
    /// The service was granted the secret.
    Granted,
    /// The secret was deleted.
    Deleted,
    /// A config key of the service's manifest was added, changed or removed.
    Config,
}

impl Verb {
    /// Every verb, in the order of the documentation.
    pub const ALL: [Verb; 8] = [
        Verb::Set,
        Verb::Rotated,
        Verb::Pending,
        Verb::PreviousRetired,
        Verb::Revoked,
        Verb::Granted,
        Verb::Deleted,
        Verb::Config,
    ];

    /// The verb as a line writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Set => "set",
            Verb::Rotated => "rotated",
            Verb::Pending => "pending",
            Verb::PreviousRetired => "previous-retired",
            Verb::Revoked => "revoked",
            Verb::Granted => "granted",
            Verb::Deleted => "deleted",
            Verb::Config => "config",
        }
    }

    /// The verb a line writes as `word`.
    pub fn parse(word: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == word)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an events file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventLine {
    /// A change.
    Change {
        /// What happened.
        verb: Verb,
        /// The secret's name, or the config key's.
        name: String,
        /// The secret's version; for a config key, the store's revision of the change.
        version: u64,
        /// The service it is about, in the admin tree's file, for granted, revoked and
        /// config.
        service: Option<String>,
    },
    /// `count` lines were dropped here: the reader did not keep up.
    Lost {
        /// How many.
        count: u64,
    },
}

/// The longest line a server writes, newline included: a verb, a name, a version and a
/// service name.
pub const MAX_EVENT_LINE: usize =
    16 + 1 + crate::MAX_NAME_LEN + 1 + 20 + 1 + crate::MAX_NAME_LEN + 1;

impl EventLine {
    /// The line, with its newline.
    pub fn render(&self) -> String {
        match self {
            EventLine::Change {
                verb,
                name,
                version,
                service,
            } => match service {
                Some(service) => format!("{verb} {name} {version} {service}\n"),
                None => format!("{verb} {name} {version}\n"),
            },
            EventLine::Lost { count } => format!("lost {count}\n"),
        }
    }

    /// A line as [`render`](EventLine::render) wrote it, with or without its newline;
    /// `None` for one this build cannot read.
    pub fn parse(line: &str) -> Option<EventLine> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["lost", count] => Some(EventLine::Lost {
                count: count.parse().ok()?,
            }),
            [verb, name, version, rest @ ..] if rest.len() <= 1 => {
                let verb = Verb::parse(verb)?;
                if !crate::is_valid_name(name) {
                    return None;
                }
                let service = match rest {
                    [service] if crate::is_valid_name(service) => Some(service.to_string()),
                    [] => None,
                    _ => return None,
                };
                Some(EventLine::Change {
                    verb,
                    name: name.to_string(),
                    version: version.parse().ok()?,
                    service,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_reads_back_as_written() {
        let lines = [
            EventLine::Change {
                verb: Verb::PreviousRetired,
                name: "db_password".into(),
                version: 3,
                service: None,
            },
            EventLine::Change {
                verb: Verb::Granted,
                name: "a.b-c".into(),
                version: u64::MAX,
                service: Some("web".into()),
            },
            EventLine::Lost { count: 12 },
        ];
        for line in lines {
            let text = line.render();
            assert!(text.len() <= MAX_EVENT_LINE, "{text}");
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            assert_eq!(EventLine::parse(&text), Some(line));
        }
        for verb in Verb::ALL {
            assert_eq!(Verb::parse(verb.as_str()), Some(verb));
        }
        assert_eq!(EventLine::parse("set db 4").unwrap().render(), "set db 4\n");
    }

    #[test]
    fn lines_this_build_cannot_read_are_none() {
        for bad in [
            "",
            "frobbed db 4",
            "set db",
            "set db four",
            "set db 4 web extra",
            "set d/b 4",
            "set db 4 we b",
            "lost",
            "lost many",
            "set  db 4",
        ] {
            assert_eq!(EventLine::parse(bad), None, "{bad:?}");
        }
    }
}
