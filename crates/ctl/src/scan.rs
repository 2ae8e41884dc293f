//! The boundary scanner: where does the current line end?
//!
//! A line ends at an unquoted newline, but a newline may sit inside quotes or inside the
//! bytes of a `{N}` literal, and the bytes arrive in pieces. The scanner is a small state
//! machine that remembers, between pieces, whether it is inside a quote, how many literal
//! bytes are still due, and so on; each byte is looked at once, so a 1 MiB value arriving in
//! 4 KiB writes costs O(1 MiB), not O(1 MiB²/4 KiB). Parsing the line is left to
//! [`parse`](crate::parse); the two agree on literal headers by construction (a `{` at the
//! start of a token, digits, `}`, an optional CR, a newline).

use crate::MAX_VALUE_LEN;
use crate::parse::decimal;

/// Where the scanner is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a token: the line's start, or after a blank.
    Gap,
    /// Inside a word, outside quotes.
    Word,
    /// Inside `'...'`.
    Quote,
    /// Just after a `'` inside a quote: another `'` continues the quote, anything else
    /// means it closed.
    QuoteEnd,
    /// After a `{` at the start of a token.
    LitOpen,
    /// After `{` and digits; holds N so far (saturating).
    LitDigits(u64),
    /// After `{N}`.
    LitClose(u64),
    /// After `{N}` and a CR.
    LitCr(u64),
    /// Inside a literal's bytes; holds how many are still due.
    LitBody(u64),
}

/// What the scanner stopped for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The line ended at the last byte scanned (its newline); `cr` says the byte before the
    /// newline was an unquoted CR, to be dropped.
    LineEnd {
        /// Whether an unquoted CR preceded the newline.
        cr: bool,
    },
    /// A `{N}` header with N above [`MAX_VALUE_LEN`] ended at the last byte scanned: too
    /// long for a value, and the buffer decides whether its line may hold it (a catalog
    /// file). The scanner goes on to expect N bytes, so that they can be skipped rather
    /// than read as commands.
    LongLiteral(u64),
}

/// The scanner's state between pieces of input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scanner {
    state: State,
    /// The last byte was a CR outside quotes and literal bytes.
    cr: bool,
    /// The current line holds only blanks so far.
    blank: bool,
}

impl Scanner {
    /// A scanner at the start of a line.
    pub(crate) const fn new() -> Self {
        Scanner {
            state: State::Gap,
            cr: false,
            blank: true,
        }
    }

    /// Whether the current line holds only blanks so far.
    pub(crate) fn blank(&self) -> bool {
        self.blank
    }

    /// Whether the stream ending now would leave a quote open.
    pub(crate) fn in_quote(&self) -> bool {
        self.state == State::Quote
    }

    /// Whether the stream ending now would leave literal bytes due.
    pub(crate) fn in_literal(&self) -> bool {
        matches!(self.state, State::LitBody(_))
    }

    /// Whether the last byte was an unquoted CR (dropped if the stream ends here).
    pub(crate) fn trailing_cr(&self) -> bool {
        self.cr
    }

    /// Scans `input` until an event or its end. Returns how many bytes were consumed
    /// (through the event's last byte) and the event, if any.
    pub(crate) fn scan(&mut self, input: &[u8]) -> (usize, Option<Event>) {
        let mut i = 0;
        while i < input.len() {
            // Fast paths for the states that hold long runs of bytes.
            match self.state {
                State::Quote => {
                    self.cr = false;
                    self.blank = false;
                    match input[i..].iter().position(|&b| b == b'\'') {
                        Some(at) => {
                            i += at + 1;
                            self.state = State::QuoteEnd;
                        }
                        None => i = input.len(),
                    }
                    continue;
                }
                State::LitBody(due) => {
                    self.cr = false;
                    // Bounded by the input's length, so the cast back to usize is lossless.
                    let n = due.min((input.len() - i) as u64);
                    i += n as usize;
                    self.state = if due == n {
                        State::Word
                    } else {
                        State::LitBody(due - n)
                    };
                    continue;
                }
                _ => {}
            }
            let b = input[i];
            i += 1;
            if let Some(event) = self.byte(b) {
                return (i, Some(event));
            }
        }
        (i, None)
    }

    /// One byte in any state but the fast-path ones.
    fn byte(&mut self, b: u8) -> Option<Event> {
        let cr = std::mem::replace(&mut self.cr, false);
        match self.state {
            State::Gap => self.plain(b, true, cr),
            State::Word => self.plain(b, false, cr),
            State::Quote => {
                if b == b'\'' {
                    self.state = State::QuoteEnd;
                }
                None
            }
            State::QuoteEnd => {
                if b == b'\'' {
                    self.state = State::Quote;
                    None
                } else {
                    self.plain(b, false, cr)
                }
            }
            State::LitOpen => {
                if b.is_ascii_digit() {
                    self.state = State::LitDigits(decimal(&[b]));
                    None
                } else {
                    self.plain(b, false, cr)
                }
            }
            State::LitDigits(n) => match b {
                b'0'..=b'9' => {
                    self.state =
                        State::LitDigits(decimal(&[b]).saturating_add(n.saturating_mul(10)));
                    None
                }
                b'}' => {
                    self.state = State::LitClose(n);
                    None
                }
                _ => self.plain(b, false, cr),
            },
            State::LitClose(n) => match b {
                b'\n' => self.header(n),
                b'\r' => {
                    self.state = State::LitCr(n);
                    self.cr = true;
                    None
                }
                _ => self.plain(b, false, cr),
            },
            State::LitCr(n) => {
                if b == b'\n' {
                    self.header(n)
                } else {
                    self.plain(b, false, cr)
                }
            }
            State::LitBody(due) => {
                self.state = if due <= 1 {
                    State::Word
                } else {
                    State::LitBody(due - 1)
                };
                None
            }
        }
    }

