//! A text form of every message, so transcripts and logs are readable (the idea of
//! 9fans.net/go's `fcall.go`).
//!
//! ```text
//! Tversion tag 65535 msize 8192 version '9P2000'
//! Tattach tag 1 fid 0 afid -1 uname 'glenda' aname ''
//! Twalk tag 2 fid 0 newfid 1 wname 'lib' 'file'
//! Rwalk tag 2 wqid (0000000000000002 0 d) (0000000000000003 1)
//! Tread tag 3 fid 1 offset 0 count 8192
//! Rread tag 3 data 'hello, world'
//! Rstat tag 4 stat 'file' 'glenda' 'glenda' '' q (0000000000000003 1) m 0644 at 0 mt 0 l 5 t 0 d 0
//! ```
//!
//! Strings are quoted rc-style (`''` is a quote); a string or payload with bytes outside
//! printable ASCII is written `x'<hex>'`. A qid is `(path version type)`, the type as
//! Plan 9's letters (`d` directory, `a` append, `l` exclusive, `m` mount, `A` auth,
//! `t` temporary) or as hex when other bits are set. Modes are octal; a fid of NOFID is -1.
//!
//! [`fmt::Display`] on a frame hides payloads (`data <12 bytes>`), because in this product
//! payloads are secrets and Display is what logs use. [`Tframe::transcript`] and
//! [`Rframe::transcript`] show them, for test transcripts; [`parse_tframe`] and
//! [`parse_rframe`] read that form back.

use std::fmt;

use crate::message::*;

/// Why a line of text is not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("text form: {0}")]
pub struct ParseError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Whether payloads are written out or only counted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    Show,
    Hide,
}

struct Out<'a> {
    s: &'a mut dyn fmt::Write,
    payload: Payload,
}

impl Out<'_> {
    fn word(&mut self, w: &str) -> fmt::Result {
        write!(self.s, " {w}")
    }

    fn num(&mut self, key: &str, v: impl fmt::Display) -> fmt::Result {
        write!(self.s, " {key} {v}")
    }

    fn fid(&mut self, key: &str, fid: u32) -> fmt::Result {
        if fid == NOFID {
            write!(self.s, " {key} -1")
        } else {
            write!(self.s, " {key} {fid}")
        }
    }

    fn octal(&mut self, key: &str, v: u32) -> fmt::Result {
        write!(self.s, " {key} 0{v:o}")
    }

    fn string(&mut self, key: Option<&str>, v: &str) -> fmt::Result {
        if let Some(key) = key {
            write!(self.s, " {key}")?;
        }
        self.s.write_char(' ')?;
        quote(self.s, v.as_bytes())
    }

    fn data(&mut self, d: &Data) -> fmt::Result {
        match self.payload {
            Payload::Hide => write!(self.s, " data <{} bytes>", d.len()),
            Payload::Show => {
                self.s.write_str(" data ")?;
                quote(self.s, d.expose())
            }
        }
    }

    fn qid(&mut self, q: &Qid) -> fmt::Result {
        write!(self.s, " ({:016x} {}", q.path, q.version)?;
        let letters = qid_letters(q.ty);
        match letters {
            Some(l) if l.is_empty() => self.s.write_char(')'),
            Some(l) => write!(self.s, " {l})"),
            None => write!(self.s, " 0x{:02x})", q.ty),
        }
    }

    fn stat(&mut self, st: &Stat) -> fmt::Result {
        self.s.write_str(" stat")?;
        self.string(None, &st.name)?;
        self.string(None, &st.uid)?;
        self.string(None, &st.gid)?;
        self.string(None, &st.muid)?;
        self.s.write_str(" q")?;
        self.qid(&st.qid)?;
        self.octal("m", st.mode)?;
        self.num("at", st.atime)?;
        self.num("mt", st.mtime)?;
        self.num("l", st.length)?;
        self.num("t", st.ty)?;
        self.num("d", st.dev)
    }
}

