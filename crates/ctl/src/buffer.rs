//! [`CtlBuffer`]: one open ctl fid's stream of bytes, turned into commands.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::error::{CtlError, ErrorKind, command_error};
use crate::parse::{max_literal, parse_line, verb_of};
use crate::scan::{Event, Scanner};
use crate::{Command, MAX_CATALOG_LINE_LEN, MAX_LINE_LEN};

/// A complete command and the line it was on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The 1-based line of the command in this buffer's stream (blank lines count).
    pub line: usize,
    /// The command.
    pub command: Command,
}

impl Parsed {
    /// The caller's own error about this command, in the ctl error format:
    /// `ctl: line K: VERB: WHAT`. `what` must not hold input (see [`command_error`]).
    pub fn error(&self, what: impl fmt::Display) -> String {
        command_error(self.line, self.command.verb(), what)
    }
}

/// The ctl state of one open fid: the bytes of its writes, in order, and where the current
/// line stands.
///
/// The server calls [`push`](CtlBuffer::push) with each Twrite's data, then
/// [`next_command`](CtlBuffer::next_command) until it returns `None`, applying each command.
/// On an error it calls [`discard_pending`](CtlBuffer::discard_pending) and fails the
/// Twrite: the commands before the bad line were applied, the bad line and everything after
/// it in that write were not. At clunk it calls [`finish`](CtlBuffer::finish) until `None`.
///
/// Memory is bounded: the bytes of an unfinished line are held up to
/// [`MAX_LINE_LEN`] (a `catalog` line with a catalog file in it, up to
/// [`MAX_CATALOG_LINE_LEN`]), so one fid holds at most that plus one write. Every byte that
/// leaves the buffer (parsed, skipped or discarded) is zeroed first, as is the whole buffer
/// when it is dropped: values pass through it.
pub struct CtlBuffer {
    /// Bytes pushed. Those before `start` are consumed (already zeroed).
    buf: Zeroizing<Vec<u8>>,
    /// The first byte of the current line.
    start: usize,
    /// Bytes before this have been through the scanner.
    scan: usize,
    /// The scanner's state at `scan`.
    scanner: Scanner,
    /// The current line is being dropped, not parsed: it was too long, or an error
    /// discarded its start.
    skipping: bool,
    /// The verb of the line being skipped, for the error of a write it swallows.
    skip_verb: Option<&'static str>,
    /// Bytes were pushed since the last time the buffer ran dry while skipping: a write
    /// that the skip swallows whole gets an error, rather than succeed having done nothing.
    pushed: bool,
    /// Lines ended so far (commands, blank lines, bad and skipped lines).
    lines: usize,
    /// How long the current line may grow: [`MAX_LINE_LEN`], or more once a `catalog`
    /// line's file literal was found.
    line_limit: usize,
    /// Bytes the scanner has looked at, to test that nothing is scanned twice.
    #[cfg(test)]
    scanned: usize,
}

impl Default for CtlBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CtlBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtlBuffer")
            .field("pending", &self.pending())
            .field("lines", &self.lines)
            .field("skipping", &self.skipping)
            .finish_non_exhaustive()
    }
}

