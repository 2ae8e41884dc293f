//! `deploy watch [SERVICE] [--json]`: the server's change events as they happen, and the
//! events stream `deploy service run --restart-on-change` reads.
//!
//! The admin tree's `secrets/events` has every change; SERVICE's view's `/events` (attached
//! on its behalf, as the admin may) has the changes that service is told of. A read of an
//! events file waits on the server until something changes, so these reads are not bound
//! by `--timeout`: opening the file is.

use std::io::Write;

use model::EventLine;
use ninep::client::{ClientError, Fid};
use tokio::signal::unix::{SignalKind, signal};

use super::Outcome;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{printable, write_text};

/// The most bytes of a line without its end that a stream keeps: a srv-secrets line is far
/// shorter ([`model::MAX_EVENT_LINE`]), so more is not one.
const MAX_PARTIAL: usize = 4 * model::MAX_EVENT_LINE;

/// An open events file, read a batch of whole lines at a time.
pub struct EventStream {
    fid: Fid,
    /// Where the file is: `secrets/events` or `SERVICE's /events`, for errors.
    what: String,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
}

/// One line read: its text, and what it says if this build can read it.
pub struct Line {
    /// The line, without its newline.
    pub text: String,
    /// The line read, or `None` for one this build does not know (a newer server's).
    pub event: Option<EventLine>,
}

impl EventStream {
    /// Opens the events file of `session`'s tree: the admin tree's `secrets/events`, or
    /// (`service`) the view's `/events`. Changes from this moment on are read.
    ///
    /// # Errors
    /// [`CliError::Request`], or no answer within the timeout.
    pub async fn open(session: &Session, service: Option<&str>) -> Result<EventStream, CliError> {
        let (path, what): (&[&str], String) = match service {
            Some(s) => (&["events"], format!("{s}'s /events")),
            None => (&["secrets", "events"], "secrets/events".to_string()),
        };
        let fid = session
            .open(path)
            .await
            .map_err(|e| CliError::request(format!("opening {what}"), e))?;
        Ok(EventStream {
            fid,
            what,
            partial: Vec::new(),
        })
    }

    /// The next lines, waiting as long as it takes for at least one.
    ///
    /// # Errors
    /// [`CliError::Request`] when the read fails (the server shut down, the view ended).
    pub async fn next(&mut self) -> Result<Vec<Line>, CliError> {
        loop {
            let data = self
                .fid
                .read(0, self.fid.io_size())
                .await
                .map_err(|e| CliError::request(format!("reading {}", self.what), e))?;
            // An empty read is the end of a batch (see srv-secrets' fs/events.rs): read on.
            self.partial.extend_from_slice(data.expose());
            let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
                if self.partial.len() > MAX_PARTIAL {
                    return Err(CliError::request(
                        format!("reading {}", self.what),
                        ClientError::Protocol("a line longer than srv-secrets writes".into()),
                    ));
                }
                continue;
            };
            let rest = self.partial.split_off(end + 1);
            let whole = std::mem::replace(&mut self.partial, rest);
            let lines = String::from_utf8_lossy(&whole)
                .lines()
                .map(|text| Line {
                    text: text.to_string(),
                    event: EventLine::parse(text),
                })
                .collect();
            return Ok(lines);
        }
    }
}

/// `deploy watch [SERVICE] [--json]`: prints each change as it comes, until Ctrl-C,
/// SIGTERM or SIGHUP, which end it with status 0.
///
/// # Errors
/// Connecting, attaching, or the read failing (the server shut down).
pub async fn watch(
    server: &Server,
    env: &Env,
    service: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if let Some(service) = service {
        super::validate(&ctl::Command::ServiceRemove {
            service: service.to_string(),
        })?;
    }
    let signals = |kind| {
        signal(kind).map_err(|e| CliError::Unexpected(format!("cannot handle signals: {e}")))
    };
    let (mut int, mut term, mut hup) = (
        signals(SignalKind::interrupt())?,
        signals(SignalKind::terminate())?,
        signals(SignalKind::hangup())?,
    );
    let session = match service {
        Some(s) => Session::service_view(server, env, s, "watch").await?,
        None => Session::admin(server, env).await?,
    };
    let mut stream = EventStream::open(&session, service).await?;
    loop {
        let lines = tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            lines = stream.next() => lines?,
        };
        let mut text = String::new();
        for line in lines {
            if json {
                if let Some(event) = &line.event {
                    text.push_str(&json_line(event));
                    text.push('\n');
                }
            } else {
                text.push_str(&printable(&line.text));
                text.push('\n');
            }
        }
        write_text(out, &text)?;
    }
    // Dropping the session closes the connection: the server forgets the waiting read.
    Ok(Outcome::Done)
}

/// One line as a JSON object on one line: `{"verb":"set","name":"db","version":4}`, with
/// `"service"` in the admin tree's lines that have one; `{"verb":"lost","count":12}`.
fn json_line(event: &EventLine) -> String {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        verb: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    }
    let json = match event {
        EventLine::Change {
            verb,
            name,
            version,
            service,
        } => Json {
            verb: verb.as_str(),
            name: Some(name),
            version: Some(*version),
            service: service.as_deref(),
            count: None,
        },
        EventLine::Lost { count } => Json {
            verb: "lost",
            name: None,
            version: None,
            service: None,
            count: Some(*count),
        },
    };
    // Names follow the name rule: nothing to fail on.
    serde_json::to_string(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_hold_what_the_line_says() {
        let line =
            |t: &str| json_line(&EventLine::parse(t).unwrap_or(EventLine::Lost { count: 0 }));
        assert_eq!(
            line("set db 4"),
            r#"{"verb":"set","name":"db","version":4}"#
        );
        assert_eq!(
            line("granted db 4 web"),
            r#"{"verb":"granted","name":"db","version":4,"service":"web"}"#
        );
        assert_eq!(line("lost 12"), r#"{"verb":"lost","count":12}"#);
    }
}
