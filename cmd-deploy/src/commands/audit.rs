//! `deploy audit list | follow | verify | head`: the audit trail, read from
//! `/secrets/audit` (a stream of JSON lines) and the ctl queries `audit head`, `audit
//! since` and `audit verify`; and an exported log verified here, with the public key
//! alone, needing no server.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::Duration;

use audit::{CHANGES, Expected, PublicKey, Record, Verifier};
use ctl::{AuditQuery, Command};
use serde::Deserialize;

use super::Outcome;
use crate::cli::AuditCommand;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{printable, write_text};

/// How often `deploy audit follow` asks for new records.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How many records one `audit since` asks for.
const PAGE: u64 = 1000;

/// Runs `deploy audit ...`.
///
/// # Errors
/// A bad argument, the server's refusal, a log that does not read.
pub async fn run(
    cmd: AuditCommand,
    server: impl FnOnce() -> Result<Server, CliError>,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        AuditCommand::List {
            since,
            until,
            secret,
            service,
            action,
            chain,
            json,
        } => {
            let now = now_ms();
            let filter = Filter {
                since: since.as_deref().map(|t| when(t, now)).transpose()?,
                until: until.as_deref().map(|t| when(t, now)).transpose()?,
                secret,
                service,
                action,
                chain,
            };
            list(&filter, json, &server()?, env, out).await
        }
        AuditCommand::Follow { json } => follow(json, &server()?, env, out).await,
        AuditCommand::Verify {
            head,
            log: Some(log),
            public_key,
        } => {
            let Some(key) = public_key else {
                return Err(CliError::Usage(
                    "--log needs --public-key HEX (from `deploy audit head`, kept where the log \
                     is not)"
                        .into(),
                ));
            };
            let key = PublicKey::parse(&key).ok_or_else(|| {
                CliError::Usage(
                    "--public-key is 64 hex digits, as deploy audit head prints it".into(),
                )
            })?;
            verify_file(&log, key, &heads(&head)?, out)
        }
        AuditCommand::Verify {
            head,
            log: None,
            public_key,
        } => {
            if public_key.is_some() {
                return Err(CliError::Usage(
                    "--public-key goes with --log FILE: the server verifies with its own".into(),
                ));
            }
            heads(&head)?;
            verify_served(head, &server()?, env, out).await
        }
        AuditCommand::Head { json } => head(json, &server()?, env, out).await,
    }
}

