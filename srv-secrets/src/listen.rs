//! Where the server listens: the addresses of `--listen` (and of `--http` and `backup
//! --addr`), read in one place, every one checked before anything is bound.
//!
//! - `unix:PATH`, or a bare path: a unix socket. Its peer's uid (SO_PEERCRED) decides who
//!   it is.
//! - `tcp:HOST:PORT`: plain TCP, which carries everything unencrypted and proves nothing
//!   of its peer. Refused, unless `--insecure-plain-tcp` allows it, and then on a loopback
//!   address only (127.0.0.0/8, ::1), for tests: every connection must present an API
//!   token at attach (`principal.rs`, `needs_token`), there being no anonymous principal.
//!
//! Anything else that starts like a scheme (`tls:...`, `vsock:...`) is refused, not taken
//! for a file name. (deploy's `--addr` reads addresses the same way: cmd-deploy's
//! connect.rs.)

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::paths;

/// The flag that lets `--listen tcp:` through, on loopback.
pub const INSECURE_PLAIN_TCP: &str = "--insecure-plain-tcp";

/// One address to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket at this path.
    Unix(PathBuf),
    /// Plain TCP, on a loopback address (allowed by [`INSECURE_PLAIN_TCP`]).
    Tcp(SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// The addresses of `--listen` (the default socket if there are none), all checked:
/// `insecure_plain_tcp` is whether [`INSECURE_PLAIN_TCP`] was given.
///
/// # Errors
/// What is wrong with the first address that is wrong, and what to give instead; or that
/// [`INSECURE_PLAIN_TCP`] was given with no `tcp:` address to allow.
pub fn listen_addresses(
    listen: &[String],
    insecure_plain_tcp: bool,
) -> Result<Vec<Listen>, String> {
    if listen.is_empty() {
        if insecure_plain_tcp {
            return Err(nothing_to_allow());
        }
        return Ok(vec![Listen::Unix(paths::default_socket())]);
    }
    let addresses = listen
        .iter()
        .map(|l| listen_address(l, insecure_plain_tcp))
        .collect::<Result<Vec<_>, _>>()?;
    if insecure_plain_tcp && !addresses.iter().any(|a| matches!(a, Listen::Tcp(_))) {
        return Err(nothing_to_allow());
    }
    Ok(addresses)
}

fn nothing_to_allow() -> String {
    format!("{INSECURE_PLAIN_TCP} allows a --listen tcp:HOST:PORT on loopback, and none was given")
}

/// One `--listen` address.
fn listen_address(l: &str, insecure_plain_tcp: bool) -> Result<Listen, String> {
    let Some(hostport) = l.strip_prefix("tcp:") else {
        return unix_path(
            "--listen",
            l,
            "unix:PATH, a socket's path, or tcp:HOST:PORT",
        )
        .map(Listen::Unix);
    };
    let addr: SocketAddr = hostport.parse().map_err(|_| {
        format!(
            "--listen {l}: expected tcp:HOST:PORT with HOST an IP address, such as \
             tcp:127.0.0.1:5640 or tcp:[::1]:5640"
        )
    })?;
    if !insecure_plain_tcp {
        return Err(format!(
            "--listen {l}: plain TCP carries secrets unencrypted and proves no one: listen on \
             unix:PATH; for tests on loopback only, add {INSECURE_PLAIN_TCP} (every \
             connection must then present an API token)"
        ));
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--listen {l}: {INSECURE_PLAIN_TCP} listens on loopback only (127.0.0.0/8 or \
             [::1]), where no other machine can reach it"
        ));
    }
    Ok(Listen::Tcp(addr))
}

/// The paths of unix-socket addresses given with `flag` (`--http`, `--addr`): `unix:PATH`
/// or a bare path.
///
/// # Errors
/// What is wrong with the first address that is wrong.
pub fn unix_paths(flag: &str, addrs: &[String]) -> Result<Vec<PathBuf>, String> {
    addrs
        .iter()
        .map(|a| unix_path(flag, a, "unix:PATH or a socket's path"))
        .collect()
}