    /// A byte outside quotes and literals; `gap` says a token may start here.
    fn plain(&mut self, b: u8, gap: bool, cr: bool) -> Option<Event> {
        match b {
            b' ' | b'\t' => self.state = State::Gap,
            b'\n' => {
                *self = Scanner::new();
                return Some(Event::LineEnd { cr });
            }
            b'\'' => {
                self.state = State::Quote;
                self.blank = false;
            }
            b'{' if gap => {
                self.state = State::LitOpen;
                self.blank = false;
            }
            _ => {
                self.state = State::Word;
                self.cr = b == b'\r';
                self.blank = false;
            }
        }
        None
    }

    /// A complete literal header announcing `n` bytes.
    fn header(&mut self, n: u64) -> Option<Event> {
        self.state = if n == 0 {
            State::Word
        } else {
            State::LitBody(n)
        };
        (n > MAX_VALUE_LEN as u64).then_some(Event::LongLiteral(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` whole and lists (end offset, event) pairs.
    fn events(input: &[u8]) -> Vec<(usize, Event)> {
        let mut s = Scanner::new();
        let mut at = 0;
        let mut out = Vec::new();
        while at < input.len() {
            let (n, e) = s.scan(&input[at..]);
            at += n;
            if let Some(e) = e {
                out.push((at, e));
            }
        }
        out
    }

    const END: Event = Event::LineEnd { cr: false };
    const CREND: Event = Event::LineEnd { cr: true };

    #[test]
    fn line_ends() {
        assert_eq!(events(b"a\nb\n"), vec![(2, END), (4, END)]);
        assert_eq!(events(b"a\r\n"), vec![(3, CREND)]);
        assert_eq!(events(b"'a\r'\n"), vec![(5, END)]);
        assert_eq!(events(b"'a\nb'\n"), vec![(6, END)]);
        assert_eq!(events(b"'a''\nb'\n"), vec![(8, END)]);
        assert_eq!(events(b"'a'''\n"), vec![(6, END)]);
        assert_eq!(events(b"'a''\n"), vec![]);
        assert_eq!(events(b"\n\n"), vec![(1, END), (2, END)]);
        assert_eq!(events(b" \r\n"), vec![(3, CREND)]);
    }

    #[test]
    fn literals() {
        assert_eq!(events(b"set c {5}\nab\ncd\n"), vec![(16, END)]);
        assert_eq!(events(b"set c {5}\r\nab\ncd\r\n"), vec![(18, CREND)]);
        assert_eq!(events(b"{0}\n\n"), vec![(5, END)]);
        assert_eq!(events(b"{2}\n\r\n\n"), vec![(7, END)]);
        // Not at a token start, or not a header: ordinary bytes.
        assert_eq!(events(b"x{2}\nab\n"), vec![(5, END), (8, END)]);
        assert_eq!(events(b"{12x}\nab\n"), vec![(6, END), (9, END)]);
        assert_eq!(events(b"{}\n"), vec![(3, END)]);
        assert_eq!(events(b"{2} \n"), vec![(5, END)]);
        assert_eq!(events(b"{2}\r \n"), vec![(6, END)]);
        assert_eq!(events(b"{2'\n'\n"), vec![(6, END)]);
        assert_eq!(events(b"'x'{2}\n"), vec![(7, END)]);
        // A header past the limit is reported, and its bytes are still expected.
        assert_eq!(
            events(b"set a {1048577}\n"),
            vec![(16, Event::LongLiteral(1048577))]
        );
        let mut big = b"{1048577}\n".to_vec();
        big.extend(vec![b'\n'; 1048577]);
        big.extend(b"\n");
        assert_eq!(
            events(&big),
            vec![(10, Event::LongLiteral(1048577)), (big.len(), END)]
        );
        assert_eq!(
            events(b"{99999999999999999999999}\n"),
            vec![(26, Event::LongLiteral(u64::MAX))]
        );
    }

    #[test]
    fn byte_at_a_time_agrees() {
        let input = b"set c {5}\r\nab\ncd\r\n'q''\n' x\n{12x}\n\r\r\n";
        let mut s = Scanner::new();
        let mut got = Vec::new();
        for (i, &b) in input.iter().enumerate() {
            let (n, e) = s.scan(&[b]);
            assert_eq!(n, 1);
            if let Some(e) = e {
                got.push((i + 1, e));
            }
        }
        assert_eq!(got, events(input));
    }

    #[test]
    fn end_of_stream_state() {
        let mut s = Scanner::new();
        s.scan(b"set a 'x");
        assert!(s.in_quote() && !s.blank());
        let mut s = Scanner::new();
        s.scan(b"set a {5}\nab");
        assert!(s.in_literal());
        let mut s = Scanner::new();
        s.scan(b" \t");
        assert!(s.blank());
        let mut s = Scanner::new();
        s.scan(b"rotate-key\r");
        assert!(s.trailing_cr());
        let mut s = Scanner::new();
        s.scan(b"{5}\r");
        assert!(s.trailing_cr());
    }
}
