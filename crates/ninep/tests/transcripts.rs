//! Golden transcripts: each file in tests/transcripts/ is played against the server
//! core serving the ramfs (`ninep::ramfs`, seeded as `ramfs --populate`, clock stopped at 0).

use ninep::ramfs::RamFs;
use ninep::server::{Limits, Peer, Server, Shutdown};

async fn play(name: &str) {
    let path = format!(
        "{}/tests/transcripts/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
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
    if let Err(m) = ninep::transcript::run(name, &script, client).await {
        panic!("{m}");
    }
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
