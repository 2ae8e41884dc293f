//! Frames written in batches, without leaving copies of them in freed memory.
//!
//! Replies carry file contents and requests carry ctl commands: secrets, in this
//! product. A growing `Vec` frees its old buffer unzeroed when it reallocates, so the
//! batch never grows: a frame that does not fit is written after what is buffered, and
//! a frame larger than the whole batch is written straight from where it is. Only the
//! bytes used are zeroed after each write, not the whole capacity (zeroing 256 KiB
//! after every 64-byte reply cost 5% of the server's CPU).

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use zeroize::{Zeroize, Zeroizing};

/// How many bytes of frames are gathered into one write.
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

pub(crate) struct Batch {
    buf: Vec<u8>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            buf: Vec::with_capacity(BATCH_BYTES),
        }
    }

    /// Whether the batch should be written before gathering more.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= BATCH_BYTES
    }

    /// Adds a frame, writing out what is buffered first if the frame would not fit.
    pub(crate) async fn push<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        frame: &[u8],
    ) -> io::Result<()> {
        if self.buf.len() + frame.len() > self.buf.capacity() {
            self.flush(w).await?;
        }
        if frame.len() > self.buf.capacity() {
            return w.write_all(frame).await;
        }
        self.buf.extend_from_slice(frame);
        Ok(())
    }

    /// Writes what is buffered, then zeroes it.
    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let written = w.write_all(&self.buf).await;
        self.buf.as_mut_slice().zeroize();
        self.buf.clear();
        written
    }

    /// Writes `first` and whatever else is queued (up to a batch), in one write where
    /// they fit.
    pub(crate) async fn write_queued<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        first: Zeroizing<Vec<u8>>,
        queued: &mut impl FnMut() -> Option<Zeroizing<Vec<u8>>>,
    ) -> io::Result<()> {
        self.push(w, &first).await?;
        drop(first);
        while !self.is_full() {
            match queued() {
                Some(next) => self.push(w, &next).await?,
                None => break,
            }
        }
        self.flush(w).await
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.buf.as_mut_slice().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_whatever_their_size() {
        let sizes = [10usize, BATCH_BYTES - 5, 20, BATCH_BYTES * 2, 7];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8; n])
            .collect();
        let mut queue: VecDeque<Zeroizing<Vec<u8>>> =
            frames.iter().skip(1).cloned().map(Zeroizing::new).collect();
        let mut out = Vec::new();
        let mut b = Batch::new();
        let cap = b.buf.capacity();
        b.write_queued(&mut out, Zeroizing::new(frames[0].clone()), &mut || {
            queue.pop_front()
        })
        .await
        .unwrap();
        while let Some(f) = queue.pop_front() {
            b.write_queued(&mut out, f, &mut || None).await.unwrap();
        }
        assert_eq!(out, frames.concat());
        assert_eq!(b.buf.capacity(), cap, "the buffer never reallocated");
        assert!(b.buf.is_empty());
    }
}