const QID_LETTERS: [(u8, char); 6] = [
    (qt::DIR, 'd'),
    (qt::APPEND, 'a'),
    (qt::EXCL, 'l'),
    (qt::MOUNT, 'm'),
    (qt::AUTH, 'A'),
    (qt::TMP, 't'),
];

fn qid_letters(ty: u8) -> Option<String> {
    let known: u8 = QID_LETTERS.iter().map(|(b, _)| b).fold(0, |a, b| a | b);
    if ty & !known != 0 {
        return None;
    }
    Some(
        QID_LETTERS
            .iter()
            .filter(|(bit, _)| ty & bit != 0)
            .map(|(_, c)| *c)
            .collect(),
    )
}

fn quote(s: &mut dyn fmt::Write, bytes: &[u8]) -> fmt::Result {
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        s.write_char('\'')?;
        for &b in bytes {
            if b == b'\'' {
                s.write_str("''")?;
            } else {
                s.write_char(b as char)?;
            }
        }
        s.write_char('\'')
    } else {
        s.write_str("x'")?;
        for b in bytes {
            write!(s, "{b:02x}")?;
        }
        s.write_char('\'')
    }
}

fn write_tframe(f: &Tframe, s: &mut dyn fmt::Write, payload: Payload) -> fmt::Result {
    write!(s, "{} tag {}", f.msg.name(), f.tag)?;
    let mut o = Out { s, payload };
    match &f.msg {
        Tmessage::Version(m) => {
            o.num("msize", m.msize)?;
            o.string(Some("version"), &m.version)
        }
        Tmessage::Auth(m) => {
            o.fid("afid", m.afid)?;
            o.string(Some("uname"), &m.uname)?;
            o.string(Some("aname"), &m.aname)
        }
        Tmessage::Attach(m) => {
            o.fid("fid", m.fid)?;
            o.fid("afid", m.afid)?;
            o.string(Some("uname"), &m.uname)?;
            o.string(Some("aname"), &m.aname)
        }
        Tmessage::Flush(m) => o.num("oldtag", m.oldtag),
        Tmessage::Walk(m) => {
            o.fid("fid", m.fid)?;
            o.fid("newfid", m.newfid)?;
            if !m.wnames.is_empty() {
                o.word("wname")?;
                for n in &m.wnames {
                    o.string(None, n)?;
                }
            }
            Ok(())
        }
        Tmessage::Open(m) => {
            o.fid("fid", m.fid)?;
            o.num("mode", m.mode)
        }
        Tmessage::Create(m) => {
            o.fid("fid", m.fid)?;
            o.string(Some("name"), &m.name)?;
            o.octal("perm", m.perm)?;
            o.num("mode", m.mode)
        }
        Tmessage::Read(m) => {
            o.fid("fid", m.fid)?;
            o.num("offset", m.offset)?;
            o.num("count", m.count)
        }
        Tmessage::Write(m) => {
            o.fid("fid", m.fid)?;
            o.num("offset", m.offset)?;
            o.data(&m.data)
        }
        Tmessage::Clunk(Tclunk { fid })
        | Tmessage::Remove(Tremove { fid })
        | Tmessage::Stat(Tstat { fid }) => o.fid("fid", *fid),
        Tmessage::Wstat(m) => {
            o.fid("fid", m.fid)?;
            o.stat(&m.stat.0)
        }
    }
}

