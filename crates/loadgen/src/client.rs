//! The closed-loop load generator: N connections, each with exactly one request
//! outstanding (pipeline depth 1), each sending its next request as soon as the reply
//! to the last one is in.
//!
//! The same code drives every server; only the pre-encoded requests differ by dialect.
//! Latency is measured per operation (the whole request sequence of the workload) with
//! the monotonic clock and kept exactly: a sorted vector of every sample, so p50 and p99
//! are nearest-rank percentiles of all operations that started after the warm-up and
//! finished before the end of the window.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinSet;

use crate::proto::{Plan, Step, check_reply};

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Connecting to the server failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The connection failed or closed mid-run.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The server answered something other than the workload expects.
    #[error("reply: {0}")]
    Reply(String),
}

/// A connection's byte stream.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// One client connection, with a buffer that holds what was read past the last reply.
pub struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    /// Connects; TCP without Nagle's delay, as every 9P client does.
    pub async fn connect(addr: &Addr) -> Result<Conn, LoadError> {
        let stream = match addr {
            Addr::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
            Addr::Tcp(a) => match TcpStream::connect(a).await {
                Ok(s) => s.set_nodelay(true).map(|()| Stream::Tcp(s)),
                Err(e) => Err(e),
            },
        }
        .map_err(|source| LoadError::Connect {
            addr: format!("{addr:?}"),
            source,
        })?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends one request and checks its reply.
    pub async fn step(&mut self, step: &Step) -> Result<(), LoadError> {
        match &mut self.stream {
            Stream::Unix(s) => s.write_all(&step.request).await?,
            Stream::Tcp(s) => s.write_all(&step.request).await?,
        }
        let len = self.read_frame().await?;
        let checked = check_reply(step, &self.buf[..len]);
        self.buf.advance(len);
        checked.map_err(LoadError::Reply)
    }

    /// Reads until the buffer holds one whole frame; returns its length.
    async fn read_frame(&mut self) -> Result<usize, LoadError> {
        loop {
            if self.buf.len() >= 4 {
                let size = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if size < ninep::HEADER_SIZE {
                    return Err(LoadError::Reply(format!("frame size {size}")));
                }
                if self.buf.len() >= size {
                    return Ok(size);
                }
                self.buf.reserve(size - self.buf.len());
            }
            let n = match &mut self.stream {
                Stream::Unix(s) => s.read_buf(&mut self.buf).await?,
                Stream::Tcp(s) => s.read_buf(&mut self.buf).await?,
            };
            if n == 0 {
                return Err(LoadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// The result of one measurement window.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Operations completed per second.
    pub ops_per_sec: f64,
    /// Median latency of one operation, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: f64,
    /// Operations counted.
    pub ops: usize,
    /// CPU time the server process spent per operation, in microseconds: its cost,
    /// which, unlike ops/s, does not depend on how much of the CPU it was given.
    pub server_cpu_us: f64,
    /// CPU time the client spent per operation, in microseconds.
    pub client_cpu_us: f64,
    /// Share of one CPU the server had during the window (1.0 = all of it).
    pub server_busy: f64,
}

/// CPU time used so far by each thread of a process, in nanoseconds, by thread id:
/// the first field of `/proc/PID/task/TID/schedstat`.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(HashMap<u32, u64>);

impl CpuTimes {
    /// The threads of process `pid`, or of this process.
    pub fn of(pid: Option<u32>) -> CpuTimes {
        let dir = match pid {
            Some(p) => format!("/proc/{p}/task"),
            None => "/proc/self/task".to_string(),
        };
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return CpuTimes::default();
        };
        CpuTimes(
            tasks
                .filter_map(|t| {
                    let t = t.ok()?;
                    let tid = t.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
                    Some((tid, stat.split_whitespace().next()?.parse().ok()?))
                })
                .collect(),
        )
    }

    /// CPU time spent since `earlier`, thread by thread: a thread that ended in between
    /// (diod's thread of a connection closed by the previous measurement, say) takes
    /// its whole past with it from a plain sum, so only the threads alive now are
    /// counted, from zero if they are new.
    pub fn since(&self, earlier: &CpuTimes) -> u64 {
        self.0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// Waits, up to `limit`, until process `pid` has used less than 5% of a CPU over 50 ms:
/// a server may still be tearing down the connections of the last measurement, and on
/// a shared CPU that work would be charged to the next one.
pub async fn settle(pid: u32, limit: Duration) {
    const TICK: Duration = Duration::from_millis(50);
    let deadline = Instant::now() + limit;
    let mut last = CpuTimes::of(Some(pid));
    while Instant::now() < deadline {
        tokio::time::sleep(TICK).await;
        let now = CpuTimes::of(Some(pid));
        if now.since(&last) < TICK.as_nanos() as u64 / 20 {
            return;
        }
        last = now;
    }
}

/// The nearest-rank percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `plan` on `conns` connections to `addr`, served by process `server_pid`: setup
/// on each, then every connection repeats the operation for `warmup + window`;
/// operations wholly inside the window are counted, and the CPU time of both processes
/// over the window is taken.
pub async fn measure(
    addr: &Addr,
    server_pid: u32,
    plan: &Plan,
    conns: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Sample, LoadError> {
    let mut ready = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut c = Conn::connect(addr).await?;
        for s in &plan.setup {
            c.step(s).await?;
        }
        ready.push(c);
    }
    let op: Arc<[Step]> = plan.op.clone().into();
    let begin = Instant::now() + warmup;
    let end = begin + window;
    let mut tasks = JoinSet::new();
    for mut conn in ready {
        let op = op.clone();
        tasks.spawn(async move {
            let mut lat: Vec<u64> = Vec::with_capacity(64 * 1024);
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                for s in op.iter() {
                    conn.step(s).await?;
                }
                let done = Instant::now();
                if start >= begin && done <= end {
                    lat.push((done - start).as_nanos() as u64);
                }
            }
            Ok::<_, LoadError>(lat)
        });
    }
    tokio::time::sleep_until(begin.into()).await;
    let (server0, client0) = (CpuTimes::of(Some(server_pid)), CpuTimes::of(None));
    tokio::time::sleep_until(end.into()).await;
    let (server1, client1) = (CpuTimes::of(Some(server_pid)), CpuTimes::of(None));
    let mut all = Vec::new();
    let mut failed = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(lat)) => all.extend(lat),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(LoadError::Io(io::Error::other(e)))),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    all.sort_unstable();
    let per_op_us = |ns: u64| ns as f64 / 1000.0 / all.len().max(1) as f64;
    let server_ns = server1.since(&server0);
    Ok(Sample {
        ops_per_sec: all.len() as f64 / window.as_secs_f64(),
        p50_us: percentile(&all, 50.0) as f64 / 1000.0,
        p99_us: percentile(&all, 99.0) as f64 / 1000.0,
        ops: all.len(),
        server_cpu_us: per_op_us(server_ns),
        client_cpu_us: per_op_us(client1.since(&client0)),
        server_busy: server_ns as f64 / window.as_nanos() as f64,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&v, 50.0), 100);
        assert_eq!(percentile(&v, 99.0), 198);
        assert_eq!(percentile(&v, 100.0), 200);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let spin = |d: Duration| {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < d {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let before = CpuTimes::of(None);
        spin(Duration::from_millis(30));
        // A thread that starts and works after `before` counts from zero; one that
        // ended is not counted at all.
        let worker = std::thread::spawn(move || {
            spin(Duration::from_millis(20));
            let t = CpuTimes::of(None);
            std::thread::sleep(Duration::from_millis(20));
            t
        });
        let with_worker = worker.join().unwrap();
        let spent = with_worker.since(&before);
        // Wall time, not CPU time, bounds the spins: on a busy machine they get less.
        assert!(spent > 10_000_000, "{spent} ns");
        let after = CpuTimes::of(Some(std::process::id()));
        assert!(after.since(&before) > 5_000_000);
        assert!(
            after.since(&before) < spent,
            "the ended worker is not counted"
        );
    }
}
