//! [`CtlStream`]: one ctl fid's commands, grouped into transactions.
//!
//! A [`CtlBuffer`] turns bytes into commands; this adds what `begin`, `commit`, `abort`
//! and `help` mean, so that the server only applies what it is handed: a command alone
//! ([`Step::Apply`]) or a whole transaction ([`Step::Commit`]).
//!
//! The rules:
//! - `begin` opens a transaction. The commands that follow are held, not applied (and
//!   get no result of their own yet), until `commit` hands them all over at once: the
//!   server applies them all or none, and reports each one's result, then the commit's.
//!   `abort` drops them.
//! - A transaction holds at most [`MAX_TXN_COMMANDS`](crate::MAX_TXN_COMMANDS) commands
//!   and [`MAX_TXN_BYTES`](crate::MAX_TXN_BYTES) bytes.
//! - A command that is a transaction of its own (`rotate-key`, `catalog apply`) or reads
//!   the store as committed (`plan`, `lint`, `catalog export`) is refused inside one.
//! - An error inside a transaction (a bad command, one too many, a nested `begin`,
//!   `rotate-key`) aborts it: it is refused, and every later command up to the `commit`
//!   or `abort` that ends the transaction is skipped; the `commit` is refused too, saying
//!   where the error was. So a transaction that a client sends in many writes can never
//!   apply in part, however its writes are split.
//! - A fid closed with a transaction open applies nothing of it.
//! - `reason TEXT` says why the next change is made: it goes with the next command
//!   applied alone that is a change, or with the next transaction (given before `begin`
//!   or inside it, the last one given counting), and then is used up. A query does not
//!   use it; a refused command does (as does a transaction that fails or is aborted).

use zeroize::Zeroizing;

use crate::buffer::{CtlBuffer, Parsed};
use crate::command::{Runs, help_text};
use crate::error::{CtlError, ErrorKind};
use crate::reply::{Answer, Reply};
use crate::{Command, MAX_TXN_BYTES, MAX_TXN_COMMANDS};

/// What the server does next with a fid's stream.
#[derive(Debug)]
pub enum Step {
    /// Apply this command now, on its own, with the reason given for it (`reason TEXT`).
    Apply(Parsed, Option<String>),
    /// Apply these commands as one transaction: all or none.
    Commit(Transaction),
    /// Nothing to apply; this is the command's result (`begin`, `abort`, `help`).
    Answer(Reply),
    /// The command was refused: fail the write (or clunk) with this error, and drop the
    /// rest of the write ([`CtlStream::discard_pending`]).
    Refuse(String),
}

/// A committed transaction's commands, in order.
#[derive(Debug)]
pub struct Transaction {
    /// The line of its `begin`.
    pub begin_line: usize,
    /// The line of its `commit`.
    pub commit_line: usize,
    /// The commands between them.
    pub commands: Vec<Parsed>,
    /// The reason given for it (`reason TEXT`, before `begin` or inside).
    pub reason: Option<String>,
}

impl Transaction {
    /// The result a committed transaction ends with, after its commands' own.
    pub fn committed(&self) -> Reply {
        Reply::Ok(Answer::new(crate::command::COMMIT).field("commands", self.commands.len()))
    }
}

/// A transaction being written.
#[derive(Debug)]
struct Open {
    begin_line: usize,
    commands: Vec<Parsed>,
    bytes: usize,
    /// The line of the error that aborted it, if one did.
    aborted: Option<usize>,
}

/// One ctl fid's stream: its bytes, and the transaction they are in.
#[derive(Debug, Default)]
pub struct CtlStream {
    buffer: CtlBuffer,
    open: Option<Open>,
    /// The reason for the next change, if one was given.
    reason: Option<String>,
}

impl CtlStream {
    /// A stream at line 1, outside any transaction.
    pub fn new() -> CtlStream {
        CtlStream::default()
    }