fn write_rframe(f: &Rframe, s: &mut dyn fmt::Write, payload: Payload) -> fmt::Result {
    write!(s, "{} tag {}", f.msg.name(), f.tag)?;
    let mut o = Out { s, payload };
    match &f.msg {
        Rmessage::Version(m) => {
            o.num("msize", m.msize)?;
            o.string(Some("version"), &m.version)
        }
        Rmessage::Auth(m) => {
            o.word("aqid")?;
            o.qid(&m.aqid)
        }
        Rmessage::Attach(m) => {
            o.word("qid")?;
            o.qid(&m.qid)
        }
        Rmessage::Error(m) => o.string(Some("ename"), &m.ename),
        Rmessage::Walk(m) => {
            if !m.wqids.is_empty() {
                o.word("wqid")?;
                for q in &m.wqids {
                    o.qid(q)?;
                }
            }
            Ok(())
        }
        Rmessage::Open(Ropen { qid, iounit }) | Rmessage::Create(Rcreate { qid, iounit }) => {
            o.word("qid")?;
            o.qid(qid)?;
            o.num("iounit", iounit)
        }
        Rmessage::Read(m) => o.data(&m.data),
        Rmessage::Write(m) => o.num("count", m.count),
        Rmessage::Stat(m) => o.stat(&m.stat.0),
        Rmessage::Flush(_) | Rmessage::Clunk(_) | Rmessage::Remove(_) | Rmessage::Wstat(_) => {
            Ok(())
        }
    }
}

impl fmt::Display for Tframe {
    /// The text form with payloads hidden: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_tframe(self, f, Payload::Hide)
    }
}

impl fmt::Display for Rframe {
    /// The text form with payloads hidden: safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rframe(self, f, Payload::Hide)
    }
}

impl Tframe {
    /// The text form with payloads written out, for transcripts. Never log this: a
    /// Twrite to a ctl file carries a secret.
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write_tframe(self, &mut s, Payload::Show);
        s
    }
}

impl Rframe {
    /// The text form with payloads written out, for transcripts. Never log this: an
    /// Rread of a secret file carries the secret.
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = write_rframe(self, &mut s, Payload::Show);
        s
    }
}

// ---- Parsing ----

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(Vec<u8>),
    Open,
    Close,
}

fn tokenize(line: &str) -> Result<Vec<Token>, ParseError> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'x' if b.get(i + 1) == Some(&b'\'') => {
                let end = line[i + 2..]
                    .find('\'')
                    .map(|e| i + 2 + e)
                    .ok_or_else(|| ParseError("unterminated x'' string".into()))?;
                let hex = &line[i + 2..end];
                if !hex.len().is_multiple_of(2) {
                    return err("odd number of hex digits");
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| ParseError("bad hex digit".into()))?;
                out.push(Token::Quoted(bytes));
                i = end + 1;
            }
            b'\'' => {
                let mut v = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return err("unterminated quoted string"),
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                            v.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Quoted(v));
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'(' | b')' | b'\'') {
                    i += 1;
                }
                out.push(Token::Word(line[start..i].to_string()));
            }
        }
    }
    Ok(out)
}

struct Tokens {
    toks: std::iter::Peekable<std::vec::IntoIter<Token>>,
}

