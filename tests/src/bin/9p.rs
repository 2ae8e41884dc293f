//! `9p`: a plain 9P2000 client for the end-to-end tests, run as any uid (setpriv) to
//! show what a service sees without our `deploy` in the way.
//!
//! ```text
//! 9p --addr unix:PATH [--aname NAME] read PATH    contents to stdout
//! 9p --addr unix:PATH [--aname NAME] ls PATH      one name per line
//! 9p --addr unix:PATH [--aname NAME] stat PATH    "name length mode version"
//! 9p --addr unix:PATH [--aname NAME] opens N PATH  N times: walk, open, read, clunk
//! 9p --addr unix:PATH [--aname NAME] hold PATH    open, read; then for each line on
//!                                                 stdin, read the open fid again
//! 9p --addr unix:PATH [--aname NAME] write PATH   stdin, in one Twrite per 4096 bytes
//! 9p --addr unix:PATH [--aname NAME] rpc PATH     open for reading and writing; write
//!                                                 stdin, one Twrite per line (an error
//!                                                 is printed and the next line goes on),
//!                                                 then read the fid to its end
//! 9p --addr unix:PATH [--aname NAME] shell PATH   as a shell does `echo LINE > PATH` for
//!                                                 each line of stdin (a fid each: open,
//!                                                 write, clunk; errors printed), then
//!                                                 `cat PATH` with one more fid
//! 9p --addr unix:PATH [--aname NAME] follow PATH [COUNT]
//!                                                 open, then print what each Tread (of
//!                                                 COUNT bytes, else the iounit) returns
//!                                                 as it comes, until an error or EOF
//! 9p --addr unix:PATH [--aname NAME] park N PATH  open PATH N times over connections of
//!                                                 100 fids, a Tread outstanding on each;
//!                                                 print `parked N` once all are sent, then
//!                                                 `ok TEXT` or `error TEXT` per reply
//! 9p --addr unix:PATH play FILE                    play FILE, a golden transcript
//!                                                 (ninep::transcript), over a raw
//!                                                 connection; a mismatch is the error
//! 9p --addr unix:PATH replies FILE                 send FILE's T-lines one at a time and
//!                                                 print each with its reply's text form
//! 9p --addr unix:PATH stall                       send half a message's header, print
//!                                                 `ready`, and send nothing more
//! 9p --addr unix:PATH flood                       version and attach, then send Tstats
//!                                                 without reading a reply; `ready` once
//!                                                 the server stops taking them
//! 9p --addr unix:PATH connections N               open N connections, each sending
//!                                                 Tversion; `ready K`, K of them answered
//! ```
//! `--addr tls:HOST:PORT --ca FILE [--cert FILE --key FILE]` speaks 9P over TLS instead,
//! the server's certificate checked against --ca, ours (if given) naming who we are.
//! The raw modes (play, replies, stall, flood, connections) attach nothing by themselves, and the
//! last three run until killed.
//! Errors print `9p: ERROR` (the server's Rerror text) on stderr and exit 1.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use ninep::client::{Client, ClientError, Fid};

fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

async fn walk_open(root: &Fid, path: &str) -> Result<Fid, ClientError> {
    let mut f = root.walk(&split(path)).await?;
    f.open(ninep::om::READ).await?;
    Ok(f)
}

/// Where to connect, and how.
enum Dial {
    Unix(String),
    Tls {
        host: String,
        port: u16,
        files: tls::ClientFiles,
    },
}

impl Dial {
    fn new(
        addr: &str,
        ca: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    ) -> Result<Dial, ClientError> {
        let Some(rest) = addr.strip_prefix("tls:") else {
            return Ok(Dial::Unix(
                addr.strip_prefix("unix:").unwrap_or(addr).into(),
            ));
        };
        let usage = |what: &str| ClientError::Protocol(format!("tls: {what}"));
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| usage("HOST:PORT"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = port.parse().map_err(|_| usage("PORT"))?;
        let ca = ca.ok_or_else(|| usage("--ca FILE"))?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (None, None) => None,
            _ => return Err(usage("--cert and --key go together")),
        };
        Ok(Dial::Tls {
            host,
            port,
            files: tls::ClientFiles {
                ca: ca.into(),
                identity,
            },
        })
    }

