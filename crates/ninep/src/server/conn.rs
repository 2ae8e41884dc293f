//! One connection: frames read from a byte stream, handed to the session, and replies
//! written back in completion order.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;
use zeroize::Zeroize;

use crate::batch::Batch;

use super::admission::{Slot, permits};
use super::session::{Outgoing, Permits, ReplyBudget, Session};
use super::{Filesystem, Limits, Peer, Shutdown};
use crate::message::{FrameHeader, HEADER_SIZE};

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    /// The client closed the connection between messages.
    Eof,
    /// The stream failed, or closed in the middle of a message.
    Io(std::io::Error),
    /// The client began a message and did not finish it in time.
    Stalled,
    /// The size field is smaller than a header: the stream cannot be resynchronised.
    Malformed(u32),
    /// The message is larger than the negotiated msize.
    TooBig(FrameHeader),
}

/// Reads one whole frame into its own buffer. Waits without limit for the first byte of
/// a message (an idle mount is normal) and at most `stall` for the rest of it.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max_size: u32,
    stall: Duration,
) -> Result<BytesMut, ReadEnd> {
    let deadline = tokio::time::Instant::now() + stall;
    loop {
        if buf.len() >= 4 {
            let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if (size as usize) < HEADER_SIZE {
                return Err(ReadEnd::Malformed(size));
            }
            if size > max_size {
                if buf.len() >= HEADER_SIZE {
                    // The header itself is sound; only the size is refused.
                    if let Ok(h) = FrameHeader::parse(&buf[..HEADER_SIZE]) {
                        return Err(ReadEnd::TooBig(h));
                    }
                }
            } else if buf.len() >= size as usize {
                return Ok(buf.split_to(size as usize));
            } else {
                buf.reserve(size as usize - buf.len());
            }
        }
        let read = if buf.is_empty() {
            rd.read_buf(buf).await
        } else {
            match tokio::time::timeout_at(deadline, rd.read_buf(buf)).await {
                Ok(r) => r,
                Err(_) => return Err(ReadEnd::Stalled),
            }
        };
        match read {
            Ok(0) if buf.is_empty() => return Err(ReadEnd::Eof),
            Ok(0) => {
                return Err(ReadEnd::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(_) => {}
            Err(e) => return Err(ReadEnd::Io(e)),
        }
    }
}

/// Writes replies as they complete, batching those that are ready together (see
/// [`Batch`] for why the buffer never grows and what is zeroed). The permits that came
/// with each reply are given back once it is written.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    timeout: Duration,
    closed: Arc<tokio::sync::Notify>,
) {
    let mut batch = Batch::new();
    let mut held: Vec<Permits> = Vec::new();
    while let Some(first) = rx.recv().await {
        let written = tokio::time::timeout(timeout, async {
            let mut next = Some(first);
            while let Some(out) = next.take() {
                batch.push(&mut wr, &out.bytes).await?;
                held.extend(out.permits);
                if !batch.is_full() {
                    next = rx.try_recv().ok();
                }
            }
            batch.flush(&mut wr).await
        })
        .await;
        held.clear();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "write failed; closing connection");
                break;
            }
            Err(_) => {
                debug!("client does not take replies; closing connection");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    closed.notify_one();
}

/// Serves one admitted connection in its `slot`: a principal's draws on the principal's
/// pool of reply permits; a stranger's has none, and keeps its small first window unless
/// it proves itself a principal with a credential.
pub(super) async fn run<F, S>(
    fs: Arc<F>,
    limits: Arc<Limits>,
    stats: Arc<super::stats::Stats>,
    slot: Slot,
    stream: S,
    peer: Peer,
    mut shutdown: Shutdown,
) where
    F: Filesystem,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let closed = Arc::new(tokio::sync::Notify::new());
    let writer = tokio::spawn(write_loop(wr, rx, limits.write_timeout, closed.clone()));
    debug!(peer = %peer.addr, "connection opened");
    // Replies not yet written, on this connection: a few until it has attached (see
    // `Limits::pre_attach_window`), then the outstanding requests, their flushes, and as
    // many again of errors and replies queued for the writer. A stranger's stays small.
    let full_window = permits(limits.max_outstanding.saturating_mul(2));
    let first_window = permits(limits.pre_attach_window).min(full_window);
    let window = Arc::new(Semaphore::new(first_window));
    let session = Arc::new(Session::new(
        fs,
        limits.clone(),
        stats,
        peer,
        tx,
        ReplyBudget {
            window: window.clone(),
            growth: full_window - first_window,
            slot,
        },
    ));
    // Requests read while no attach has succeeded.
    let mut before_attach = 0usize;
    // The largest frame fits from the start, so the buffer is not reallocated (which
    // would free bytes of Twrites, secrets among them, without zeroing them).
    let mut buf = BytesMut::with_capacity(limits.max_msize as usize + HEADER_SIZE);

    // Made once, not per message: setting up these futures on every frame showed in
    // the profile.
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let writer_gone = closed.notified();
    tokio::pin!(writer_gone);
    let attach_deadline = tokio::time::sleep(limits.attach_timeout);
    tokio::pin!(attach_deadline);
    let credential_gone = session.credential_ended();
    tokio::pin!(credential_gone);
    let graceful = loop {
        let max = session.max_frame_size();
        let frame = tokio::select! {
            _ = &mut stop => break true,
            _ = &mut writer_gone => break false,
            () = &mut credential_gone => {
                debug!("a credential it attached with no longer holds; closing");
                break false;
            }
            _ = &mut attach_deadline, if !session.has_attached() => {
                // An attach may have succeeded while this select was waiting.
                if session.has_attached() {
                    continue;
                }
                debug!("no successful attach in time; closing");
                break false;
            }
            f = read_frame(&mut rd, &mut buf, max, limits.stall_timeout) => f,
        };
        let mut frame = match frame {
            Ok(f) => f,
            Err(end) => {
                match end {
                    ReadEnd::Eof => debug!("client closed the connection"),
                    ReadEnd::TooBig(h) => {
                        debug!(size = h.size, max, "message larger than msize");
                        session.reply_error_now(
                            h.tag,
                            &format!("message of {} bytes is larger than msize {max}", h.size),
                        );
                    }
                    ReadEnd::Io(e) => debug!(error = %e, "connection failed"),
                    ReadEnd::Stalled => debug!("message not finished in time; closing"),
                    ReadEnd::Malformed(size) => {
                        debug!(size, "size field below the header size; closing")
                    }
                }
                break false;
            }
        };
        if !session.has_attached() {
            before_attach += 1;
            if before_attach > limits.max_requests_before_attach {
                let limit = limits.max_requests_before_attach;
                debug!(
                    limit,
                    "too many requests before a successful attach; closing"
                );
                if let Ok(h) = FrameHeader::parse(&frame) {
                    session.reply_error_now(
                        h.tag,
                        &format!("more than {limit} requests before a successful attach"),
                    );
                }
                // It may be a Twrite of a secret.
                frame.as_mut().zeroize();
                break false;
            }
        }
        // The permits come back when the reply is written: a client that does not read
        // its replies is not read either, once its window or its principal's pool is
        // spent.
        let permits = tokio::select! {
            _ = &mut stop => break true,
            _ = &mut writer_gone => break false,
            () = &mut credential_gone => {
                debug!("a credential it attached with no longer holds; closing");
                break false;
            }
            p = async {
                let connection = window.clone().acquire_owned().await?;
                let principal = match session.pool() {
                    Some(pool) => Some(pool.clone().acquire_owned().await?),
                    None => None,
                };
                Ok::<_, tokio::sync::AcquireError>(Permits { _connection: connection, _principal: principal })
            } => match p {
                Ok(p) => p,
                Err(_) => break false,
            },
        };
        session.handle_frame(frame, permits).await;
    };
    buf.zeroize();
    session.close(graceful).await;
    drop(session);
    let _ = writer.await;
    debug!("connection closed");
}
