//! Golden transcripts: each file in tests/transcripts/ is played against the server
//! core serving the ramfs (`ninep::ramfs`, seeded as `ramfs --populate`, clock stopped at 0).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use ninep::ramfs::RamFs;
use ninep::server::{Limits, Peer, Server, Shutdown};

async fn play(name: &str) {
    let path = format!(
        "{}/tests/transcripts/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Err(m) = play_script(name, &script).await {
        panic!("{m}");
    }
}

async fn play_script(name: &str, script: &str) -> Result<(), ninep::transcript::Mismatch> {
    let fs = RamFs::with_clock(|| 0);
    fs.populate();
    let limits = Limits {
        max_msize: 65536,
        max_fids: 8,
        max_outstanding: 4,
        ..Limits::default()
    };
    let server = Server::new(fs, limits);
    let (client, server_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        server
            .serve_connection(server_end, Peer::default(), Shutdown::never())
            .await
    });
    ninep::transcript::run(name, script, client).await
}

/// An R-line ending in ` ...` matches a reply by the start of its text form, and only so.
#[tokio::test]
async fn an_elided_reply_matches_by_its_start() {
    let head = "Tversion tag 65535 msize 8192 version '9P2000'\n\
                Rversion tag 65535 ...\n\
                Tattach tag 1 fid 0 afid -1 uname 'glenda' aname ''\n";
    play_script("elided", &format!("{head}Rattach tag 1 ...\n"))
        .await
        .unwrap();
    let err = play_script("elided", &format!("{head}Rerror tag 1 ...\n"))
        .await
        .unwrap_err();
    assert_eq!(err.line, 4, "{err}");
    assert!(err.what.contains("got: Rattach tag 1"), "{err}");
}

macro_rules! transcripts {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            play(stringify!($name)).await;
        }
    )*};
}

transcripts!(
    version,
    attach,
    walk,
    open,
    read,
    write,
    wstat,
    flush,
    clunk_remove,
    limits,
    plan9port_9pfuse
);
