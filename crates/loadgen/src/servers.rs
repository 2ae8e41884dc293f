//! The three servers under load, each in its own process so that client and server are
//! apart as they are with diod:
//!
//! - `ours`: the ninep server core serving the ramfs example with one 64-byte file;
//!   this bench binary re-executed with `--serve ours`.
//! - `diod`: the diod binary (9P2000.L only) exporting a directory on tmpfs that holds
//!   the same file.
//! - `echo`: this binary with `--serve echo`: answers each T-message with a reply
//!   encoded once at startup, its tag patched, and no filesystem behind it. What the
//!   client and the transport can do at best.
//!
//! Servers run until their stdin closes (the bench holds the other end) or they are
//! killed; the bench kills its children by their handles when done.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ninep::ramfs::RamFs;
use ninep::server::{Limits, Server, Shutdown, bind_unix};
use ninep::{
    HEADER_SIZE, Qid, Rattach, Rclunk, Rframe, Rmessage, Ropen, Rread, Rversion, Rwalk, qt,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use crate::proto::{Dialect, FILE_NAME, FILE_SIZE, MSIZE, Target};
use crate::schedule::Endpoint;

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The ninep server core with the ramfs example.
    Ours,
    /// diod, exporting a tmpfs directory.
    Diod,
    /// The echo server: the ceiling.
    Echo,
}

impl Kind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Diod => "diod",
            Kind::Echo => "echo",
        }
    }

    /// The protocol it speaks.
    pub fn dialect(self) -> Dialect {
        match self {
            Kind::Diod => Dialect::Linux,
            Kind::Ours | Kind::Echo => Dialect::P9,
        }
    }
}

/// The contents of the test file: byte i is i mod 251, as in the ramfs example.
pub fn contents() -> Vec<u8> {
    (0..FILE_SIZE as usize).map(|i| (i % 251) as u8).collect()
}

/// A server process and where it listens.
pub struct Running {
    /// Which server.
    pub kind: Kind,
    /// Its unix socket.
    pub unix: PathBuf,
    /// Its TCP address.
    pub tcp: SocketAddr,
    /// Whom to attach as, and the file to read.
    pub who: Target,
    child: Child,
    /// Held so that the child sees EOF on stdin if the bench dies.
    _stdin: Option<ChildStdin>,
}

impl Running {
    /// The server's process id (taskset execs the server, so the child is the server).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the schedule needs to measure it.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            name: self.kind.name().to_string(),
            pid: self.pid(),
            dialect: self.kind.dialect(),
            target: self.who.clone(),
            unix: self.unix.clone(),
            tcp: Some(self.tcp),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the servers keep their sockets and diod its export.
pub struct Workdir {
    /// The temporary directory, removed on drop.
    pub dir: tempfile::TempDir,
    /// diod's export: a directory holding [`FILE_NAME`].
    pub export: PathBuf,
}

impl Workdir {
    /// Makes the directory on tmpfs (/dev/shm) where there is one, so that diod serves
    /// the file from memory as ours does. diod attaches as the client's user, and a
    /// user other than root must be able to traverse to the export: the directories
    /// are 0755, the file 0644.
    pub fn new() -> io::Result<Workdir> {
        use std::os::unix::fs::PermissionsExt;
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("ninep-bench.")
                .tempdir_in(shm)?
        } else {
            tempfile::Builder::new().prefix("ninep-bench.").tempdir()?
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let export = dir.path().join("export");
        std::fs::create_dir(&export)?;
        std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o755))?;
        let file = export.join(FILE_NAME);
        std::fs::write(&file, contents())?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        Ok(Workdir { dir, export })
    }
}

