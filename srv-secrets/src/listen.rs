//! Where the server listens: the addresses `--listen` and `--http` take (and `backup
//! --addr`, a unix socket only), read, checked and bound here and nowhere else.
//!
//! - `unix:PATH`, or a bare path: a unix socket, whose peers the kernel names by uid
//!   (SO_PEERCRED). What starts like another scheme is never taken for a file name.
//! - `tls:HOST:PORT`: TLS 1.3, whose clients are named by their certificates
//!   (`--tls-cert`, `--tls-key`, `--client-ca`).
//! - `tcp:HOST:PORT`: plain TCP, which proves nothing of its peers and hides nothing of
//!   what they read: refused unless `--insecure-plain-tcp`, and even then only on a
//!   loopback address (for tests on one machine), where every connection must present an
//!   API token at attach (`principal.rs`, `needs_token`): there is no anonymous principal.
//!
//! HOST is an IP address (`0.0.0.0`, `[::1]`) or `localhost`; PORT 0 picks a free port,
//! which the server prints once it listens.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The flag that lets `--listen tcp:` through, on loopback.
pub const INSECURE_PLAIN_TCP: &str = "--insecure-plain-tcp";

/// An address to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket's path.
    Unix(PathBuf),
    /// 9P (or HTTP) over TLS.
    Tls(SocketAddr),
    /// Plain TCP.
    Tcp(SocketAddr),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Tls(addr) => write!(f, "tls:{addr}"),
            Listen::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// Reads one address given with `flag` (for its errors).
///
/// # Errors
/// What is wrong with it, and what to give instead.
pub fn parse(text: &str, flag: &str) -> Result<Listen, String> {
    let refuse = || {
        format!(
            "{flag} {text}: give unix:PATH (or a socket's path), tls:HOST:PORT or \
             tcp:HOST:PORT"
        )
    };
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(refuse());
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = text.strip_prefix("tls:") {
        return host_port(rest, text, flag).map(Listen::Tls);
    }
    if let Some(rest) = text.strip_prefix("tcp:") {
        return host_port(rest, text, flag).map(Listen::Tcp);
    }
    if text.is_empty() || looks_like_a_scheme(text) {
        return Err(refuse());
    }
    Ok(Listen::Unix(PathBuf::from(text)))
}

/// `HOST:PORT` with HOST an IP address (IPv6 in brackets) or `localhost`.
fn host_port(rest: &str, text: &str, flag: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = rest.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = rest.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let scheme = &text[..text.len() - rest.len()];
    Err(format!(
        "{flag} {text}: give an IP address and a port, such as {scheme}0.0.0.0:5640 (every \
         interface), {scheme}127.0.0.1:5640 or {scheme}[::1]:5640"
    ))
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

/// Refuses plain TCP unless `insecure_plain_tcp`, and then anywhere but loopback.
///
/// # Errors
/// Why, and what to do instead.
pub fn check_plain_tcp(
    listen: &Listen,
    insecure_plain_tcp: bool,
    flag: &str,
) -> Result<(), String> {
    let Listen::Tcp(addr) = listen else {
        return Ok(());
    };
    if !insecure_plain_tcp {
        return Err(format!(
            "{flag} {listen}: plain TCP proves nothing of who connects and lets anyone on the \
             way read the secrets: listen on tls:{addr} (with --tls-cert, --tls-key and \
             --client-ca) instead; for a test on this machine alone, --insecure-plain-tcp \
             allows tcp: on a loopback address (every connection must then present an API \
             token)"
        ));
    }
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{flag} {listen}: --insecure-plain-tcp allows only loopback addresses \
             (127.0.0.1, [::1]): anywhere else, listen on tls:{addr}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn unix(p: &str) -> Listen {
        Listen::Unix(PathBuf::from(p))
    }

    #[test]
    fn unix_paths_with_or_without_the_scheme() {
        for (given, want) in [
            ("unix:/run/a.sock", "/run/a.sock"),
            ("/run/b.sock", "/run/b.sock"),
            ("rel/c.sock", "rel/c.sock"),
            ("./tcp:d", "./tcp:d"),
            ("unix:tcp:e", "tcp:e"),
        ] {
            assert_eq!(parse(given, "--listen").unwrap(), unix(want), "{given}");
        }
        assert_eq!(unix("/s").to_string(), "unix:/s");
    }

    #[test]
    fn tls_and_tcp_take_an_ip_address_and_a_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse("tls:0.0.0.0:5640", "--listen").unwrap(),
            Listen::Tls(addr("0.0.0.0:5640"))
        );
        assert_eq!(
            parse("tls:[::1]:0", "--listen").unwrap(),
            Listen::Tls(addr("[::1]:0"))
        );
        assert_eq!(
            parse("tcp:localhost:564", "--listen").unwrap(),
            Listen::Tcp(addr("127.0.0.1:564"))
        );
        assert_eq!(
            parse("tls:127.0.0.1:5640", "--http").unwrap().to_string(),
            "tls:127.0.0.1:5640"
        );
        for bad in [
            "tls:",
            "tls:host.example:5640",
            "tls:127.0.0.1",
            "tcp:1.2.3.4:x",
        ] {
            let e = parse(bad, "--listen").unwrap_err();
            assert!(
                e.starts_with(&format!("--listen {bad}: give an IP address and a port")),
                "{e}"
            );
        }
    }

    #[test]
    fn other_schemes_and_nothing_are_refused() {
        for bad in ["vsock:3:564", "unix:", "", "ssh:host"] {
            assert_eq!(
                parse(bad, "--listen").unwrap_err(),
                format!(
                    "--listen {bad}: give unix:PATH (or a socket's path), tls:HOST:PORT or \
                     tcp:HOST:PORT"
                )
            );
        }
    }

    #[test]
    fn plain_tcp_needs_the_flag_and_loopback() {
        let local = parse("tcp:127.0.0.1:5640", "--listen").unwrap();
        let e = check_plain_tcp(&local, false, "--listen").unwrap_err();
        assert!(
            e.starts_with("--listen tcp:127.0.0.1:5640: plain TCP proves nothing of who connects"),
            "{e}"
        );
        assert!(e.contains("--insecure-plain-tcp"), "{e}");
        check_plain_tcp(&local, true, "--listen").unwrap();
        check_plain_tcp(&parse("tcp:[::1]:1", "--listen").unwrap(), true, "--listen").unwrap();
        for wide in ["tcp:0.0.0.0:5640", "tcp:10.1.2.3:5640", "tcp:[::]:5640"] {
            let e =
                check_plain_tcp(&parse(wide, "--listen").unwrap(), true, "--listen").unwrap_err();
            assert!(
                e.contains("--insecure-plain-tcp allows only loopback addresses"),
                "{e}"
            );
        }
        // Nothing else is touched by it.
        check_plain_tcp(
            &parse("tls:0.0.0.0:1", "--listen").unwrap(),
            false,
            "--listen",
        )
        .unwrap();
        check_plain_tcp(&unix("/s"), false, "--listen").unwrap();
    }
}