impl CtlBuffer {
    /// An empty buffer at line 1.
    pub fn new() -> Self {
        CtlBuffer {
            buf: Zeroizing::new(Vec::new()),
            start: 0,
            scan: 0,
            scanner: Scanner::new(),
            skipping: false,
            skip_verb: None,
            pushed: false,
            lines: 0,
            line_limit: MAX_LINE_LEN,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Appends a write's data. Offsets are the caller's business: ctl is a stream.
    ///
    /// Call [`next_command`](CtlBuffer::next_command) until `None` after each push; bytes
    /// pushed and not yet scanned are not counted against [`MAX_LINE_LEN`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        let needed = self.buf.len() + bytes.len();
        if needed > self.buf.capacity() {
            // Grow by hand: Vec's own growth would free the old allocation unzeroed.
            let doubled = (2 * self.buf.capacity()).min(self.line_limit + MIN_CAPACITY);
            let mut grown =
                Zeroizing::new(Vec::with_capacity(needed.max(doubled).max(MIN_CAPACITY)));
            grown.extend_from_slice(&self.buf);
            // Dropping the old buffer zeroes it.
            self.buf = grown;
        }
        self.buf.extend_from_slice(bytes);
        self.pushed = !bytes.is_empty();
    }

    /// The next complete command, or the error of the next complete line; `None` when the
    /// bytes pushed so far hold no complete line. Blank lines are skipped.
    ///
    /// An unfinished line longer than [`MAX_LINE_LEN`] gives
    /// [`ErrorKind::CommandTooLong`] as soon as it passes the limit, and a `{N}` header with
    /// N too large gives [`ErrorKind::LiteralTooLong`] as soon as it is complete; the rest
    /// of such a line, in this write or later ones, is then skipped, never read as commands.
    pub fn next_command(&mut self) -> Option<Result<Parsed, CtlError>> {
        loop {
            if self.skipping {
                let (_, event) = self.scan_to(self.buf.len());
                self.consume(self.scan);
                match event {
                    Some(Event::LineEnd { .. }) => {
                        self.lines += 1;
                        self.skipping = false;
                        self.skip_verb = None;
                    }
                    // Already skipping: this line has had its error.
                    Some(Event::LongLiteral(_)) => {}
                    // The skip goes on past what was pushed: the write that brought these
                    // bytes did nothing, and says so.
                    None if std::mem::take(&mut self.pushed) => {
                        return Some(Err(CtlError {
                            line: self.lines + 1,
                            verb: self.skip_verb,
                            kind: ErrorKind::StillSkipping,
                        }));
                    }
                    None => return None,
                }
                continue;
            }
            let window = self.buf.len().min(self.start + self.line_limit + 1);
            let (_, event) = self.scan_to(window);
            let line = self.lines + 1;
            match event {
                Some(Event::LineEnd { cr }) => {
                    self.lines = line;
                    self.line_limit = MAX_LINE_LEN;
                    // The line without its newline and the CR before it.
                    let end = self.scan - 1 - usize::from(cr);
                    let parsed = parse_line(&self.buf[self.start..end]);
                    self.consume(self.scan);
                    match parsed {
                        Ok(None) => continue,
                        Ok(Some(command)) => return Some(Ok(Parsed { line, command })),
                        Err((verb, kind)) => return Some(Err(CtlError { line, verb, kind })),
                    }
                }
                Some(Event::LongLiteral(n)) => {
                    // A catalog file may be longer than a value; its line, accordingly.
                    let verb = verb_of(&self.buf[self.start..self.scan]);
                    if n <= max_literal(verb) as u64 {
                        self.line_limit = MAX_CATALOG_LINE_LEN;
                        continue;
                    }
                    return Some(Err(self.abandon(ErrorKind::LiteralTooLong)));
                }
                None if self.scan - self.start > self.line_limit => {
                    return Some(Err(self.abandon(ErrorKind::CommandTooLong)));
                }
                None => return None,
            }
        }
    }

    /// Drops every byte pushed and not yet returned as a command, after an error: the rest
    /// of the failed write. If that leaves a line unfinished (its end is still to come in
    /// a later write), the rest of that line is skipped too: the tail of a command whose
    /// start was discarded must not be read as commands. Line numbers stay true to the
    /// stream.
    pub fn discard_pending(&mut self) {
        loop {
            let (_, event) = self.scan_to(self.buf.len());
            match event {
                Some(Event::LineEnd { .. }) => self.lines += 1,
                Some(Event::LongLiteral(_)) => {}
                None => break,
            }
        }
        self.skipping = !self.scanner.blank();
        self.line_limit = MAX_LINE_LEN;
        // The write being discarded has had its error.
        self.pushed = false;
        self.consume(self.scan);
    }

    /// Ends the stream (the fid is being clunked): a last line without a newline counts as
    /// complete. Returns what [`next_command`](CtlBuffer::next_command) would, and then that
    /// last line's command or error; call it until `None`.
    ///
    /// A quote still open is [`ErrorKind::UnterminatedQuote`], literal bytes still due are
    /// [`ErrorKind::LiteralCutShort`]. Afterwards the buffer is empty and at a line start.
    pub fn finish(&mut self) -> Option<Result<Parsed, CtlError>> {
        if let Some(result) = self.next_command() {
            return Some(result);
        }
        // next_command scanned every byte (a longer line would have been an error) and
        // found no line end.
        let partial = self.start < self.scan;
        let result = if self.skipping || self.scanner.blank() {
            None
        } else {
            let line = self.lines + 1;
            let text = &self.buf[self.start..self.scan];
            let kind = if self.scanner.in_quote() {
                Some(ErrorKind::UnterminatedQuote)
            } else if self.scanner.in_literal() {
                Some(ErrorKind::LiteralCutShort)
            } else {
                None
            };
            match kind {
                Some(kind) => Some(Err(CtlError {
                    line,
                    verb: verb_of(text),
                    kind,
                })),
                None => {
                    let end = text.len() - usize::from(self.scanner.trailing_cr());
                    match parse_line(&text[..end]) {
                        Ok(None) => None,
                        Ok(Some(command)) => Some(Ok(Parsed { line, command })),
                        Err((verb, kind)) => Some(Err(CtlError { line, verb, kind })),
                    }
                }
            }
        };
        if partial || self.skipping {
            self.lines += 1;
        }
        self.consume(self.scan);
        self.scanner = Scanner::new();
        self.skipping = false;
        self.skip_verb = None;
        self.line_limit = MAX_LINE_LEN;
        result
    }

    /// Bytes held: the unfinished line and anything pushed but not yet scanned.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Scans from `scan` up to `end`, remembering how far it got.
    fn scan_to(&mut self, end: usize) -> (usize, Option<Event>) {
        let (n, event) = self.scanner.scan(&self.buf[self.scan..end]);
        self.scan += n;
        #[cfg(test)]
        {
            self.scanned += n;
        }
        (n, event)
    }

    /// Gives up on the current line with `kind`: its bytes so far are dropped and the rest
    /// of it will be skipped.
    fn abandon(&mut self, kind: ErrorKind) -> CtlError {
        let error = CtlError {
            line: self.lines + 1,
            verb: verb_of(&self.buf[self.start..self.scan]),
            kind,
        };
        self.consume(self.scan);
        self.skipping = true;
        self.skip_verb = error.verb;
        self.line_limit = MAX_LINE_LEN;
        // This write has its error already.
        self.pushed = false;
        error
    }

    /// Zeroes and drops the bytes before `upto`.
    fn consume(&mut self, upto: usize) {
        self.buf[self.start..upto].zeroize();
        self.start = upto;
        if self.start == self.buf.len() {
            if self.buf.capacity() > KEEP_CAPACITY {
                // Do not hold a megabyte per idle fid after one large value; dropping the
                // old buffer zeroes it.
                self.buf = Zeroizing::new(Vec::new());
            } else {
                // All zeroed already; clearing keeps the allocation for the next write.
                self.buf.clear();
            }
            self.start = 0;
            self.scan = 0;
        }
    }

    /// Moves the unconsumed bytes to the front, zeroing the copies left behind.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        let keep = self.buf.len() - self.start;
        self.buf.copy_within(self.start.., 0);
        self.buf[keep..].zeroize();
        self.buf.truncate(keep);
        self.scan -= self.start;
        self.start = 0;
    }
}

/// The smallest allocation worth making: one 9pfuse write.
const MIN_CAPACITY: usize = 4096;

/// The largest allocation kept once the buffer is empty: a few ordinary writes.
const KEEP_CAPACITY: usize = 64 * 1024;

#[cfg(test)]
mod tests;