fn command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Starts `kind`, pinned to `cpu` with taskset if asked, and waits until it listens.
pub fn start(kind: Kind, work: &Workdir, cpu: Option<usize>, diod: &Path) -> io::Result<Running> {
    let unix = work.dir.path().join(format!("{}.sock", kind.name()));
    match kind {
        Kind::Ours | Kind::Echo => {
            let exe = std::env::current_exe()?;
            let mut child = command(&exe, cpu)
                .args(["--serve", kind.name(), "--unix"])
                .arg(&unix)
                .args(["--tcp", "127.0.0.1:0"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            // The child prints one line once both listeners are bound.
            let mut line = String::new();
            if let Some(out) = child.stdout.take() {
                BufReader::new(out).read_line(&mut line)?;
            }
            let tcp = line
                .trim()
                .strip_prefix("ready tcp=")
                .and_then(|a| a.parse().ok());
            let stdin = child.stdin.take();
            let Some(tcp) = tcp else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "{} server did not start (said {line:?})",
                    kind.name()
                )));
            };
            Ok(Running {
                kind,
                unix,
                tcp,
                who: Target {
                    uname: "bench".into(),
                    aname: String::new(),
                    n_uname: None,
                    path: vec![FILE_NAME.into()],
                },
                child,
                _stdin: stdin,
            })
        }
        Kind::Diod => {
            // diod takes a port, not port 0: take a free one from the kernel and hand
            // it over (another process could grab it in between; then diod fails to
            // start and says so).
            let tcp = StdTcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let log = std::fs::File::create(work.dir.path().join("diod.log"))?;
            let mut child = command(diod, cpu)
                .arg("-f")
                .arg("-n")
                .arg("-l")
                .arg(&unix)
                .arg("-l")
                .arg(tcp.to_string())
                .arg("-e")
                .arg(&work.export)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let up = std::os::unix::net::UnixStream::connect(&unix).is_ok()
                    && std::net::TcpStream::connect(tcp).is_ok();
                if up {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut log = String::new();
                    let _ = std::fs::File::open(work.dir.path().join("diod.log"))
                        .and_then(|mut f| f.read_to_string(&mut log));
                    return Err(io::Error::other(format!(
                        "diod exited with {status}: {}",
                        log.trim()
                    )));
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other("diod did not listen within 10 s"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // diod's attach wants the export path as aname, and a user it can look up.
            let uid = rustix::process::getuid().as_raw();
            Ok(Running {
                kind,
                unix,
                tcp,
                who: Target {
                    uname: String::new(),
                    aname: work.export.to_string_lossy().into_owned(),
                    n_uname: Some(uid),
                    path: vec![FILE_NAME.into()],
                },
                child,
                _stdin: None,
            })
        }
    }
}

/// The `--serve` mode: runs `kind` on a unix socket and a TCP address until stdin
/// closes. The runtime is tokio's default multi-thread one, as in the ramfs example and
/// the product's server: under taskset it has one worker per allowed CPU, here one.
pub fn serve(kind: Kind, unix: &Path, tcp: &str) -> ExitCode {
    // The parent closes our stdin when it is done or dies; leave then.
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("serve: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_async(kind, unix, tcp)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve {}: {e}", kind.name());
            ExitCode::FAILURE
        }
    }
}

async fn serve_async(kind: Kind, unix: &Path, tcp: &str) -> io::Result<()> {
    let unix_listener = bind_unix(unix).await?;
    let tcp_listener = TcpListener::bind(tcp).await?;
    println!("ready tcp={}", tcp_listener.local_addr()?);
    match kind {
        Kind::Ours => {
            let fs = RamFs::new();
            fs.add_file(FILE_NAME, contents());
            let server = Server::new(fs, Limits::default());
            let (a, b) = tokio::join!(
                server.serve_unix(unix_listener, Shutdown::never()),
                server.serve_tcp(tcp_listener, Shutdown::never()),
            );
            a.and(b)
        }
        Kind::Echo => {
            let replies = std::sync::Arc::new(EchoReplies::new());
            let r = replies.clone();
            tokio::spawn(echo_accept_unix(unix_listener, r));
            echo_accept_tcp(tcp_listener, replies).await
        }
        Kind::Diod => Err(io::Error::other("diod is not served by this binary")),
    }
}

async fn echo_accept_unix(l: UnixListener, replies: std::sync::Arc<EchoReplies>) {
    while let Ok((s, _)) = l.accept().await {
        tokio::spawn(echo_conn(s, replies.clone()));
    }
}

