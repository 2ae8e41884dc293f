//! [`Reply`]: what reading a ctl fid returns, one per command written on it, and
//! [`ReplyReader`], which a client uses to take them apart again.
//!
//! The server writes and the client parses with this one module, so the two cannot drift.
//!
//! ```text
//! reply   = ok | error ;
//! ok      = "ok" SP VERB { SP item } [ SP body ] LF ;
//! item    = WORD | KEY "=" VALUE ;          no blanks or newlines; a WORD has no "="
//! body    = "{" N "}" LF N * byte ;         an answer of any size, any bytes
//! error   = TEXT LF ;                       the command's error, as the write's Rerror
//!                                           said it (it begins "ctl: "); not "ok"
//! ```
//!
//! `ok grant web db_password already=no`, `ok set db_password version=3`,
//! `ok help {412}` followed by 412 bytes and a newline, or
//! `ctl: line 2: grant: no such service; ...`. A shell reads them with `cat ctl`;
//! `deploy` with [`ReplyReader`].

use std::fmt;

use zeroize::Zeroizing;

/// The largest body a [`ReplyReader`] accepts: far above any answer the server gives
/// (a bundle, a plan), small enough that a hostile server cannot make a client hold much.
pub const MAX_BODY_LEN: usize = 64 << 20;

/// The longest first line of a reply a [`ReplyReader`] waits for.
const MAX_LINE: usize = 64 * 1024;

/// One command's result.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// It was applied (or, for `help`, answered).
    Ok(Answer),
    /// It was refused; the text is the error the write (or clunk) answered with.
    Err(String),
}

/// The answer to a command that succeeded: its verb, the names it acted on, facts as
/// `key=value`, and for some commands a body.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The command's verb (`set`, `grant`, ...).
    pub verb: String,
    /// The names it acted on, in the command's order (`web`, `db_password`).
    pub words: Vec<String>,
    /// Facts about the outcome (`version=3`, `already=no`).
    pub fields: Vec<(String, String)>,
    /// A longer answer (`help`'s text); zeroized, because later answers may carry values.
    pub body: Option<Zeroizing<Vec<u8>>>,
}

impl Answer {
    /// An answer for `verb`, with nothing in it yet.
    pub fn new(verb: &str) -> Answer {
        Answer {
            verb: verb.to_string(),
            ..Answer::default()
        }
    }

    /// Adds a name the command acted on.
    pub fn word(mut self, word: impl Into<String>) -> Answer {
        self.words.push(word.into());
        self
    }

    /// Adds a fact, `key=value`.
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Answer {
        self.fields.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a body.
    pub fn body(mut self, body: Zeroizing<Vec<u8>>) -> Answer {
        self.body = Some(body);
        self
    }

    /// The value of the fact `key`, if the answer has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The fact `key` as a number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The fact `key` as yes/no.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }
    }

    /// The first line, without a body's length.
    fn line(&self) -> String {
        let mut line = format!("ok {}", item(&self.verb, false));
        for w in &self.words {
            line.push(' ');
            line.push_str(&item(w, false));
        }
        for (k, v) in &self.fields {
            line.push(' ');
            line.push_str(&item(k, false));
            line.push('=');
            line.push_str(&item(v, true));
        }
        line
    }
}

/// An item as it goes on the line: what would break the line's syntax (blanks,
/// newlines, and in a word or key an `=`) becomes `_`. Names never hold any of them; this
/// keeps a caller's mistake from forging replies.
fn item(text: &str, value: bool) -> String {
    text.chars()
        .map(|c| match c {
            ' ' | '\t' | '\n' | '\r' => '_',
            '=' if !value => '_',
            c => c,
        })
        .collect()
}