    /// A client that has negotiated 9P2000.
    async fn connect(&self) -> Result<Client, ClientError> {
        match self {
            Dial::Unix(path) => Client::connect_unix(path).await,
            Dial::Tls { host, port, files } => {
                let config = tls::client_config(files).map_err(ClientError::Protocol)?;
                let name = tls::server_name(host).map_err(ClientError::Protocol)?;
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                let stream = tls::connect(config, name, tcp).await.map_err(|e| {
                    match tls::Failure::of(&e) {
                        Some(f) => ClientError::Protocol(f.to_string()),
                        None => ClientError::Io(e),
                    }
                })?;
                let client = Client::over(stream);
                client.version(ninep::client::DEFAULT_MSIZE).await?;
                Ok(client)
            }
        }
    }
}

/// A Tversion of `msize` 8192, as bytes.
fn tversion() -> Vec<u8> {
    ninep::Tframe {
        tag: ninep::NOTAG,
        msg: ninep::Tmessage::Version(ninep::Tversion {
            msize: 8192,
            version: ninep::VERSION_9P2000.into(),
        }),
    }
    .to_bytes()
}

/// Prints `line` on stdout at once, for the test that waits for it.
fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The modes that speak raw 9P over their own connections: `None` for another mode.
async fn raw(path: &str, aname: &str, rest: &[String]) -> Option<Result<(), ClientError>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    if !matches!(
        words.first(),
        Some(&("play" | "replies" | "stall" | "flood" | "connections"))
    ) {
        return None;
    }
    Some(
        async {
            match words.as_slice() {
                ["play", file] => {
                    let script = std::fs::read_to_string(file)?;
                    let stream = UnixStream::connect(path).await?;
                    ninep::transcript::run(file, &script, stream)
                        .await
                        .map_err(|m| ClientError::Protocol(m.to_string()))
                }
                ["replies", file] => {
                    // Each T-line of FILE, sent alone, and the text form of its reply:
                    // how a transcript's expected replies are first written.
                    let script = std::fs::read_to_string(file)?;
                    let mut stream = UnixStream::connect(path).await?;
                    for line in script.lines().map(str::trim).filter(|l| l.starts_with('T')) {
                        let frame = ninep::text::parse_tframe(line)
                            .map_err(|e| ClientError::Protocol(format!("{line}: {e}")))?;
                        stream.write_all(&frame.to_bytes()).await?;
                        let mut size = [0u8; 4];
                        stream.read_exact(&mut size).await?;
                        let mut reply = vec![0u8; u32::from_le_bytes(size) as usize];
                        reply[..4].copy_from_slice(&size);
                        stream.read_exact(&mut reply[4..]).await?;
                        let reply = ninep::Rframe::decode(&reply)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        say(line)?;
                        say(&reply.transcript())?;
                    }
                    Ok(())
                }
                ["stall"] => {
                    let mut stream = UnixStream::connect(path).await?;
                    stream.write_all(&tversion()[..3]).await?;
                    say("ready")?;
                    std::future::pending::<()>().await;
                    Ok(())
                }
                ["flood"] => {
                    let client = Client::connect_unix(path).await?;
                    drop(client.attach("9p-test", aname).await?);
                    drop(client);
                    // A fresh connection, attached by hand, so that nothing reads it.
                    let mut stream = UnixStream::connect(path).await?;
                    stream.write_all(&tversion()).await?;
                    let mut reply = [0u8; 64];
                    let _ = stream.read(&mut reply).await?;
                    let attach = ninep::Tframe {
                        tag: 1,
                        msg: ninep::Tmessage::Attach(ninep::Tattach {
                            fid: 0,
                            afid: ninep::NOFID,
                            uname: "9p-test".into(),
                            aname: aname.into(),
                        }),
                    };
                    stream.write_all(&attach.to_bytes()).await?;
                    let stat = |tag: u16| {
                        ninep::Tframe {
                            tag,
                            msg: ninep::Tmessage::Stat(ninep::Tstat { fid: 0 }),
                        }
                        .to_bytes()
                    };
                    let mut ready = false;
                    for tag in (2..u16::MAX).cycle() {
                        let sent = tokio::time::timeout(
                            std::time::Duration::from_millis(500),
                            stream.write_all(&stat(tag)),
                        )
                        .await;
                        match sent {
                            Ok(r) => r?,
                            Err(_) if !ready => {
                                say("ready")?;
                                ready = true;
                            }
                            Err(_) => {}
                        }
                    }
                    Ok(())
                }
                ["connections", n] => {
                    let n: usize = n.parse().map_err(|_| ClientError::Protocol("N".into()))?;
                    let mut held = Vec::with_capacity(n);
                    let mut answered = 0;
                    for _ in 0..n {
                        let Ok(mut stream) = UnixStream::connect(path).await else {
                            continue;
                        };
                        let mut reply = [0u8; 64];
                        let ok = stream.write_all(&tversion()).await.is_ok()
                            && tokio::time::timeout(
                                std::time::Duration::from_millis(200),
                                stream.read(&mut reply),
                            )
                            .await
                            .is_ok_and(|r| r.is_ok_and(|got| got > 0));
                        answered += usize::from(ok);
                        held.push(stream);
                    }
                    say(&format!("ready {answered}"))?;
                    std::future::pending::<()>().await;
                    Ok(())
                }
                _ => Err(ClientError::Protocol(format!("usage: {}", rest.join(" ")))),
            }
        }
        .await,
    )
}

