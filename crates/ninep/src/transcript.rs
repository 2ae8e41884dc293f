//! Golden transcripts: a text file of T-messages to send and the R-messages expected
//! back, played against a server over any byte stream (the idea of 9fans.net/go's
//! `srv9p/testdata`).
//!
//! ```text
//! # A comment.
//! Tversion tag 65535 msize 8192 version '9P2000.L'
//! Rversion tag 65535 msize 8192 version '9P2000'
//! Tread tag 1 fid 9 offset 0 count 10
//! Rerror tag 1 ename 'unknown fid'
//! ```
//!
//! Consecutive T-lines are sent together (pipelined) before the R-lines after them are
//! read; replies must come in the order written. An R-line whose payload is written
//! `data <N bytes>` is compared in the payload-hiding form, so a long read need not be
//! spelled out. An R-line that ends in ` ...` matches any reply whose text form starts
//! with the rest of it (`Rattach tag 1 ...`: attached, whatever the qid), for servers
//! whose qids are not worth spelling out. Blank lines and `#` comments are ignored.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::{HEADER_SIZE, Rframe};
use crate::text::{parse_rframe, parse_tframe};

/// Where a transcript and the server disagree.
#[derive(Debug, thiserror::Error)]
#[error("{name}:{line}: {what}")]
pub struct Mismatch {
    /// The transcript's name.
    pub name: String,
    /// The 1-based line of the transcript.
    pub line: usize,
    /// What differed.
    pub what: String,
}

/// How long to wait for each reply before calling it missing.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

async fn read_reply<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Rframe, String> {
    let mut header = [0u8; 4];
    rd.read_exact(&mut header)
        .await
        .map_err(|e| format!("reading a reply: {e}"))?;
    let size = u32::from_le_bytes(header) as usize;
    if size < HEADER_SIZE {
        return Err(format!("reply size field {size} is below the header size"));
    }
    let mut frame = vec![0u8; size];
    frame[..4].copy_from_slice(&header);
    rd.read_exact(&mut frame[4..])
        .await
        .map_err(|e| format!("reading a reply: {e}"))?;
    Rframe::decode(&frame).map_err(|e| format!("undecodable reply: {e}"))
}

/// Plays `script` (named `name` in errors) over `stream`.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    name: &str,
    script: &str,
    stream: S,
) -> Result<(), Mismatch> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let fail = |line: usize, what: String| Mismatch {
        name: name.to_string(),
        line,
        what,
    };
    let mut batch = Vec::new();
    for (i, raw) in script.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('T') {
            let frame = parse_tframe(line).map_err(|e| fail(line_no, e.to_string()))?;
            batch.extend_from_slice(&frame.to_bytes());
            continue;
        }
        if !line.starts_with('R') {
            return Err(fail(line_no, "a line must start with T or R".into()));
        }
        if !batch.is_empty() {
            wr.write_all(&batch)
                .await
                .map_err(|e| fail(line_no, format!("sending: {e}")))?;
            batch.clear();
        }
        let got = tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut rd))
            .await
            .map_err(|_| fail(line_no, format!("no reply within {REPLY_TIMEOUT:?}")))?
            .map_err(|e| fail(line_no, e))?;
        let hidden = line.contains(" bytes>");
        let (want, got) = if let Some(prefix) = line.strip_suffix(" ...") {
            let got = got.transcript();
            let want = if got.starts_with(prefix) {
                got.clone()
            } else {
                line.to_string()
            };
            (want, got)
        } else if hidden {
            (line.to_string(), got.to_string())
        } else {
            let want = parse_rframe(line).map_err(|e| fail(line_no, e.to_string()))?;
            (want.transcript(), got.transcript())
        };
        if want != got {
            return Err(fail(
                line_no,
                format!("reply differs\n  want: {want}\n   got: {got}"),
            ));
        }
    }
    if !batch.is_empty() {
        wr.write_all(&batch)
            .await
            .map_err(|e| fail(script.lines().count(), format!("sending: {e}")))?;
    }
    Ok(())
}