/// The path of `unix:PATH` or a bare path given with `flag`; `give` says what may be
/// given instead of something else. What starts like another scheme is refused, not
/// taken for a file name: only unix sockets carry the peer's uid.
fn unix_path(flag: &str, addr: &str, give: &str) -> Result<PathBuf, String> {
    let refuse = || format!("{flag} {addr}: not an address to listen on: give {give}");
    let path = match addr.strip_prefix("unix:") {
        Some(path) => path,
        None if looks_like_a_scheme(addr) => return Err(refuse()),
        None => addr,
    };
    if path.is_empty() {
        return Err(refuse());
    }
    Ok(PathBuf::from(path))
}

/// Whether `text` starts with `SCHEME:` (RFC 3986: a letter, then letters, digits, `+`,
/// `-` or `.`).
fn looks_like_a_scheme(text: &str) -> bool {
    text.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listen_takes_unix_path_or_a_bare_path() {
        let got = listen_addresses(
            &strings(&[
                "unix:/run/a.sock",
                "/run/b.sock",
                "rel/c.sock",
                "./tcp:d",
                "unix:tcp:e",
            ]),
            false,
        )
        .unwrap();
        let want = [
            "/run/a.sock",
            "/run/b.sock",
            "rel/c.sock",
            "./tcp:d",
            "tcp:e",
        ];
        assert_eq!(got, want.map(|p| Listen::Unix(PathBuf::from(p))));
        assert_eq!(
            listen_addresses(&[], false).unwrap(),
            [Listen::Unix(paths::default_socket())]
        );
    }

    #[test]
    fn listen_refuses_other_schemes_and_nothing() {
        for bad in ["vsock:3:564", "tls:127.0.0.1:564", "unix:", ""] {
            assert_eq!(
                listen_addresses(&strings(&["/ok.sock", bad]), false).unwrap_err(),
                format!(
                    "--listen {bad}: not an address to listen on: give unix:PATH, a socket's \
                     path, or tcp:HOST:PORT"
                )
            );
        }
        assert_eq!(
            unix_paths("--http", &strings(&["tcp:127.0.0.1:80"])).unwrap_err(),
            "--http tcp:127.0.0.1:80: not an address to listen on: give unix:PATH or a socket's \
             path"
        );
    }

    #[test]
    fn plain_tcp_needs_the_flag_and_loopback() {
        let tcp = |a: &str, flag| listen_addresses(&strings(&[a]), flag);
        let e = tcp("tcp:127.0.0.1:5640", false).unwrap_err();
        assert!(
            e.starts_with("--listen tcp:127.0.0.1:5640: plain TCP carries secrets unencrypted"),
            "{e}"
        );
        assert!(e.contains("--insecure-plain-tcp"), "{e}");
        assert_eq!(
            tcp("tcp:127.0.0.1:5640", true).unwrap(),
            [Listen::Tcp("127.0.0.1:5640".parse().unwrap())]
        );
        assert_eq!(
            tcp("tcp:[::1]:5640", true).unwrap(),
            [Listen::Tcp("[::1]:5640".parse().unwrap())]
        );
        assert!(tcp("tcp:127.9.9.9:1", true).is_ok());
        for far in ["tcp:0.0.0.0:5640", "tcp:10.0.0.1:5640", "tcp:[::]:5640"] {
            let e = tcp(far, true).unwrap_err();
            assert!(e.contains("listens on loopback only"), "{far}: {e}");
        }
        for bad in [
            "tcp:localhost:5640",
            "tcp:127.0.0.1",
            "tcp:",
            "tcp:127.0.0.1:99999",
        ] {
            let e = tcp(bad, true).unwrap_err();
            assert!(e.contains("expected tcp:HOST:PORT"), "{bad}: {e}");
        }
        // The flag alone allows nothing, and says so.
        for listen in [&[][..], &["unix:/run/a.sock"][..]] {
            let e = listen_addresses(&strings(listen), true).unwrap_err();
            assert!(e.starts_with("--insecure-plain-tcp allows"), "{e}");
        }
        // With a unix socket beside it, both are served.
        let both = listen_addresses(&strings(&["unix:/run/a.sock", "tcp:127.0.0.1:1"]), true);
        assert_eq!(both.unwrap().len(), 2);
    }
}