/// `--head` values, checked.
fn heads(given: &[String]) -> Result<Vec<Expected>, CliError> {
    given
        .iter()
        .map(|h| {
            Expected::parse(h, CHANGES).ok_or_else(|| {
                CliError::Usage(format!(
                    "--head {}: a head is [CHAIN:]SEQ:HASH, as deploy audit head prints it",
                    printable(h)
                ))
            })
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time as `--since` and `--until` take it: RFC 3339 (`2025-06-01T10:00:00Z`), or a
/// duration ago (`90s`, `15m`, `1h`, `7d`, `2w`). Unix milliseconds.
///
/// # Errors
/// Neither.
pub fn when(text: &str, now_ms: u64) -> Result<u64, CliError> {
    if let Some(t) = audit::parse_time(text) {
        return Ok(t);
    }
    match model::parse_duration(text) {
        Ok(secs) => Ok(now_ms.saturating_sub(secs.saturating_mul(1000))),
        Err(_) => Err(CliError::Usage(format!(
            "{}: give a time as RFC 3339 (2025-06-01T10:00:00Z) or a time ago (90s, 15m, 1h, 7d, 2w)",
            printable(text)
        ))),
    }
}

/// What `deploy audit list` shows.
#[derive(Debug, Default)]
pub struct Filter {
    /// At or after (unix milliseconds).
    pub since: Option<u64>,
    /// At or before.
    pub until: Option<u64>,
    /// Of this secret.
    pub secret: Option<String>,
    /// Of this service (the view's, for an open).
    pub service: Option<String>,
    /// This action.
    pub action: Option<String>,
    /// In this chain.
    pub chain: Option<String>,
}

impl Filter {
    /// Whether `r` is shown.
    pub fn keeps(&self, r: &Record) -> bool {
        self.since.is_none_or(|t| r.time_ms >= t)
            && self.until.is_none_or(|t| r.time_ms <= t)
            && self
                .secret
                .as_ref()
                .is_none_or(|s| r.target.get("secret") == Some(s))
            && self.service.as_ref().is_none_or(|s| {
                r.target.get("service") == Some(s) || r.principal == format!("service {s}")
            })
            && self.action.as_ref().is_none_or(|a| r.action == *a)
            && self.chain.as_ref().is_none_or(|c| r.chain == *c)
    }
}

/// The header of `deploy audit list`'s table.
const HEADER: &str = "TIME                      RECORD         ACTION            BY                      TARGET                          VERSION  RESULT     REASON\n";

/// One row of the table: fixed columns (a long value pushes the rest along), so that
/// rows are printed as they arrive, never held.
pub fn row(r: &Record) -> String {
    let by = match r.uid {
        Some(uid) => format!("{} (uid {uid})", r.principal),
        None => r.principal.clone(),
    };
    let target = if r.target.is_empty() {
        "-".to_owned()
    } else {
        r.target
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut result = r.result.clone();
    if r.action == OPENS_NOT_RECORDED
        && let Some(n) = r.details.get("count")
    {
        result = format!("{result}: {n} opens not recorded");
    }
    let version = r.version.map_or_else(|| "-".into(), |v| v.to_string());
    let line = format!(
        "{:<25} {:<14} {:<17} {:<23} {:<31} {:<8} {:<10} {}",
        audit::format_ms(r.time_ms),
        format!("{}:{}", r.chain, r.seq),
        r.action,
        by,
        target,
        version,
        result,
        r.reason.as_deref().unwrap_or("-"),
    );
    format!("{}\n", printable(line.trim_end()))
}

/// The action of the record that counts opens not recorded (the server's word).
pub const OPENS_NOT_RECORDED: &str = "opens-not-recorded";

/// The longest line of the audit trail deploy takes: a record's fields are bounded
/// (`audit::MAX_FIELD_LEN`, `MAX_PARTS`), and a line past this is no record of the server's.
pub const MAX_LINE: usize = 1 << 20;

/// Reads `/secrets/audit` whole, handing each record (and its line, as the server wrote
/// it) to `each` as it arrives: nothing is held but the line being received.
///
/// # Errors
/// The read's, a line that is no record or longer than [`MAX_LINE`], a trail that ends
/// mid-line, and whatever `each` returns.
pub async fn read_trail(
    session: &Session,
    each: &mut dyn FnMut(&Record, &str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut lines = TrailLines {
        each,
        partial: Vec::new(),
        line: 0,
        error: None,
    };
    let read = session
        .read_into(&["secrets", "audit"], &mut lines, u64::MAX)
        .await;
    if let Some(e) = lines.error.take() {
        return Err(e);
    }
    read.map_err(|e| CliError::request("reading secrets/audit", e))?;
    if !lines.partial.is_empty() {
        return Err(CliError::Unexpected(
            "the audit trail ended in the middle of a record".into(),
        ));
    }
    Ok(())
}

/// Splits what `/secrets/audit` streams into records for [`read_trail`].
struct TrailLines<'a> {
    each: &'a mut dyn FnMut(&Record, &str) -> Result<(), CliError>,
    partial: Vec<u8>,
    line: u64,
    error: Option<CliError>,
}

impl TrailLines<'_> {
    fn record(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.line += 1;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            CliError::Unexpected(format!(
                "line {} of the audit trail is not UTF-8",
                self.line
            ))
        })?;
        let (record, _) = Record::from_json(text).map_err(|e| {
            CliError::Unexpected(format!("line {} of the audit trail: {e}", self.line))
        })?;
        (self.each)(&record, text)
    }
}

impl Write for TrailLines<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut from = self.partial.len();
        self.partial.extend_from_slice(buf);
        while let Some(at) = self.partial[from..].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=from + at).collect();
            from = 0;
            if let Err(e) = self.record(&line[..line.len() - 1]) {
                self.error = Some(e);
                return Err(io::Error::other("stopped"));
            }
        }
        if self.partial.len() > MAX_LINE {
            self.error = Some(CliError::Unexpected(format!(
                "line {} of the audit trail is longer than {MAX_LINE} bytes",
                self.line + 1
            )));
            return Err(io::Error::other("stopped"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `deploy audit list`.
async fn list(
    filter: &Filter,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let session = Session::admin(server, env).await?;
    if !json {
        write_text(out, HEADER)?;
    }
    read_trail(&session, &mut |record, text| {
        if !filter.keeps(record) {
            return Ok(());
        }
        let written = if json {
            out.write_all(crate::output::json_escaped(text).as_bytes())
                .and_then(|()| out.write_all(b"\n"))
        } else {
            out.write_all(row(record).as_bytes())
        };
        written.map_err(CliError::Stdout)
    })
    .await?;
    out.flush().map_err(CliError::Stdout)?;
    Ok(Outcome::Done)
}

/// `audit head`'s body.
#[derive(Debug, Deserialize)]
struct HeadsJson {
    public_key: Option<String>,
    heads: BTreeMap<String, HeadJson>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct HeadJson {
    seq: u64,
    hash: String,
    time: String,
}

fn heads_of(answer: &ctl::Answer) -> Result<HeadsJson, CliError> {
    let body = answer.body.as_deref().map(|b| &b[..]).unwrap_or(b"{}");
    serde_json::from_slice(body)
        .map_err(|e| CliError::Unexpected(format!("audit head does not read: {e}")))
}

/// `deploy audit head`.
async fn head(
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&Command::Audit(AuditQuery::Head)).await?;
    ctl.close().await?;
    let heads = heads_of(&answer)?;
    if json {
        let body = answer.body.as_deref().map(|b| &b[..]).unwrap_or(b"{}");
        out.write_all(body).map_err(CliError::Stdout)?;
        return Ok(Outcome::Done);
    }
    let mut text = format!(
        "public key  {}\n",
        printable(
            heads
                .public_key
                .as_deref()
                .unwrap_or("(the audit has not started)")
        )
    );
    for (chain, h) in &heads.heads {
        let line = format!("{chain:<11} {}:{}  ({})", h.seq, h.hash, h.time);
        text.push_str(&printable(&line));
        text.push('\n');
    }
    text.push_str(
        "keep a head elsewhere; `deploy audit verify --head SEQ:HASH` shows that no record up to it \
         was removed\n",
    );
    write_text(out, &text)?;
    Ok(Outcome::Done)
}

/// `deploy audit follow`: the records made from now on, as they come, until SIGINT,
/// SIGTERM or SIGHUP (exit 0).
async fn follow(
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = signals else {
        return Err(CliError::Unexpected(
            "cannot catch SIGINT, SIGTERM and SIGHUP".into(),
        ));
    };
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let start = heads_of(&ctl.send(&Command::Audit(AuditQuery::Head)).await?)?;
    // Where each chain was when following began: only what comes after is printed.
    let mut last: BTreeMap<String, u64> = start
        .heads
        .iter()
        .map(|(c, h)| (c.clone(), h.seq))
        .collect();
    loop {
        let poll = async {
            let heads = heads_of(&ctl.send(&Command::Audit(AuditQuery::Head)).await?)?;
            let mut fresh = Vec::new();
            for (chain, h) in &heads.heads {
                let at = last.entry(chain.clone()).or_insert(0);
                while *at < h.seq {
                    let answer = ctl
                        .send(&Command::Audit(AuditQuery::Since {
                            chain: Some(chain.clone()),
                            after: *at,
                            limit: Some(PAGE),
                        }))
                        .await?;
                    let body = answer.body.as_deref().map(|b| &b[..]).unwrap_or(b"");
                    let before = fresh.len();
                    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let text = std::str::from_utf8(line).map_err(|_| {
                            CliError::Unexpected("audit since gave a line that is not UTF-8".into())
                        })?;
                        let (record, _) = Record::from_json(text)
                            .map_err(|e| CliError::Unexpected(format!("audit since: {e}")))?;
                        // Each record must be the next of its chain: a gap, a repeat or a
                        // record past the head is not shipped, and following stops.
                        if record.seq != *at + 1 || record.chain != *chain || record.seq > h.seq {
                            return Err(CliError::Unexpected(format!(
                                "audit since gave record {}:{} after {chain}:{at} (head {}); \
                                 run `deploy audit verify`",
                                record.chain, record.seq, h.seq
                            )));
                        }
                        *at = record.seq;
                        fresh.push((record, text.to_owned()));
                    }
                    if fresh.len() == before {
                        break;
                    }
                }
            }
            // Merged by time, as /secrets/audit has them.
            fresh.sort_by_key(|(r, _)| r.time_ms);
            Ok::<_, CliError>(fresh)
        };
        let fresh = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            fresh = poll => fresh?,
        };
        for (record, text) in fresh {
            let line = if json {
                format!("{text}\n")
            } else {
                row(&record)
            };
            out.write_all(line.as_bytes()).map_err(CliError::Stdout)?;
        }
        out.flush().map_err(CliError::Stdout)?;
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    out.flush().map_err(CliError::Stdout)?;
    Ok(Outcome::Done)
}

/// `audit verify`'s body.
#[derive(Debug, Deserialize)]
struct VerifyJson {
    verified: bool,
    records: u64,
    signatures: u64,
    heads: BTreeMap<String, String>,
    bad: Option<BadJson>,
}

#[derive(Debug, Deserialize)]
struct BadJson {
    text: String,
}

/// `deploy audit verify [--head HEAD]...`: the server checks its whole trail.
async fn verify_served(
    heads: Vec<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl
        .send(&Command::Audit(AuditQuery::Verify { heads }))
        .await?;
    ctl.close().await?;
    let body = answer.body.as_deref().map(|b| &b[..]).unwrap_or(b"{}");
    let v: VerifyJson = serde_json::from_slice(body)
        .map_err(|e| CliError::Unexpected(format!("audit verify does not read: {e}")))?;
    if !v.verified {
        let why = v.bad.map_or_else(|| "no reason given".into(), |b| b.text);
        write_text(
            out,
            &format!("the audit trail does not verify: {}\n", printable(&why)),
        )?;
        return Ok(Outcome::Findings);
    }
    write_text(out, &verified(v.records, v.signatures, &v.heads))?;
    Ok(Outcome::Done)
}

fn verified(records: u64, signatures: u64, heads: &BTreeMap<String, String>) -> String {
    let mut text = format!("verified: {records} records, every link, {signatures} signatures\n");
    for (chain, head) in heads {
        text.push_str(&format!("  {chain:<9} {head}\n"));
    }
    text
}

/// `deploy audit verify --log FILE --public-key HEX`: an exported log (JSON lines: from
/// `/secrets/audit` or `deploy audit list --json`, unfiltered), with the key alone.
fn verify_file(
    path: &Path,
    key: PublicKey,
    expected: &[Expected],
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let file = std::fs::File::open(path).map_err(|source| CliError::Read {
        what: format!("the log {}", path.display()),
        source,
    })?;
    let mut v = Verifier::new(key);
    for e in expected {
        v.expect(e.clone());
    }
    let mut line_no = 0u64;
    let mut bad = None;
    let mut reader = io::BufReader::new(file);
    let max = MAX_LINE as u64;
    loop {
        // At most one bound line at a time: an export is untrusted input.
        let mut line = Vec::new();
        let n = Read::take(&mut reader, max + 1)
            .read_until(b'\n', &mut line)
            .map_err(|source| CliError::Read {
                what: format!("the log {}", path.display()),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if n as u64 > max {
            bad = Some(format!(
                "line {line_no}: longer than {max} bytes: not a record"
            ));
            break;
        }
        if line.is_empty() {
            continue;
        }
        let parsed = std::str::from_utf8(&line)
            .map_err(|_| "not UTF-8".to_owned())
            .and_then(|t| Record::from_json(t).map_err(|e| e.to_string()));
        let (record, claimed) = match parsed {
            Ok(p) => p,
            Err(e) => {
                bad = Some(format!("line {line_no}: not a record: {e}"));
                break;
            }
        };
        if let Err(b) = v.push(&record, claimed.as_ref(), Some(line_no)) {
            bad = Some(b.to_string());
            break;
        }
    }
    let result = match bad {
        Some(why) => Err(why),
        None => v.finish().map_err(|b| b.to_string()),
    };
    match result {
        Ok(summary) => {
            let heads = summary
                .heads
                .iter()
                .map(|(c, h)| (c.clone(), h.to_string()))
                .collect();
            write_text(out, &verified(summary.records, summary.signatures, &heads))?;
            Ok(Outcome::Done)
        }
        Err(why) => {
            write_text(
                out,
                &format!(
                    "{}\n",
                    printable(&format!("{}: does not verify: {why}", path.display()))
                ),
            )?;
            Ok(Outcome::Findings)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_time_ago() {
        let now = 1_700_000_000_000;
        assert_eq!(
            when("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(when("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(when("7d", now).unwrap(), now - 7 * 86_400_000);
        assert!(when("yesterday", now).is_err());
    }

    #[test]
    fn the_filter_keeps_what_it_names() {
        let r = audit::Event::new("service web", Some(1001), "open")
            .target("secret", "db")
            .target("service", "web")
            .chained(audit::OPENS, None, 5000);
        assert!(Filter::default().keeps(&r));
        let f = |filter: Filter| filter.keeps(&r);
        assert!(f(Filter {
            secret: Some("db".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            secret: Some("api".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            service: Some("web".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            action: Some("open".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            action: Some("set".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            since: Some(5000),
            until: Some(5000),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            since: Some(5001),
            ..Filter::default()
        }));
        assert!(row(&r).contains("secret=db service=web"));
    }
}