impl Reply {
    /// Whether the command succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok(_))
    }

    /// Appends the reply's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok(a) => {
                out.extend_from_slice(a.line().as_bytes());
                if let Some(body) = &a.body {
                    out.extend_from_slice(format!(" {{{}}}\n", body.len()).as_bytes());
                    out.extend_from_slice(body);
                }
                out.push(b'\n');
            }
            Reply::Err(text) => {
                out.extend_from_slice(text.replace(['\n', '\r'], " ").as_bytes());
                out.push(b'\n');
            }
        }
    }

    /// The reply as one short line, never a body: what a connection's recent results keep
    /// (an answer's body is read on the fid that asked for it, and nowhere else).
    pub fn summary(&self) -> Reply {
        match self {
            Reply::Ok(a) if a.body.is_some() => {
                let len = a.body.as_ref().map_or(0, |b| b.len());
                let mut short = a.clone();
                short.body = None;
                Reply::Ok(short.field("body_bytes", len))
            }
            other => other.clone(),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok(a) => write!(f, "Ok({a:?})"),
            Reply::Err(text) => write!(f, "Err({text:?})"),
        }
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("line", &self.line())
            .field("body", &self.body.as_ref().map(|b| b.len()))
            .finish()
    }
}

/// A stream of reply bytes that does not follow the format (a server of another version,
/// or not srv-secrets at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadReply {
    /// A first line longer than any reply's.
    #[error("a result line is too long")]
    LineTooLong,
    /// A body larger than [`MAX_BODY_LEN`].
    #[error("a result's body is too large")]
    BodyTooLarge,
    /// A body not followed by its newline.
    #[error("a result's body does not end where its length says")]
    BodyUnterminated,
    /// Not UTF-8.
    #[error("a result line is not text")]
    NotText,
}

/// Takes the bytes read from a ctl fid apart into [`Reply`]s, however the reads split them.
#[derive(Default)]
pub struct ReplyReader {
    buf: Zeroizing<Vec<u8>>,
}

impl ReplyReader {
    /// An empty reader.
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    /// Adds bytes read from the fid.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes pushed and not yet returned as a reply.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete reply, `None` until one is complete.
    ///
    /// # Errors
    /// [`BadReply`] when the bytes cannot be a reply; the reader is then of no more use.
    pub fn next_reply(&mut self) -> Option<Result<Reply, BadReply>> {
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            return (self.buf.len() > MAX_LINE).then_some(Err(BadReply::LineTooLong));
        };
        if nl > MAX_LINE {
            return Some(Err(BadReply::LineTooLong));
        }
        let Ok(line) = std::str::from_utf8(&self.buf[..nl]) else {
            return Some(Err(BadReply::NotText));
        };
        let Some(rest) = line.strip_prefix("ok ") else {
            let reply = Reply::Err(line.to_string());
            self.consume(nl + 1);
            return Some(Ok(reply));
        };
        let mut items: Vec<&str> = rest.split(' ').filter(|s| !s.is_empty()).collect();
        let body_len = match items.last().and_then(|s| body_header(s)) {
            Some(n) if n > MAX_BODY_LEN as u64 => return Some(Err(BadReply::BodyTooLarge)),
            Some(n) => {
                items.pop();
                Some(n as usize)
            }
            None => None,
        };
        let mut answer = Answer::new(items.first().copied().unwrap_or_default());
        for it in items.iter().skip(1) {
            match it.split_once('=') {
                Some((k, v)) => answer.fields.push((k.to_string(), v.to_string())),
                None => answer.words.push(it.to_string()),
            }
        }
        let used = match body_len {
            None => nl + 1,
            Some(n) => {
                let start = nl + 1;
                let end = start + n;
                if self.buf.len() < end + 1 {
                    return None;
                }
                if self.buf[end] != b'\n' {
                    return Some(Err(BadReply::BodyUnterminated));
                }
                answer.body = Some(Zeroizing::new(self.buf[start..end].to_vec()));
                end + 1
            }
        };
        self.consume(used);
        Some(Ok(Reply::Ok(answer)))
    }

    fn consume(&mut self, n: usize) {
        // Zeroizing<Vec> zeroes only on drop: wipe what leaves by hand.
        zeroize::Zeroize::zeroize(&mut self.buf[..n]);
        self.buf.drain(..n);
    }
}

