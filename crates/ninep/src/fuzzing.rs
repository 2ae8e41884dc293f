//! Entry points for fuzzers: the decoder, and the server core fed arbitrary streams.
//!
//! The cargo-fuzz targets in `crates/ninep/fuzz` call these on nightly; the stable test
//! `tests/fuzz_stable.rs` drives the same functions with bounded random input, so CI
//! exercises them without a nightly toolchain.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::message::{HEADER_SIZE, Rframe, Tframe, Tversion};
use crate::server::{Filesystem, Limits, Peer, Server, Shutdown};

/// Decodes `data` as a T- and as an R-frame. Whatever decodes must encode back to the
/// same bytes (there is one encoding of each message), and must survive the text form.
/// Panics if not: that is the finding.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(t) = Tframe::decode(data) {
        assert_eq!(t.to_bytes(), data, "Tframe re-encodes differently");
        let text = t.transcript();
        let back = crate::text::parse_tframe(&text).expect("transcript of a Tframe parses");
        assert_eq!(back, t, "Tframe text form does not round-trip");
    }
    if let Ok(r) = Rframe::decode(data) {
        assert_eq!(r.to_bytes(), data, "Rframe re-encodes differently");
        let text = r.transcript();
        let back = crate::text::parse_rframe(&text).expect("transcript of an Rframe parses");
        assert_eq!(back, r, "Rframe text form does not round-trip");
    }
}

/// Limits small enough that a fuzz input reaches them.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_msize: 8192,
        max_connections: 4,
        max_connections_per_principal: 4,
        max_stranger_connections: 2,
        max_stranger_connections_per_uid: 1,
        max_fids: 32,
        max_waiting_reads_per_fid: 1,
        max_outstanding: 8,
        max_outstanding_per_principal: 16,
        pre_attach_window: 2,
        max_requests_before_attach: 8,
        max_credential_len: 64,
        max_afids: 2,
        max_credential_attaches: 2,
        stall_timeout: Duration::from_millis(50),
        attach_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_millis(200),
        max_handshakes: 2,
        handshake_timeout: Duration::from_millis(200),
    }
}

/// Feeds `data` to one server connection serving `fs`, after a valid Tversion so that
/// the input reaches past the version gate. Every byte the server sends back must parse
/// as a sequence of R-frames; the connection must end once the input ends. Panics if not.
pub fn fuzz_server<F: Filesystem>(fs: F, data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime can be built");
    rt.block_on(async move {
        let (client, server_end) = tokio::io::duplex(64 * 1024);
        let server = Server::new(fs, fuzz_limits());
        let serving = tokio::spawn(async move {
            server
                .serve_connection(server_end, Peer::default(), Shutdown::never())
                .await
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        let version = Tframe {
            tag: crate::NOTAG,
            msg: Tversion {
                msize: 8192,
                version: "9P2000".into(),
            }
            .into(),
        };
        let input = [version.to_bytes().as_slice(), data].concat();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
        });
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "server did not close the connection after the input ended"
        );
        let _ = writer.await;
        assert!(serving.await.is_ok(), "server connection task panicked");
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            assert!(rest.len() >= HEADER_SIZE, "server sent a partial frame");
            let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            assert!(
                size >= HEADER_SIZE && size <= rest.len(),
                "server sent a bad size field"
            );
            if let Err(e) = Rframe::decode(&rest[..size]) {
                panic!("server sent an undecodable frame: {e}");
            }
            rest = &rest[size..];
        }
    });
}