    /// Appends a write's data; then call [`next_step`](CtlStream::next_step) until `None`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.push(bytes);
    }

    /// What to do next, `None` when the bytes so far hold nothing more to do.
    pub fn next_step(&mut self) -> Option<Step> {
        loop {
            let next = self.buffer.next_command()?;
            if let Some(step) = self.step(next) {
                return Some(step);
            }
        }
    }

    /// The fid is being clunked: the last line counts as complete. Returns the steps as
    /// [`next_step`](CtlStream::next_step) does, then, if a transaction is still open,
    /// its refusal (nothing of it applies). Call until `None`.
    pub fn finish(&mut self) -> Option<Step> {
        loop {
            match self.buffer.finish() {
                Some(next) => {
                    if let Some(step) = self.step(next) {
                        return Some(step);
                    }
                }
                None => {
                    let open = self.open.take()?;
                    // An aborted transaction has had its error.
                    if open.aborted.is_some() {
                        return None;
                    }
                    let e = CtlError {
                        line: open.begin_line,
                        verb: Some(crate::command::BEGIN),
                        kind: ErrorKind::TransactionNotCommitted,
                    };
                    return Some(Step::Refuse(e.to_string()));
                }
            }
        }
    }

    /// Drops the rest of a write after a [`Step::Refuse`] (see
    /// [`CtlBuffer::discard_pending`]). A transaction stays open, aborted if it was.
    pub fn discard_pending(&mut self) {
        self.buffer.discard_pending();
    }

    /// The connection ended without a clunk: nothing pending applies, open transaction
    /// included.
    pub fn abandon(&mut self) {
        self.buffer.discard_pending();
        self.open = None;
        self.reason = None;
    }

    /// Whether a transaction is open (aborted or not).
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// Bytes held: the unfinished line, and the commands of an open transaction.
    pub fn pending(&self) -> usize {
        self.buffer.pending() + self.open.as_ref().map_or(0, |o| o.bytes)
    }

    /// One command (or a line's error) from the buffer, in the light of the transaction.
    fn step(&mut self, next: Result<Parsed, CtlError>) -> Option<Step> {
        let parsed = match next {
            Ok(parsed) => parsed,
            Err(e) => return Some(self.refuse(e)),
        };
        let line = parsed.line;
        if let Command::Reason { text } = &parsed.command {
            if self.open.as_ref().is_some_and(|o| o.aborted.is_some()) {
                return None;
            }
            self.reason = Some(text.clone());
            return Some(Step::Answer(Reply::Ok(Answer::new(crate::command::REASON))));
        }
        let Some(open) = self.open.as_mut() else {
            return Some(match parsed.command {
                Command::Begin => {
                    self.open = Some(Open {
                        begin_line: line,
                        commands: Vec::new(),
                        bytes: 0,
                        aborted: None,
                    });
                    Step::Answer(Reply::Ok(Answer::new(crate::command::BEGIN)))
                }
                Command::Commit | Command::Abort => {
                    self.refuse(error(&parsed, ErrorKind::NoTransaction))
                }
                Command::Help => Step::Answer(help()),
                _ => {
                    let reason = if parsed.command.is_change() {
                        self.reason.take()
                    } else {
                        None
                    };
                    Step::Apply(parsed, reason)
                }
            });
        };
        match (&parsed.command, open.aborted) {
            (Command::Help, _) => Some(Step::Answer(help())),
            (Command::Abort, _) => {
                let discarded = open.commands.len();
                self.open = None;
                self.reason = None;
                Some(Step::Answer(Reply::Ok(
                    Answer::new(crate::command::ABORT).field("discarded", discarded),
                )))
            }
            (Command::Commit, Some(at)) => {
                self.open = None;
                self.reason = None;
                Some(Step::Refuse(
                    error(&parsed, ErrorKind::TransactionAborted { line: at }).to_string(),
                ))
            }
            (Command::Commit, None) => {
                let open = self.open.take()?;
                Some(Step::Commit(Transaction {
                    begin_line: open.begin_line,
                    commit_line: line,
                    commands: open.commands,
                    reason: self.reason.take(),
                }))
            }
            // Skipped: part of a transaction that is dead already.
            (_, Some(_)) => None,
            (Command::Begin, None) => Some(self.refuse(error(&parsed, ErrorKind::TransactionOpen))),
            (command, None) if command.runs() == Runs::Alone => {
                Some(self.refuse(error(&parsed, ErrorKind::NotInTransaction)))
            }
            (command, None) => {
                let weight = command.weight();
                if open.commands.len() >= MAX_TXN_COMMANDS || open.bytes + weight > MAX_TXN_BYTES {
                    return Some(self.refuse(error(&parsed, ErrorKind::TransactionTooLarge)));
                }
                open.bytes += weight;
                open.commands.push(parsed);
                None
            }
        }
    }

    /// Refuses a command, aborting the open transaction (if any) at its line. A reason
    /// given for it is used up.
    fn refuse(&mut self, e: CtlError) -> Step {
        self.reason = None;
        if let Some(open) = self.open.as_mut() {
            open.aborted.get_or_insert(e.line);
            // Nothing of it will apply: let its values go now.
            open.commands.clear();
            open.bytes = 0;
        }
        Step::Refuse(e.to_string())
    }
}

fn error(parsed: &Parsed, kind: ErrorKind) -> CtlError {
    CtlError {
        line: parsed.line,
        verb: Some(parsed.command.verb()),
        kind,
    }
}