/// The N of a `{N}` item.
fn body_header(item: &str) -> Option<u64> {
    let digits = item.strip_prefix('{')?.strip_suffix('}')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(replies: &[Reply]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in replies {
            r.encode(&mut out);
        }
        out
    }

    fn decode_split(bytes: &[u8], piece: usize) -> Vec<Reply> {
        let mut reader = ReplyReader::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            reader.push(chunk);
            while let Some(r) = reader.next_reply() {
                out.push(r.unwrap());
            }
        }
        assert_eq!(reader.pending(), 0);
        out
    }

    #[test]
    fn the_formats() {
        let grant = Reply::Ok(
            Answer::new("grant")
                .word("web")
                .word("db_password")
                .field("already", "no"),
        );
        let help = Reply::Ok(Answer::new("help").body(Zeroizing::new(b"a\nb\n".to_vec())));
        let err = Reply::Err("ctl: line 2: grant: no such service".into());
        assert_eq!(
            encode(&[grant.clone(), help.clone(), err.clone()]),
            b"ok grant web db_password already=no\nok help {4}\na\nb\n\nctl: line 2: grant: no such service\n"
        );
        assert_eq!(
            help.summary(),
            Reply::Ok(Answer::new("help").field("body_bytes", 4))
        );
        assert!(grant.is_ok() && !err.is_ok());
    }

    #[test]
    fn round_trips_however_the_reads_split() {
        let body: Vec<u8> = (0..=255u8).chain(*b"\nok fake\n").collect();
        let replies = vec![
            Reply::Ok(Answer::new("set").word("db").field("version", 3)),
            Reply::Ok(Answer::new("bundle").word("web").body(Zeroizing::new(body))),
            Reply::Err("ctl: line 3: set: value too long".into()),
            Reply::Ok(Answer::new("begin")),
            Reply::Ok(Answer::new("help").body(Zeroizing::new(Vec::new()))),
        ];
        let bytes = encode(&replies);
        for piece in [1, 2, 7, 64, bytes.len()] {
            assert_eq!(decode_split(&bytes, piece), replies, "pieces of {piece}");
        }
        let r = &replies[0];
        let Reply::Ok(a) = r else { panic!() };
        assert_eq!(a.number("version"), Some(3));
        assert_eq!(a.get("nothing"), None);
    }

    #[test]
    fn items_cannot_break_the_line() {
        let sneaky = Reply::Ok(
            Answer::new("set")
                .word("a b\nok forged")
                .field("k=x", "v 1=2"),
        );
        let bytes = encode(&[sneaky]);
        assert_eq!(bytes, b"ok set a_b_ok_forged k_x=v_1=2\n");
        let err = encode(&[Reply::Err("one\ntwo".into())]);
        assert_eq!(err, b"one two\n");
        let back = decode_split(&bytes, 3);
        let Reply::Ok(a) = &back[0] else { panic!() };
        assert_eq!(a.get("k_x"), Some("v_1=2"));
    }

    #[test]
    fn hostile_bytes_are_refused() {
        let mut r = ReplyReader::new();
        r.push(&vec![b'x'; MAX_LINE + 1]);
        assert_eq!(r.next_reply(), Some(Err(BadReply::LineTooLong)));
        let mut r = ReplyReader::new();
        r.push(b"ok help {99999999999}\n");
        assert_eq!(r.next_reply(), Some(Err(BadReply::BodyTooLarge)));
        let mut r = ReplyReader::new();
        r.push(b"ok help {2}\nabc\n");
        assert_eq!(r.next_reply(), Some(Err(BadReply::BodyUnterminated)));
        let mut r = ReplyReader::new();
        r.push(b"\xff\n");
        assert_eq!(r.next_reply(), Some(Err(BadReply::NotText)));
        // A body still arriving is waited for.
        let mut r = ReplyReader::new();
        r.push(b"ok help {5}\nab");
        assert_eq!(r.next_reply(), None);
    }
}