async fn echo_accept_tcp(l: TcpListener, replies: std::sync::Arc<EchoReplies>) -> io::Result<()> {
    loop {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(echo_conn(s, replies.clone()));
    }
}

/// The echo server's replies, encoded once; only the tag changes per request.
pub struct EchoReplies {
    attach: Vec<u8>,
    walk0: Vec<u8>,
    walk1: Vec<u8>,
    open: Vec<u8>,
    read: Vec<u8>,
    clunk: Vec<u8>,
    error: Vec<u8>,
}

impl Default for EchoReplies {
    fn default() -> EchoReplies {
        EchoReplies::new()
    }
}

impl EchoReplies {
    /// The replies a ramfs holding the test file would give.
    pub fn new() -> EchoReplies {
        let enc = |msg: Rmessage| Rframe { tag: 0, msg }.to_bytes();
        let dir = Qid {
            ty: qt::DIR,
            version: 0,
            path: 0,
        };
        let file = Qid {
            ty: qt::FILE,
            version: 0,
            path: 1,
        };
        EchoReplies {
            attach: enc(Rattach { qid: dir }.into()),
            walk0: enc(Rwalk { wqids: vec![] }.into()),
            walk1: enc(Rwalk { wqids: vec![file] }.into()),
            open: enc(Ropen {
                qid: file,
                iounit: 0,
            }
            .into()),
            read: enc(Rread {
                data: contents().into(),
            }
            .into()),
            clunk: enc(Rclunk {}.into()),
            error: enc(Rmessage::error("echo: not supported")),
        }
    }

    /// Appends the reply to one whole request frame to `out`. The caller hands over
    /// whole frames only, so `req` holds at least a header; every reply does too.
    pub fn reply(&self, req: &[u8], out: &mut Vec<u8>) {
        let (ty, tag) = (req[4], [req[5], req[6]]);
        let template = match ty {
            100 => {
                // Tversion msize[4] version[s]: agree to what was asked, up to MSIZE.
                let asked = req
                    .get(HEADER_SIZE..HEADER_SIZE + 4)
                    .map_or(MSIZE, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let tag = u16::from_le_bytes(tag);
                let msg = Rversion {
                    msize: asked.min(MSIZE),
                    version: "9P2000".into(),
                };
                Rframe {
                    tag,
                    msg: msg.into(),
                }
                .encode(out);
                return;
            }
            104 => &self.attach,
            // Twalk fid[4] newfid[4] nwname[2]: walks of one name succeed, like ramfs's
            // of the test file.
            110 => match req.get(15..17) {
                Some([0, 0]) => &self.walk0,
                Some([1, 0]) => &self.walk1,
                _ => &self.error,
            },
            112 => &self.open,
            116 => &self.read,
            120 => &self.clunk,
            _ => &self.error,
        };
        let at = out.len();
        out.extend_from_slice(template);
        out[at + 5..at + 7].copy_from_slice(&tag);
    }
}

/// One echo connection: answers every whole frame in the buffer, in one write.
async fn echo_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    replies: std::sync::Arc<EchoReplies>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        while buf.len() >= HEADER_SIZE {
            let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if !(HEADER_SIZE..=MSIZE as usize).contains(&size) {
                return;
            }
            if buf.len() < size {
                break;
            }
            replies.reply(&buf[..size], &mut out);
            buf.advance(size);
        }
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use crate::proto::{Workload, check_reply, plan};

    #[test]
    fn echo_answers_every_step_of_every_workload() {
        let echo = EchoReplies::new();
        let who = Target {
            uname: "u".into(),
            aname: String::new(),
            n_uname: None,
            path: vec![FILE_NAME.into()],
        };
        for w in Workload::ALL {
            let p = plan(Dialect::P9, w, &who);
            for step in p.setup.iter().chain(&p.op) {
                let mut out = Vec::new();
                echo.reply(&step.request, &mut out);
                assert_eq!(check_reply(step, &out), Ok(()), "{w:?} {step:?}");
                Rframe::decode(&out).unwrap();
            }
        }
    }
}