impl Tokens {
    fn next(&mut self, what: &str) -> Result<Token, ParseError> {
        self.toks
            .next()
            .ok_or_else(|| ParseError(format!("missing {what}")))
    }

    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next(what)? {
            Token::Word(w) => Ok(w),
            t => err(format!("expected {what}, found {t:?}")),
        }
    }

    fn key(&mut self, key: &str) -> Result<(), ParseError> {
        let w = self.word(key)?;
        if w == key {
            Ok(())
        } else {
            err(format!("expected '{key}', found '{w}'"))
        }
    }

    fn num<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, ParseError> {
        self.key(key)?;
        let w = self.word(key)?;
        w.parse()
            .map_err(|_| ParseError(format!("{key}: not a number: '{w}'")))
    }

    fn fid(&mut self, key: &str) -> Result<u32, ParseError> {
        self.key(key)?;
        let w = self.word(key)?;
        if w == "-1" {
            return Ok(NOFID);
        }
        w.parse()
            .map_err(|_| ParseError(format!("{key}: not a fid: '{w}'")))
    }

    fn octal(&mut self, key: &str) -> Result<u32, ParseError> {
        self.key(key)?;
        let w = self.word(key)?;
        let digits = w.strip_prefix('0').unwrap_or(&w);
        if digits.is_empty() {
            return Ok(0);
        }
        u32::from_str_radix(digits, 8).map_err(|_| ParseError(format!("{key}: not octal: '{w}'")))
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, ParseError> {
        match self.next(what)? {
            Token::Quoted(v) => Ok(v),
            t => err(format!("expected quoted {what}, found {t:?}")),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| ParseError(format!("{what} is not UTF-8")))
    }

    fn keyed_string(&mut self, key: &str) -> Result<String, ParseError> {
        self.key(key)?;
        self.string(key)
    }

    fn data(&mut self) -> Result<Data, ParseError> {
        self.key("data")?;
        Ok(Data::from(self.bytes("data")?))
    }

    fn qid(&mut self) -> Result<Qid, ParseError> {
        match self.next("qid")? {
            Token::Open => {}
            t => return err(format!("expected '(' of a qid, found {t:?}")),
        }
        let path = self.word("qid path")?;
        let path =
            u64::from_str_radix(&path, 16).map_err(|_| ParseError("qid path: not hex".into()))?;
        let version = self
            .word("qid version")?
            .parse()
            .map_err(|_| ParseError("qid version: not a number".into()))?;
        let ty = match self.next("qid type or ')'")? {
            Token::Close => {
                return Ok(Qid {
                    ty: 0,
                    version,
                    path,
                });
            }
            Token::Word(w) => {
                let ty = parse_qid_type(&w)?;
                match self.next("')'")? {
                    Token::Close => ty,
                    t => return err(format!("expected ')', found {t:?}")),
                }
            }
            t => return err(format!("bad qid type {t:?}")),
        };
        Ok(Qid { ty, version, path })
    }

    fn stat(&mut self) -> Result<Stat, ParseError> {
        self.key("stat")?;
        let name = self.string("name")?;
        let uid = self.string("uid")?;
        let gid = self.string("gid")?;
        let muid = self.string("muid")?;
        self.key("q")?;
        let qid = self.qid()?;
        let mode = self.octal("m")?;
        Ok(Stat {
            qid,
            mode,
            atime: self.num("at")?,
            mtime: self.num("mt")?,
            length: self.num("l")?,
            ty: self.num("t")?,
            dev: self.num("d")?,
            name,
            uid,
            gid,
            muid,
        })
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.toks.next() {
            None => Ok(()),
            Some(t) => err(format!("unexpected {t:?} at end of line")),
        }
    }
}

fn parse_qid_type(w: &str) -> Result<u8, ParseError> {
    if let Some(hex) = w.strip_prefix("0x") {
        return u8::from_str_radix(hex, 16).map_err(|_| ParseError("qid type: bad hex".into()));
    }
    let mut ty = 0;
    for c in w.chars() {
        let (bit, _) = QID_LETTERS
            .iter()
            .find(|(_, l)| *l == c)
            .ok_or_else(|| ParseError(format!("qid type: unknown letter '{c}'")))?;
        ty |= bit;
    }
    Ok(ty)
}

fn start(line: &str) -> Result<(String, u16, Tokens), ParseError> {
    let mut t = Tokens {
        toks: tokenize(line)?.into_iter().peekable(),
    };
    let name = t.word("message name")?;
    let tag = t.num("tag")?;
    Ok((name, tag, t))
}

