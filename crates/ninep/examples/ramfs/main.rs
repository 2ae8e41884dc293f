//! `ramfs`: the in-memory filesystem of `ninep::ramfs` served over 9P2000, to show how a
//! filesystem plugs into the ninep server core, and to test the core with real clients.
//!
//! ```sh
//! cargo run -p ninep --example ramfs -- --listen unix:/tmp/ramfs.sock
//! cargo run -p ninep --example ramfs -- --listen tcp:127.0.0.1:5640 --populate
//! ```

use std::process::ExitCode;

use clap::Parser;
use ninep::ramfs::RamFs;
use ninep::server::{Limits, Server, Shutdown, bind_unix};

/// Serve an in-memory file tree over 9P2000.
#[derive(Parser)]
struct Args {
    /// Where to listen: unix:PATH or tcp:HOST:PORT.
    #[arg(long)]
    listen: String,
    /// Start with test files in the root: empty (0 B), one (1 B), 8k (8 KiB) and
    /// 1m (1 MiB), byte i of each being i mod 251.
    #[arg(long)]
    populate: bool,
    /// The largest msize to agree to.
    #[arg(long, default_value_t = Limits::default().max_msize)]
    max_msize: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let fs = RamFs::new();
    if args.populate {
        fs.populate();
    }
    let limits = Limits {
        max_msize: args.max_msize,
        ..Limits::default()
    };
    let server = Server::new(fs, limits);
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.trigger();
    });
    let served = if let Some(path) = args.listen.strip_prefix("unix:") {
        match bind_unix(path.as_ref()).await {
            Ok(l) => {
                eprintln!("ramfs: listening on unix:{path}");
                server.serve_unix(l, shutdown).await
            }
            Err(e) => Err(e),
        }
    } else if let Some(addr) = args.listen.strip_prefix("tcp:") {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                eprintln!(
                    "ramfs: listening on tcp:{}",
                    l.local_addr().map_or(addr.to_string(), |a| a.to_string())
                );
                server.serve_tcp(l, shutdown).await
            }
            Err(e) => Err(e),
        }
    } else {
        eprintln!("ramfs: --listen wants unix:PATH or tcp:HOST:PORT");
        return ExitCode::from(2);
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ramfs: {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}