fn help() -> Reply {
    Reply::Ok(Answer::new(crate::command::HELP).body(Zeroizing::new(help_text().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// What the server would see: each step, with transactions as their commands' verbs
    /// and names.
    fn steps(stream: &mut CtlStream, bytes: &[u8]) -> Vec<String> {
        stream.push(bytes);
        let mut out = Vec::new();
        while let Some(step) = stream.next_step() {
            let refused = matches!(step, Step::Refuse(_));
            out.push(show(step));
            if refused {
                stream.discard_pending();
            }
        }
        out
    }

    fn show(step: Step) -> String {
        match step {
            Step::Apply(p, None) => format!("apply {}@{}", p.command.verb(), p.line),
            Step::Apply(p, Some(r)) => format!("apply {}@{} ({r})", p.command.verb(), p.line),
            Step::Commit(t) => format!(
                "commit {}..{} [{}]{}",
                t.begin_line,
                t.commit_line,
                t.commands
                    .iter()
                    .map(|p| format!("{}@{}", p.command.verb(), p.line))
                    .collect::<Vec<_>>()
                    .join(" "),
                t.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            Step::Answer(r) => {
                let mut out = Vec::new();
                r.summary().encode(&mut out);
                String::from_utf8(out).unwrap().trim_end().to_string()
            }
            Step::Refuse(e) => format!("refuse {e}"),
        }
    }

    #[test]
    fn a_reason_goes_with_the_next_change_or_transaction_and_is_used_up() {
        let mut s = CtlStream::new();
        assert_eq!(
            steps(
                &mut s,
                b"reason 'INC-7: key leaked'\nhistory db\nstale\npromote db revoke-previous\nretire db\n"
            ),
            [
                "ok reason",
                "apply history@2",
                "apply stale@3",
                "apply promote@4 (INC-7: key leaked)",
                "apply retire@5"
            ]
        );
        // For a transaction: before begin or inside it, the last one given.
        assert_eq!(
            steps(
                &mut s,
                b"reason a\nbegin\nstage db {1}\nx\nreason b\npromote db\ncommit\nset c 1\n"
            ),
            [
                "ok reason",
                "ok begin",
                "ok reason",
                "commit 7..11 [stage@8 promote@10] (b)",
                "apply set@12"
            ]
        );
        // A refused command uses it up; so does an aborted transaction.
        assert_eq!(
            steps(&mut s, b"reason c\nset '' 1\nset d 1\n"),
            [
                "ok reason",
                "refuse ctl: line 14: set: invalid secret name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)"
            ]
        );
        assert_eq!(
            steps(&mut s, b"set d 1\nreason e\nbegin\nabort\nset e 1\n"),
            [
                "apply set@16",
                "ok reason",
                "ok begin",
                "ok abort discarded=0",
                "apply set@20"
            ]
        );
        assert_eq!(
            steps(&mut s, b"reason '\t'\n"),
            [format!(
                "refuse ctl: line 21: reason: {}",
                ErrorKind::BadReason
            )]
        );
    }

    #[test]
    fn outside_a_transaction_each_command_applies_alone() {
        let mut s = CtlStream::new();
        assert_eq!(
            steps(&mut s, b"set a 1\ngrant web a\nrotate-key\n"),
            ["apply set@1", "apply grant@2", "apply rotate-key@3"]
        );
        assert_eq!(
            steps(&mut s, b"commit\n"),
            ["refuse ctl: line 4: commit: no transaction is open; start one with begin"]
        );
        assert_eq!(
            steps(&mut s, b"help\n"),
            ["ok help body_bytes=".to_string() + &help_text().len().to_string()]
        );
    }

    #[test]
    fn a_transaction_is_handed_over_whole_at_commit() {
        let mut s = CtlStream::new();
        assert_eq!(steps(&mut s, b"begin\nset a 1\n"), ["ok begin"]);
        assert!(s.in_transaction());
        // Split anywhere, over any number of writes.
        assert_eq!(steps(&mut s, b"set b {3}\nx"), Vec::<String>::new());
        assert_eq!(
            steps(&mut s, b"yz\nservice web uid 7\ncom"),
            Vec::<String>::new()
        );
        assert_eq!(
            steps(&mut s, b"mit\n"),
            ["commit 1..5 [set@2 set@3 service@4]"]
        );
        assert!(!s.in_transaction());
        assert_eq!(steps(&mut s, b"delete a\n"), ["apply delete@6"]);
        // Abort drops it.
        assert_eq!(
            steps(&mut s, b"begin\ndelete b\nabort\n"),
            ["ok begin", "ok abort discarded=1"]
        );
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn an_error_aborts_the_transaction_however_the_writes_are_split() {
        let mut s = CtlStream::new();
        assert_eq!(steps(&mut s, b"begin\nset a 1\n"), ["ok begin"]);
        // The bad command fails its write; the rest of the write goes with it.
        assert_eq!(
            steps(&mut s, b"bogus\nset b 2\n"),
            ["refuse ctl: line 3: unknown command; write 'help' for the list"]
        );
        // Later writes of the dead transaction are skipped, not applied...
        assert_eq!(
            steps(&mut s, b"set c 3\ngrant web c\n"),
            Vec::<String>::new()
        );
        // ... and its commit says why nothing was applied.
        assert_eq!(
            steps(&mut s, b"commit\nset d 4\n"),
            [
                "refuse ctl: line 7: commit: the transaction was aborted by the error at line 3; \
                 nothing was applied"
            ]
        );
        // Afterwards the stream is back to normal.
        assert_eq!(steps(&mut s, b"set e 5\n"), ["apply set@9"]);
        // Nested begin and rotate-key abort too.
        for bad in ["begin", "rotate-key"] {
            let mut s = CtlStream::new();
            let out = steps(&mut s, format!("begin\n{bad}\n").as_bytes());
            assert_eq!(out.len(), 2, "{out:?}");
            assert!(
                out[1].starts_with(&format!("refuse ctl: line 2: {bad}: ")),
                "{out:?}"
            );
            assert_eq!(
                steps(&mut s, b"abort\n"),
                ["ok abort discarded=0"],
                "an aborted transaction ends with abort"
            );
        }
    }

    #[test]
    fn catalog_changes_join_a_transaction_and_queries_stay_out() {
        let mut s = CtlStream::new();
        assert_eq!(
            steps(
                &mut s,
                b"begin\ntier add t\nstrategy a tier t strip\ngenerate a\ncommit\n"
            ),
            ["ok begin", "commit 1..5 [tier@2 strategy@3 generate@4]"]
        );
        for query in [
            "plan web t",
            "lint",
            "catalog export",
            "catalog apply {0}\n",
        ] {
            let mut s = CtlStream::new();
            let out = steps(&mut s, format!("begin\n{query}\n").as_bytes());
            assert_eq!(out.len(), 2, "{out:?}");
            assert!(
                out[1].ends_with("cannot run inside a transaction; commit or abort it first"),
                "{out:?}"
            );
        }
        // Outside one, each is applied alone.
        let mut s = CtlStream::new();
        assert_eq!(steps(&mut s, b"lint t\n"), ["apply lint@1"]);
    }

    #[test]
    fn a_transaction_is_bounded() {
        let mut s = CtlStream::new();
        steps(&mut s, b"begin\n");
        let mut many = Vec::new();
        for _ in 0..MAX_TXN_COMMANDS {
            many.extend_from_slice(b"delete a\n");
        }
        assert!(steps(&mut s, &many).is_empty());
        let out = steps(&mut s, b"delete a\n");
        assert_eq!(
            out,
            [format!(
                "refuse ctl: line {}: delete: transaction too large; at most 10000 commands \
                 and 4 MiB (4194304 bytes)",
                MAX_TXN_COMMANDS + 2
            )]
        );
        // By bytes: five values of 1 MiB do not fit in 4 MiB.
        let mut s = CtlStream::new();
        steps(&mut s, b"begin\n");
        let set = Command::Set {
            name: "v".into(),
            value: Value::from(vec![0u8; crate::MAX_VALUE_LEN]),
        }
        .encode();
        for _ in 0..3 {
            assert!(steps(&mut s, &set).is_empty());
        }
        let out = steps(&mut s, &set);
        assert!(out[0].contains("transaction too large"), "{out:?}");
        // Its values are let go at once.
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_transaction_left_open_at_clunk_applies_nothing() {
        let mut s = CtlStream::new();
        steps(&mut s, b"\nbegin\nset a 1\nset b 2");
        let step = s.finish().map(show);
        assert_eq!(
            step.as_deref(),
            Some(
                "refuse ctl: line 2: begin: transaction not committed before ctl was closed; \
                 nothing was applied"
            )
        );
        assert!(s.finish().is_none());
        // Committed by the last line at clunk, it applies.
        let mut s = CtlStream::new();
        steps(&mut s, b"begin\nset a 1\ncommit");
        assert_eq!(s.finish().map(show).as_deref(), Some("commit 1..3 [set@2]"));
        assert!(s.finish().is_none());
        // An unterminated command outside a transaction is refused at clunk.
        let mut s = CtlStream::new();
        steps(&mut s, b"set z 'unterminated");
        let step = s.finish().map(show).unwrap_or_default();
        assert!(
            step.starts_with("refuse ctl: line 1: set: unterminated quote"),
            "{step}"
        );
        // A dropped connection forgets everything.
        let mut s = CtlStream::new();
        steps(&mut s, b"begin\nset a 1\nset b");
        s.abandon();
        assert!(!s.in_transaction());
        assert_eq!(s.pending(), 0);
    }
}