/// Parses the text form of a T-message, as [`Tframe::transcript`] writes it.
pub fn parse_tframe(line: &str) -> Result<Tframe, ParseError> {
    let (name, tag, mut t) = start(line)?;
    let msg: Tmessage = match name.as_str() {
        "Tversion" => Tversion {
            msize: t.num("msize")?,
            version: t.keyed_string("version")?,
        }
        .into(),
        "Tauth" => Tauth {
            afid: t.fid("afid")?,
            uname: t.keyed_string("uname")?,
            aname: t.keyed_string("aname")?,
        }
        .into(),
        "Tattach" => Tattach {
            fid: t.fid("fid")?,
            afid: t.fid("afid")?,
            uname: t.keyed_string("uname")?,
            aname: t.keyed_string("aname")?,
        }
        .into(),
        "Tflush" => Tflush {
            oldtag: t.num("oldtag")?,
        }
        .into(),
        "Twalk" => {
            let fid = t.fid("fid")?;
            let newfid = t.fid("newfid")?;
            let mut wnames = Vec::new();
            if t.toks.peek().is_some() {
                t.key("wname")?;
                while t.toks.peek().is_some() {
                    wnames.push(t.string("wname")?);
                }
            }
            Twalk {
                fid,
                newfid,
                wnames,
            }
            .into()
        }
        "Topen" => Topen {
            fid: t.fid("fid")?,
            mode: t.num("mode")?,
        }
        .into(),
        "Tcreate" => Tcreate {
            fid: t.fid("fid")?,
            name: t.keyed_string("name")?,
            perm: t.octal("perm")?,
            mode: t.num("mode")?,
        }
        .into(),
        "Tread" => Tread {
            fid: t.fid("fid")?,
            offset: t.num("offset")?,
            count: t.num("count")?,
        }
        .into(),
        "Twrite" => Twrite {
            fid: t.fid("fid")?,
            offset: t.num("offset")?,
            data: t.data()?,
        }
        .into(),
        "Tclunk" => Tclunk { fid: t.fid("fid")? }.into(),
        "Tremove" => Tremove { fid: t.fid("fid")? }.into(),
        "Tstat" => Tstat { fid: t.fid("fid")? }.into(),
        "Twstat" => Twstat {
            fid: t.fid("fid")?,
            stat: WrappedStat(t.stat()?),
        }
        .into(),
        other => return err(format!("unknown T-message '{other}'")),
    };
    t.end()?;
    Ok(Tframe { tag, msg })
}

/// Parses the text form of an R-message, as [`Rframe::transcript`] writes it.
pub fn parse_rframe(line: &str) -> Result<Rframe, ParseError> {
    let (name, tag, mut t) = start(line)?;
    let msg: Rmessage = match name.as_str() {
        "Rversion" => Rversion {
            msize: t.num("msize")?,
            version: t.keyed_string("version")?,
        }
        .into(),
        "Rauth" => {
            t.key("aqid")?;
            Rauth { aqid: t.qid()? }.into()
        }
        "Rattach" => {
            t.key("qid")?;
            Rattach { qid: t.qid()? }.into()
        }
        "Rerror" => Rerror {
            ename: t.keyed_string("ename")?,
        }
        .into(),
        "Rflush" => Rflush {}.into(),
        "Rwalk" => {
            let mut wqids = Vec::new();
            if t.toks.peek().is_some() {
                t.key("wqid")?;
                while t.toks.peek().is_some() {
                    wqids.push(t.qid()?);
                }
            }
            Rwalk { wqids }.into()
        }
        "Ropen" | "Rcreate" => {
            t.key("qid")?;
            let qid = t.qid()?;
            let iounit = t.num("iounit")?;
            if name == "Ropen" {
                Ropen { qid, iounit }.into()
            } else {
                Rcreate { qid, iounit }.into()
            }
        }
        "Rread" => Rread { data: t.data()? }.into(),
        "Rwrite" => Rwrite {
            count: t.num("count")?,
        }
        .into(),
        "Rclunk" => Rclunk {}.into(),
        "Rremove" => Rremove {}.into(),
        "Rstat" => Rstat {
            stat: WrappedStat(t.stat()?),
        }
        .into(),
        "Rwstat" => Rwstat {}.into(),
        other => return err(format!("unknown R-message '{other}'")),
    };
    t.end()?;
    Ok(Rframe { tag, msg })
}