async fn run(args: &[String]) -> Result<(), ClientError> {
    let mut addr = None;
    let mut aname = String::new();
    let (mut ca, mut cert, mut key) = (None, None, None);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().cloned(),
            "--aname" => aname = it.next().cloned().unwrap_or_default(),
            "--ca" => ca = it.next().cloned(),
            "--cert" => cert = it.next().cloned(),
            "--key" => key = it.next().cloned(),
            _ => rest.push(a.clone()),
        }
    }
    let addr = addr.unwrap_or_default();
    if !addr.starts_with("tls:") {
        let path = addr.strip_prefix("unix:").unwrap_or(&addr);
        if let Some(done) = raw(path, &aname, &rest).await {
            return done;
        }
    }
    let dial = Dial::new(&addr, ca, cert, key)?;
    let client = dial.connect().await?;
    let root = client.attach("9p-test", &aname).await?;
    let out = std::io::stdout();
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["read", p] => {
            let f = walk_open(&root, p).await?;
            out.lock().write_all(&f.read_all().await?)?;
        }
        ["ls", p] => {
            let f = walk_open(&root, p).await?;
            for st in f.read_dir().await? {
                writeln!(out.lock(), "{}", st.name)?;
            }
        }
        ["stat", p] => {
            let st = root.walk(&split(p)).await?.stat().await?;
            writeln!(
                out.lock(),
                "{} {} {:o} {}",
                st.name,
                st.length,
                st.mode,
                st.qid.version
            )?;
        }
        ["opens", n, p] => {
            // N times: walk to PATH on a new fid, open, read, clunk (what a service that
            // reads its secret at every request does).
            let n: u64 = n.parse().unwrap_or(0);
            for _ in 0..n {
                let f = walk_open(&root, p).await?;
                f.read_all().await?;
                f.clunk().await?;
            }
            writeln!(out.lock(), "opened {n}")?;
        }
        ["hold", p] => {
            let f = walk_open(&root, p).await?;
            let first = f.read_all().await?;
            writeln!(out.lock(), "read {}", String::from_utf8_lossy(&first))?;
            out.lock().flush()?;
            for _ in std::io::stdin().lock().lines() {
                match f.read_all().await {
                    Ok(b) => writeln!(out.lock(), "read {}", String::from_utf8_lossy(&b))?,
                    Err(e) => writeln!(out.lock(), "error {e}")?,
                }
                out.lock().flush()?;
            }
        }
        ["write", p] => {
            let mut f = root.walk(&split(p)).await?;
            f.open(ninep::om::WRITE).await?;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
            f.write_all_chunked(0, &data, 4096).await?;
            f.clunk().await?;
        }
        ["rpc", p] => {
            let mut f = root.walk(&split(p)).await?;
            f.open(ninep::om::RDWR).await?;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
            let mut offset = 0;
            for line in data.split_inclusive(|&b| b == b'\n') {
                if let Err(e) = f.write(offset, line).await {
                    eprintln!("9p: write: {e}");
                }
                offset += line.len() as u64;
            }
            out.lock().write_all(&f.read_all().await?)?;
            f.clunk().await?;
        }
        ["shell", p] => {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
            for line in data.split_inclusive(|&b| b == b'\n') {
                let mut f = root.walk(&split(p)).await?;
                f.open(ninep::om::WRITE | ninep::om::TRUNC).await?;
                if let Err(e) = f.write(0, line).await {
                    eprintln!("9p: write: {e}");
                }
                if let Err(e) = f.clunk().await {
                    eprintln!("9p: clunk: {e}");
                }
            }
            let f = walk_open(&root, p).await?;
            out.lock().write_all(&f.read_all().await?)?;
        }
        ["follow", p, rest @ ..] => {
            let f = walk_open(&root, p).await?;
            let count = match rest {
                [n] => n
                    .parse()
                    .map_err(|_| ClientError::Protocol("COUNT".into()))?,
                _ => f.io_size(),
            };
            loop {
                let data = f.read(0, count).await?;
                let mut o = out.lock();
                o.write_all(data.expose())?;
                o.flush()?;
            }
        }
        ["park", n, p] => {
            let n: usize = n.parse().map_err(|_| ClientError::Protocol("N".into()))?;
            let mut held = Vec::new();
            let mut pending = Vec::new();
            for first in (0..n).step_by(100) {
                let client = dial.connect().await?;
                let root = client.attach("9p-test", &aname).await?;
                for _ in first..n.min(first + 100) {
                    let f = walk_open(&root, p).await?;
                    pending.push(client.send(ninep::Tread {
                        fid: f.number(),
                        offset: 0,
                        count: 4096,
                    })?);
                    held.push(f);
                }
                held.push(root);
            }
            writeln!(out.lock(), "parked {n}")?;
            out.lock().flush()?;
            let mut replies: tokio::task::JoinSet<Result<ninep::Rmessage, ClientError>> =
                tokio::task::JoinSet::new();
            for p in pending {
                replies.spawn(p.reply());
            }
            while let Some(r) = replies.join_next().await {
                let line = match r {
                    Ok(Ok(ninep::Rmessage::Read(r))) => {
                        format!("ok {}", String::from_utf8_lossy(r.data.expose()).trim_end())
                    }
                    Ok(Ok(other)) => format!("error unexpected {}", other.name()),
                    Ok(Err(e)) => format!("error {e}"),
                    Err(e) => format!("error {e}"),
                };
                writeln!(out.lock(), "{line}")?;
                out.lock().flush()?;
            }
        }
        _ => {
            return Err(ClientError::Protocol(
                "usage: 9p --addr unix:PATH|tls:HOST:PORT [--ca F --cert F --key F] [--aname NAME] \
                 read|ls|stat|hold|write|rpc|shell|follow PATH, park N PATH"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("9p: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("9p: {e}");
            ExitCode::FAILURE
        }
    }
}
