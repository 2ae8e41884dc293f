use proptest::prelude::*;

use super::*;
use crate::{
    CatalogCommand, CatalogFormat, MAX_NAME_LEN, MAX_VALUE_LEN, MetaFields, NO_UID, NameKind,
    PromptArgs, StrategyArg, Value, is_reserved_service,
};

/// Pushes `chunks` one by one, draining after each, then finishes. Never discards.
/// Every command and error of the stream, pushed in these chunks. A write that the skip
/// of a refused line swallows whole gets an error of its own (`still_skipping` tests
/// that); it depends on how the stream was split, so it is left out here.
fn run_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Result<Parsed, CtlError>> {
    let mut b = CtlBuffer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        b.push(chunk);
        while let Some(r) = b.next_command() {
            out.push(r);
        }
    }
    while let Some(r) = b.finish() {
        out.push(r);
    }
    out.retain(|r| !is_still_skipping(r));
    out
}

fn is_still_skipping(r: &Result<Parsed, CtlError>) -> bool {
    matches!(r, Err(e) if e.kind == ErrorKind::StillSkipping)
}

/// A write that brings only bytes of a refused command (the body of a literal too long)
/// fails, saying nothing in it was applied; the write that ends the skip goes on.
#[test]
fn a_write_swallowed_by_a_skip_fails() {
    let mut b = CtlBuffer::new();
    b.push(b"set a {99999999}\n");
    let e = b.next_command().expect("a result").expect_err("an error");
    assert_eq!(e.kind, ErrorKind::LiteralTooLong);
    assert!(b.next_command().is_none());
    // The next writes are the literal's bytes, skipped: each one fails.
    for _ in 0..3 {
        b.push(b"set after x\n");
        let e = b.next_command().expect("a result").expect_err("an error");
        assert_eq!(
            e.to_string(),
            "ctl: line 1: set: skipping the rest of the command refused earlier; nothing in \
             this write was applied"
        );
        assert!(b.next_command().is_none());
    }
    // A line too long: the same.
    let mut b = CtlBuffer::new();
    b.push(&vec![b'x'; crate::MAX_LINE_LEN + 1]);
    let e = b.next_command().expect("a result").expect_err("an error");
    assert_eq!(e.kind, ErrorKind::CommandTooLong);
    b.push(b"more of it");
    let e = b.next_command().expect("a result").expect_err("an error");
    assert_eq!(e.kind, ErrorKind::StillSkipping);
    // A write that ends the skip is read on from there.
    b.push(b" end\nset b 1\n");
    let p = b.next_command().expect("a result").expect("a command");
    assert_eq!((p.line, p.command), (2, set("b", b"1")));
}

fn run(input: &[u8]) -> Vec<Result<Parsed, CtlError>> {
    run_chunks([input])
}

/// Like [`run`], as commands and error strings.
fn texts(input: &[u8]) -> Vec<Result<(usize, Command), String>> {
    run(input)
        .into_iter()
        .map(|r| r.map(|p| (p.line, p.command)).map_err(|e| e.to_string()))
        .collect()
}

/// The one result of `input`.
fn one(input: &[u8]) -> Result<Command, String> {
    let mut all = texts(input);
    assert_eq!(all.len(), 1, "expected one result, got {all:?}");
    all.remove(0).map(|(_, c)| c)
}

/// The one error of `input`, as the 9P error string.
fn err(input: &[u8]) -> String {
    match one(input) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

fn val(b: &[u8]) -> Value {
    Value::from(b.to_vec())
}

fn set(name: &str, value: &[u8]) -> Command {
    Command::Set {
        name: name.into(),
        value: val(value),
    }
}

/// Quotes `bytes` the rc way.
fn rc_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
    out
}

/// A PEM-looking text of exactly `len` bytes.
fn pem(len: usize) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for _ in 0..20 {
            for _ in 0..64 {
                out.push(alphabet[i % 64]);
                i = i.wrapping_mul(31).wrapping_add(7);
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------- commands

#[test]
fn every_command() {
    assert_eq!(
        one(b"set db_password hunter2\n"),
        Ok(set("db_password", b"hunter2"))
    );
    assert_eq!(
        one(b"delete api_key\n"),
        Ok(Command::Delete {
            name: "api_key".into()
        })
    );
    assert_eq!(
        one(b"grant web db_password\n"),
        Ok(Command::Grant {
            service: "web".into(),
            name: "db_password".into(),
            expires: None,
        })
    );
    assert_eq!(
        one(b"revoke web db_password\n"),
        Ok(Command::Revoke {
            service: "web".into(),
            name: "db_password".into()
        })
    );
    assert_eq!(one(b"rotate-key\n"), Ok(Command::RotateKey));
    assert_eq!(
        one(b"service web uid 1000\n"),
        Ok(Command::ServiceUid {
            service: "web".into(),
            uid: 1000
        })
    );
    assert_eq!(
        one(b"service web uid 4294967294\n"),
        Ok(Command::ServiceUid {
            service: "web".into(),
            uid: 4_294_967_294
        })
    );
    assert_eq!(
        one(b"service web manifest {38}\nsecret db_password\nconfig log_level=1\n\n"),
        Ok(Command::ServiceManifest {
            service: "web".into(),
            manifest: val(b"secret db_password\nconfig log_level=1\n")
        })
    );
    assert_eq!(
        one(b"service web manifest 'secret a\nconfig b=c'\n"),
        Ok(Command::ServiceManifest {
            service: "web".into(),
            manifest: val(b"secret a\nconfig b=c")
        })
    );
    assert_eq!(
        one(b"service web remove\n"),
        Ok(Command::ServiceRemove {
            service: "web".into()
        })
    );
    assert_eq!(
        one(b"service web suspend\n"),
        Ok(Command::ServiceSuspend {
            service: "web".into()
        })
    );
    assert_eq!(
        one(b"service web resume\n"),
        Ok(Command::ServiceResume {
            service: "web".into()
        })
    );
    assert_eq!(one(b"freeze\n"), Ok(Command::Freeze));
    assert_eq!(one(b"unfreeze\n"), Ok(Command::Unfreeze));
    assert_eq!(
        one(b"revoke-all db_password\n"),
        Ok(Command::RevokeAll {
            name: "db_password".into()
        })
    );
    assert_eq!(one(b"matrix\n"), Ok(Command::Matrix));
    // Break-glass commands take nothing more, and check their names.
    let kind = |line: &[u8]| run(line).remove(0).unwrap_err().kind;
    for (line, usage) in [
        (&b"freeze now\n"[..], "freeze"),
        (b"unfreeze x\n", "unfreeze"),
        (b"matrix web\n", "matrix"),
        (b"revoke-all a b\n", "revoke-all NAME"),
        (b"service web suspend now\n", "service SERVICE suspend"),
    ] {
        assert_eq!(
            kind(line),
            ErrorKind::TooManyArguments {
                usage,
                value: false
            },
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(
        kind(b"revoke-all ..\n"),
        ErrorKind::InvalidName(NameKind::Secret)
    );
    assert_eq!(kind(b"service admin suspend\n"), ErrorKind::ReservedService);
    assert_eq!(
        kind(b"service web suspnd\n"),
        ErrorKind::UnknownAction {
            suggestion: Some("suspend")
        }
    );
    // Names at the edges of the rule.
    let long = "N".repeat(MAX_NAME_LEN);
    assert_eq!(
        one(format!("delete {long}\n").as_bytes()),
        Ok(Command::Delete { name: long })
    );
    assert_eq!(
        one(b"grant a.b_c-D ...\n"),
        Ok(Command::Grant {
            service: "a.b_c-D".into(),
            name: "...".into(),
            expires: None,
        })
    );
    // Any token form works in any position.
    assert_eq!(one(b"'set' {1}\nn v\n"), Ok(set("n", b"v")));
}

#[test]
fn values() {
    assert_eq!(one(b"set a ''\n"), Ok(set("a", b"")));
    assert_eq!(one(b"set a {0}\n\n"), Ok(set("a", b"")));
    assert_eq!(one(b"set a\t \tb \t\n"), Ok(set("a", b"b")));
    assert_eq!(one(b"set a \xff\xfe\x01\n"), Ok(set("a", b"\xff\xfe\x01")));
    assert_eq!(one(b"set a {x\n"), Ok(set("a", b"{x")));
    assert_eq!(one(b"set a x}\n"), Ok(set("a", b"x}")));
    let max = vec![b'v'; MAX_VALUE_LEN];
    let mut line = b"set a ".to_vec();
    line.extend_from_slice(&max);
    line.push(b'\n');
    assert_eq!(one(&line), Ok(set("a", &max)));
}

// ---------------------------------------------------------------- quoting

#[test]
fn quoting() {
    assert_eq!(one(b"set a 'b c'\n"), Ok(set("a", b"b c")));
    assert_eq!(one(b"set a 'it''s'\n"), Ok(set("a", b"it's")));
    assert_eq!(one(b"set a ''''\n"), Ok(set("a", b"'")));
    assert_eq!(one(b"set a ab'c d'e\n"), Ok(set("a", b"abc de")));
    assert_eq!(one(b"set a a''b\n"), Ok(set("a", b"ab")));
    assert_eq!(one(b"set 'a' b\n"), Ok(set("a", b"b")));
    assert_eq!(
        one(b"set a 'line 1\nline 2\n'\n"),
        Ok(set("a", b"line 1\nline 2\n"))
    );
    assert_eq!(one(b"set a 'nul\0inside'\n"), Ok(set("a", b"nul\0inside")));
    assert_eq!(one(b"set a 'cr\r'\n"), Ok(set("a", b"cr\r")));
    assert_eq!(one(b"set a 'cr\r\n'\r\n"), Ok(set("a", b"cr\r\n")));
    assert_eq!(one(b"set a '{5}'\n"), Ok(set("a", b"{5}")));
    assert_eq!(one(b"set a '\t '\n"), Ok(set("a", b"\t ")));
    // A quoted newline does not end the line, so the next command is line 2.
    assert_eq!(
        texts(b"set a 'x\ny'\nrotate-key\n"),
        vec![Ok((1, set("a", b"x\ny"))), Ok((2, Command::RotateKey))]
    );
}

// ---------------------------------------------------------------- literals

#[test]
fn literals() {
    assert_eq!(one(b"set cert {5}\nab\ncd\n"), Ok(set("cert", b"ab\ncd")));
    assert_eq!(
        one(b"set cert {5}\r\nab\ncd\r\n"),
        Ok(set("cert", b"ab\ncd"))
    );
    assert_eq!(one(b"set k {3}\n'\0\n\n"), Ok(set("k", b"'\0\n")));
    assert_eq!(one(b"set k {2}\n\r\n\n"), Ok(set("k", b"\r\n")));
    assert_eq!(one(b"set k {1}\n\r\r\n"), Ok(set("k", b"\r")));
    assert_eq!(one(b"set k {03}\nabc\n"), Ok(set("k", b"abc")));
    assert_eq!(one(b"set k {3}\nabc \n"), Ok(set("k", b"abc")));
    // A literal needs no newline after it at the end of the stream.
    assert_eq!(one(b"set k {3}\nabc"), Ok(set("k", b"abc")));
    assert_eq!(
        texts(b"set a {0}\n\nset b {1}\n\n\n"),
        vec![Ok((1, set("a", b""))), Ok((2, set("b", b"\n")))]
    );
}

#[test]
fn literal_split_at_every_point() {
    let input = b"set cert {11}\nab\ncd\r\n'x' \nrotate-key\r\n";
    let whole = run(input);
    assert_eq!(
        whole,
        vec![
            Ok(Parsed {
                line: 1,
                command: set("cert", b"ab\ncd\r\n'x' ")
            }),
            Ok(Parsed {
                line: 2,
                command: Command::RotateKey
            })
        ]
    );
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run_chunks([a, b]), whole, "split at {at}");
    }
    assert_eq!(run_chunks(input.chunks(1)), whole);
}

#[test]
fn literal_past_the_limit_is_skipped_whole() {
    // The header is refused at once; its 1 MiB + 1 bytes, which look like commands, are
    // skipped rather than run; the line after them is line 2.
    let n = MAX_VALUE_LEN + 1;
    let mut input = format!("set big {{{n}}}\n").into_bytes();
    let body: Vec<u8> = b"delete a\n".iter().copied().cycle().take(n).collect();
    input.extend_from_slice(&body);
    input.extend_from_slice(b"\nrotate-key\n");
    let expect = vec![
        Err("ctl: line 1: set: literal too long; a {N} literal may hold at most 1 MiB (1048576 bytes)".to_string()),
        Ok((2, Command::RotateKey)),
    ];
    assert_eq!(texts(&input), expect);
    let chunked: Vec<_> = run_chunks(input.chunks(4096))
        .into_iter()
        .map(|r| r.map(|p| (p.line, p.command)).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(chunked, expect);
}

#[test]
fn malformed_literals() {
    let malformed = "malformed literal; send {N}, a newline, then exactly N bytes \
                     (to send a word in braces, quote it)";
    for input in [
        &b"set a {12x}\n"[..],
        b"set a {}\n",
        b"set a {+5}\n",
        b"set a {-1}\n",
        b"set a {5} \n",
        b"set a {5}",
        b"set a {\"k\":1}\n",
        b"set a {3}\nabcd\n",
    ] {
        assert_eq!(
            err(input),
            format!("ctl: line 1: set: {malformed}"),
            "{input:?}"
        );
    }
    // The bytes after a malformed header are lines of their own (and fail as such).
    assert_eq!(
        texts(b"set a {12x}\nrotate-key\n"),
        vec![
            Err(format!("ctl: line 1: set: {malformed}")),
            Ok((2, Command::RotateKey))
        ]
    );
}

// ---------------------------------------------------------------- lines

#[test]
fn crlf_and_blank_lines() {
    assert_eq!(
        texts(b"\r\n \t\n\nset a b\r\n\t\r\nrotate-key\r\n"),
        vec![Ok((4, set("a", b"b"))), Ok((6, Command::RotateKey))]
    );
    // Only a CR right before the newline is dropped.
    assert_eq!(one(b"set a b\r\r\n"), Ok(set("a", b"b\r")));
    assert_eq!(one(b"set a 'b'\r\n"), Ok(set("a", b"b")));
    assert!(texts(b"").is_empty());
    assert!(texts(b"\n\n  \n").is_empty());
}

#[test]
fn several_commands_in_one_push() {
    assert_eq!(
        texts(b"set a 1\ngrant web a\nrevoke web a\ndelete a\nrotate-key\n"),
        vec![
            Ok((1, set("a", b"1"))),
            Ok((
                2,
                Command::Grant {
                    service: "web".into(),
                    name: "a".into(),
                    expires: None,
                }
            )),
            Ok((
                3,
                Command::Revoke {
                    service: "web".into(),
                    name: "a".into()
                }
            )),
            Ok((4, Command::Delete { name: "a".into() })),
            Ok((5, Command::RotateKey)),
        ]
    );
}

#[test]
fn bad_command_in_the_middle() {
    // Without a discard, parsing goes on after the bad line.
    assert_eq!(
        texts(b"set a 1\nbogus\nset b 2\n"),
        vec![
            Ok((1, set("a", b"1"))),
            Err("ctl: line 2: unknown command; write 'help' for the list".into()),
            Ok((3, set("b", b"2"))),
        ]
    );
    // The server's loop: on an error, discard the rest of the write. Line numbers keep
    // counting the discarded lines.
    let mut b = CtlBuffer::new();
    b.push(b"set a 1\nbogus\nset b 2\nset c 3\n");
    assert_eq!(
        b.next_command().and_then(Result::ok).map(|p| p.line),
        Some(1)
    );
    let e = b.next_command().and_then(Result::err);
    assert_eq!(e.map(|e| e.line), Some(2));
    b.discard_pending();
    assert_eq!(b.pending(), 0);
    assert_eq!(b.next_command(), None);
    b.push(b"delete z\n");
    assert_eq!(
        b.next_command(),
        Some(Ok(Parsed {
            line: 5,
            command: Command::Delete { name: "z".into() }
        }))
    );
    assert_eq!(b.finish(), None);
}

#[test]
fn discard_skips_the_tail_of_a_discarded_line() {
    let mut b = CtlBuffer::new();
    b.push(b"bogus\nset x 'first half");
    assert!(matches!(b.next_command(), Some(Err(_))));
    b.discard_pending();
    // The rest of the quoted value arrives; it holds a line that looks like a command,
    // which must not run.
    b.push(b"\ndelete everything\n' and the end\nrotate-key\n");
    assert_eq!(
        b.next_command(),
        Some(Ok(Parsed {
            line: 3,
            command: Command::RotateKey
        }))
    );
    assert_eq!(b.next_command(), None);

    // A discarded write that ends between lines, or in blanks, skips nothing later.
    let mut b = CtlBuffer::new();
    b.push(b"bogus\n  ");
    assert!(matches!(b.next_command(), Some(Err(_))));
    b.discard_pending();
    b.push(b"rotate-key\n");
    assert_eq!(
        b.next_command(),
        Some(Ok(Parsed {
            line: 2,
            command: Command::RotateKey
        }))
    );
}

#[test]
fn finish() {
    // Nothing pending.
    let mut b = CtlBuffer::new();
    assert_eq!(b.finish(), None);
    b.push(b"rotate-key\n");
    assert!(b.next_command().is_some());
    assert_eq!(b.finish(), None);

    // A last line without its newline.
    assert_eq!(texts(b"set a b"), vec![Ok((1, set("a", b"b")))]);
    assert_eq!(texts(b"rotate-key\r"), vec![Ok((1, Command::RotateKey))]);
    assert_eq!(texts(b"\n\nrotate-key"), vec![Ok((3, Command::RotateKey))]);
    assert!(texts(b"\n \t").is_empty());

    // Complete commands still pending come first, one per call.
    let mut b = CtlBuffer::new();
    b.push(b"delete a\ndelete b");
    let lines: Vec<usize> = std::iter::from_fn(|| b.finish())
        .map(|r| r.map(|p| p.line).unwrap_or(0))
        .collect();
    assert_eq!(lines, [1, 2]);
    assert_eq!(b.pending(), 0);

    // The buffer is at a line start afterwards.
    b.push(b"rotate-key\n");
    assert_eq!(
        b.next_command(),
        Some(Ok(Parsed {
            line: 3,
            command: Command::RotateKey
        }))
    );

    // Open quotes and literals.
    assert_eq!(
        texts(b"\n\nset a 'abc"),
        vec![Err(
            "ctl: line 3: set: unterminated quote; close it with ' or send the value \
                  as a {N} literal"
                .into()
        )]
    );
    assert_eq!(
        err(b"'abc"),
        "ctl: line 1: unterminated quote; close it with ' or send the value as a {N} literal"
    );
    assert_eq!(
        err(b"set a {5}\nab"),
        "ctl: line 1: set: literal cut short; the stream ended before all N bytes of a {N} \
         literal arrived"
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn every_error_text() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"bogus\n",
            "ctl: line 1: unknown command; write 'help' for the list",
        ),
        (
            b"sett a b\n",
            "ctl: line 1: unknown command; did you mean 'set'? write 'help' for the list",
        ),
        (
            b"Set a b\n",
            "ctl: line 1: unknown command; did you mean 'set'? write 'help' for the list",
        ),
        (
            b"grnat web a\n",
            "ctl: line 1: unknown command; did you mean 'grant'? write 'help' for the list",
        ),
        (
            b"rotatekey\n",
            "ctl: line 1: unknown command; did you mean 'rotate-key'? write 'help' for the list",
        ),
        (
            b"'' a\n",
            "ctl: line 1: unknown command; write 'help' for the list",
        ),
        (
            b"\nset a\n",
            "ctl: line 2: set: missing value; usage: set NAME VALUE",
        ),
        (
            b"set\n",
            "ctl: line 1: set: missing name; usage: set NAME VALUE",
        ),
        (
            b"delete\n",
            "ctl: line 1: delete: missing name; usage: delete NAME",
        ),
        (
            b"grant\n",
            "ctl: line 1: grant: missing service; usage: grant SERVICE NAME [expires DURATION]",
        ),
        (
            b"revoke web\n",
            "ctl: line 1: revoke: missing name; usage: revoke SERVICE NAME",
        ),
        (
            b"service\n",
            "ctl: line 1: service: missing service; usage: service SERVICE (uid UID|manifest VALUE|tiers LIST|remove|suspend|resume)",
        ),
        (
            b"service web\n",
            "ctl: line 1: service: missing action; usage: service SERVICE (uid UID|manifest VALUE|tiers LIST|remove|suspend|resume)",
        ),
        (
            b"service web uid\n",
            "ctl: line 1: service: missing uid; usage: service SERVICE uid UID",
        ),
        (
            b"service web manifest\n",
            "ctl: line 1: service: missing value; usage: service SERVICE manifest VALUE",
        ),
        (
            b"grant web/x a\n",
            "ctl: line 1: grant: invalid service name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"grant web ..\n",
            "ctl: line 1: grant: invalid secret name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"set . v\n",
            "ctl: line 1: set: invalid secret name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"delete ''\n",
            "ctl: line 1: delete: invalid secret name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"delete caf\xc3\xa9\n",
            "ctl: line 1: delete: invalid secret name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"service .. remove\n",
            "ctl: line 1: service: invalid service name; names are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
        ),
        (
            b"service admin remove\n",
            "ctl: line 1: service: 'admin' and 'secrets' are reserved service names",
        ),
        (
            b"grant secrets a\n",
            "ctl: line 1: grant: 'admin' and 'secrets' are reserved service names",
        ),
        (
            b"set a b c\n",
            "ctl: line 1: set: too many arguments; usage: set NAME VALUE (quote a value that holds spaces)",
        ),
        (
            b"delete a b\n",
            "ctl: line 1: delete: too many arguments; usage: delete NAME",
        ),
        (
            b"grant a b c\n",
            "ctl: line 1: grant: unknown option; expected: expires",
        ),
        (
            b"grant a b expires 1d c\n",
            "ctl: line 1: grant: too many arguments; usage: grant SERVICE NAME [expires DURATION]",
        ),
        (
            b"grant a b expires 10\n",
            "ctl: line 1: grant: a duration is a whole number and a unit: 30s, 15m, 12h, 90d or 2w (no spaces)",
        ),
        (
            b"promote a overlap 0s\n",
            "ctl: line 1: promote: a duration is at least 1s",
        ),
        (
            b"promote a overlap 1d revoke-previous\n",
            "ctl: line 1: promote: overlap and revoke-previous exclude each other: revoking destroys the old value",
        ),
        (
            b"promote a revoke-previous revoke-previous\n",
            "ctl: line 1: promote: an option is given twice; give each once",
        ),
        (
            b"promote a overlp 1d\n",
            "ctl: line 1: promote: unknown option; did you mean 'overlap'? expected: overlap, revoke-previous, retire-when-read",
        ),
        (
            b"stage a\n",
            "ctl: line 1: stage: missing value; usage: stage NAME (VALUE | generate [TEMPLATE])",
        ),
        (
            b"stage a b c\n",
            "ctl: line 1: stage: too many arguments; usage: stage NAME VALUE (quote a value that holds spaces)",
        ),
        (
            b"stage a generate t u\n",
            "ctl: line 1: stage: too many arguments; usage: stage NAME generate [TEMPLATE]",
        ),
        (
            b"reason\n",
            "ctl: line 1: reason: missing reason; usage: reason TEXT",
        ),
        (
            b"history\n",
            "ctl: line 1: history: missing name; usage: history NAME",
        ),
        (
            b"stale now\n",
            "ctl: line 1: stale: too many arguments; usage: stale",
        ),
        (
            b"revoke a b {12x}\n",
            "ctl: line 1: revoke: too many arguments; usage: revoke SERVICE NAME",
        ),
        (
            b"rotate-key now\n",
            "ctl: line 1: rotate-key: too many arguments; usage: rotate-key",
        ),
        (
            b"service web uid 1 2\n",
            "ctl: line 1: service: too many arguments; usage: service SERVICE uid UID",
        ),
        (
            b"service web manifest a b\n",
            "ctl: line 1: service: too many arguments; usage: service SERVICE manifest VALUE (quote a value that holds spaces)",
        ),
        (
            b"service web remove now\n",
            "ctl: line 1: service: too many arguments; usage: service SERVICE remove",
        ),
        (
            b"service web frob\n",
            "ctl: line 1: service: unknown action; expected: manifest, remove, resume, suspend, tiers, uid",
        ),
        (
            b"service web remve\n",
            "ctl: line 1: service: unknown action; did you mean 'remove'? expected: manifest, remove, resume, suspend, tiers, uid",
        ),
        (
            b"service web uid -1\n",
            "ctl: line 1: service: uid must be a decimal number from 0 to 4294967294",
        ),
        (
            b"service web uid 4294967295\n",
            "ctl: line 1: service: uid must be a decimal number from 0 to 4294967294",
        ),
        (
            b"service web uid 1e3\n",
            "ctl: line 1: service: uid must be a decimal number from 0 to 4294967294",
        ),
        (
            b"set a {1048577}\n",
            "ctl: line 1: set: literal too long; a {N} literal may hold at most 1 MiB (1048576 bytes)",
        ),
        (
            b"set a {12x}\n",
            "ctl: line 1: set: malformed literal; send {N}, a newline, then exactly N bytes (to send a word in braces, quote it)",
        ),
        (
            b"{12x} a\n",
            "ctl: line 1: malformed literal; send {N}, a newline, then exactly N bytes (to send a word in braces, quote it)",
        ),
        (
            b"set a 'b\n",
            "ctl: line 1: set: unterminated quote; close it with ' or send the value as a {N} literal",
        ),
        (
            b"set a {2}\nb",
            "ctl: line 1: set: literal cut short; the stream ended before all N bytes of a {N} literal arrived",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            &err(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn value_too_long() {
    // Quoted, so that the line fits the limit but the value does not.
    let mut input = b"set a '".to_vec();
    input.extend(vec![b'x'; MAX_VALUE_LEN + 1]);
    input.extend_from_slice(b"'\n");
    assert_eq!(
        err(&input),
        "ctl: line 1: set: value too long; the limit is 1 MiB (1048576 bytes)"
    );
    let mut input = b"service web manifest ".to_vec();
    input.extend(vec![b'x'; MAX_VALUE_LEN + 1]);
    assert_eq!(
        err(&input),
        "ctl: line 1: service: value too long; the limit is 1 MiB (1048576 bytes)"
    );
}

#[test]
fn command_too_long() {
    let too_long = "command too long; a value may be at most 1 MiB (1048576 bytes)";
    // No verb: the first word never ends.
    assert_eq!(
        err(&vec![b'x'; MAX_LINE_LEN + 1]),
        format!("ctl: line 1: {too_long}")
    );
    // Exactly at the limit is a line (of one over-long word).
    let mut at_limit = b"set a ".to_vec();
    at_limit.extend(vec![b'v'; MAX_LINE_LEN - at_limit.len()]);
    at_limit.push(b'\n');
    assert_eq!(
        err(&at_limit),
        "ctl: line 1: set: value too long; the limit is 1 MiB (1048576 bytes)"
    );

    // A quoted value of 3 MiB arriving in 4 KiB writes: one error, then the rest of the line
    // (with a command-like line inside the quote) is skipped, and memory stays bounded.
    let mut input = b"set a '".to_vec();
    input.extend(vec![b'x'; 3 * MAX_VALUE_LEN]);
    input.extend_from_slice(b"\ndelete a\n'\nrotate-key\n");
    let mut b = CtlBuffer::new();
    let mut got = Vec::new();
    for chunk in input.chunks(4096) {
        b.push(chunk);
        assert!(
            b.pending() <= MAX_LINE_LEN + 4096,
            "pending {}",
            b.pending()
        );
        while let Some(r) = b.next_command() {
            // Each write the skip swallows whole fails on its own (tested apart).
            if !is_still_skipping(&r) {
                got.push(r.map(|p| (p.line, p.command)).map_err(|e| e.to_string()));
            }
        }
    }
    assert_eq!(b.finish(), None);
    assert_eq!(
        got,
        vec![
            Err(format!("ctl: line 1: set: {too_long}")),
            Ok((2, Command::RotateKey))
        ]
    );
    assert!(b.scanned <= input.len());
}

#[test]
fn errors_never_echo_even_when_a_value_is_split_by_a_newline() {
    let out = texts(b"set a my secret\nvalue ZQXJ-secret-tail\nZQXJ\n");
    assert_eq!(out.len(), 3);
    for r in out {
        let e = r.expect_err("every line is bad");
        assert!(
            !e.contains("secret") && !e.contains("ZQXJ") && !e.contains("value Z"),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------- large values

fn push_in_chunks(input: &[u8], chunk: usize) -> (Vec<Result<Parsed, CtlError>>, usize) {
    let mut b = CtlBuffer::new();
    let mut out = Vec::new();
    for c in input.chunks(chunk) {
        b.push(c);
        while let Some(r) = b.next_command() {
            out.push(r);
        }
    }
    while let Some(r) = b.finish() {
        out.push(r);
    }
    out.retain(|r| !is_still_skipping(r));
    (out, b.scanned)
}

#[test]
fn large_values_in_9pfuse_sized_writes() {
    let chain = pem(64 * 1024 + 17);
    let max = pem(MAX_VALUE_LEN);
    for value in [&chain, &max] {
        // As a literal (what deploy sends), then as a quoted value.
        let literal = set("cert", value).encode();
        let mut quoted = b"set cert ".to_vec();
        quoted.extend(rc_quote(value));
        quoted.push(b'\n');
        for input in [&literal[..], &quoted[..]] {
            let mut input = input.to_vec();
            input.extend_from_slice(b"rotate-key\n");
            let (out, scanned) = push_in_chunks(&input, 4096);
            assert_eq!(
                out,
                vec![
                    Ok(Parsed {
                        line: 1,
                        command: set("cert", value)
                    }),
                    Ok(Parsed {
                        line: 2,
                        command: Command::RotateKey
                    })
                ]
            );
            // Each byte went through the scanner once: nothing is rescanned per write.
            assert_eq!(scanned, input.len());
        }
    }
}

#[test]
fn max_value_with_every_byte_quoted() {
    // 1 MiB of quotes doubles to 2 MiB when quoted: still within the line limit.
    let value = vec![b'\''; MAX_VALUE_LEN];
    let mut input = b"service web manifest ".to_vec();
    input.extend(rc_quote(&value));
    let (out, scanned) = push_in_chunks(&input, 4096);
    assert_eq!(
        out,
        vec![Ok(Parsed {
            line: 1,
            command: Command::ServiceManifest {
                service: "web".into(),
                manifest: val(&value)
            }
        })]
    );
    assert_eq!(scanned, input.len());
}

#[test]
fn value_over_the_limit_by_64k() {
    // 1 MiB + 64 KiB as a literal: refused at the header, the bytes skipped.
    let value = pem(MAX_VALUE_LEN + 64 * 1024);
    let mut input = set("cert", &value).encode().to_vec();
    input.extend_from_slice(b"delete x\n");
    let (out, _) = push_in_chunks(&input, 4096);
    assert_eq!(
        out.iter()
            .map(|r| r.as_ref().map(|p| p.line).map_err(|e| e.kind))
            .collect::<Vec<_>>(),
        vec![Err(ErrorKind::LiteralTooLong), Ok(2)]
    );
    // Quoted: too long as a value, and the line still fits.
    let mut input = b"set cert ".to_vec();
    input.extend(rc_quote(&value));
    input.extend_from_slice(b"\ndelete x\n");
    let (out, _) = push_in_chunks(&input, 4096);
    assert_eq!(
        out.iter()
            .map(|r| r.as_ref().map(|p| p.line).map_err(|e| e.kind))
            .collect::<Vec<_>>(),
        vec![Err(ErrorKind::ValueTooLong), Ok(2)]
    );
}

// ---------------------------------------------------------------- secrecy

#[test]
fn debug_output_hides_values() {
    let p = &run(b"set db 'hunter2 is my password'\n")[0];
    let shown = format!("{p:?}");
    assert!(shown.contains("Value(22 bytes)"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let mut b = CtlBuffer::new();
    b.push(b"set db 'hunter2");
    assert_eq!(b.next_command(), None);
    let shown = format!("{b:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("pending: 15"), "{shown}");
}

#[test]
fn consumed_bytes_are_zeroed() {
    let mut b = CtlBuffer::new();
    b.push(b"set a hunter2\nset b 'second");
    assert!(matches!(b.next_command(), Some(Ok(_))));
    // The parsed line's bytes are zero in place; the unfinished line is intact.
    assert!(b.buf[..14].iter().all(|&x| x == 0));
    assert_eq!(&b.buf[b.start..], b"set b 'second");
    // Compaction moves the tail down and zeroes what it left behind.
    b.push(b"'\n");
    assert_eq!(&b.buf[..], b"set b 'second'\n");
    assert!(matches!(b.next_command(), Some(Ok(_))));
    assert_eq!(b.buf.len(), 0);
    // Discarding zeroes too.
    b.push(b"bogus\nset c 'third");
    assert!(matches!(b.next_command(), Some(Err(_))));
    b.discard_pending();
    assert_eq!(b.pending(), 0);
}

#[test]
fn parsed_error_formats_application_errors() {
    let p = &run(b"\ngrant web db\n")[0];
    let p = p.as_ref().expect("a command");
    assert_eq!(
        p.error("no such service; add it first with: service NAME uid UID"),
        "ctl: line 2: grant: no such service; add it first with: service NAME uid UID"
    );
    let _ = NameKind::Secret;
}

/// Every error text the parser can produce after its `ctl: line K: ` prefix: each kind with
/// each verb it can come with. An unknown command has no verb; a usage comes with its own
/// verb and the arguments `parse.rs` can find missing; any other kind may come with any
/// verb, or with none (found before the verb was).
fn possible_error_texts() -> Vec<String> {
    use crate::command::usage;
    use crate::error::ACTIONS;
    let verbs: Vec<&'static str> = crate::command::VERBS.iter().map(|v| v.word).collect();
    // (usage, the arguments that can be missing, whether "too many arguments" can name it
    // and then with the hint about values)
    let commands: [(&str, &[&str], Option<bool>); 47] = [
        (usage::ABORT, &[], Some(false)),
        (usage::BEGIN, &[], Some(false)),
        (usage::COMMIT, &[], Some(false)),
        (usage::HELP, &[], Some(false)),
        (usage::DELETE, &["name"], Some(false)),
        (usage::DISCARD, &["name"], Some(false)),
        (usage::GRANT, &["service", "name", "duration"], Some(false)),
        (usage::HISTORY, &["name"], Some(false)),
        (usage::PROMOTE, &["name", "duration"], None),
        (usage::REASON, &["reason"], Some(false)),
        (usage::RETIRE, &["name"], Some(false)),
        (usage::ROLLBACK, &["name"], Some(false)),
        (usage::STAGE, &["name", "value"], None),
        (usage::STAGE_VALUE, &[], Some(true)),
        (usage::STAGE_GENERATE, &[], Some(false)),
        (usage::STALE, &[], Some(false)),
        (usage::REVOKE, &["service", "name"], Some(false)),
        (usage::ROTATE_KEY, &[], Some(false)),
        (usage::SERVICE, &["service", "action"], None),
        (usage::SERVICE_MANIFEST, &["value"], Some(true)),
        (usage::SERVICE_REMOVE, &[], Some(false)),
        (usage::SERVICE_TIERS, &["tiers"], Some(false)),
        (usage::SERVICE_UID, &["uid"], Some(false)),
        (usage::SET, &["name", "value"], Some(true)),
        (usage::TIER, &["action"], None),
        (usage::TIER_ADD, &["tier"], Some(false)),
        (usage::TIER_REMOVE, &["tier"], Some(false)),
        (usage::META, &["name", "value"], None),
        (usage::META_REMOVE, &[], Some(false)),
        (
            usage::STRATEGY,
            &["name", "tier", "class", "strategy"],
            None,
        ),
        (usage::SERVE, &[], Some(false)),
        (usage::STRIP, &[], Some(false)),
        (usage::GENERATE_STRATEGY, &["template"], Some(false)),
        (usage::PROMPT, &["label", "value"], None),
        (usage::DELEGATE, &["reference"], Some(false)),
        (usage::REMOVE_STRATEGY, &[], Some(false)),
        (usage::PRESENT, &["name", "tier", "yes or no"], Some(false)),
        (usage::GENERATE, &["name"], Some(false)),
        (usage::PLAN, &["service", "tier"], Some(false)),
        (usage::LINT, &[], Some(false)),
        (usage::CATALOG, &["action"], None),
        (usage::EXPORT, &[], Some(false)),
        (usage::APPLY, &["file"], Some(false)),
        (usage::BUNDLE, &["action"], None),
        (
            usage::BUNDLE_CREATE,
            &["service", "tier", "deployment"],
            Some(false),
        ),
        (usage::BUNDLE_LIST, &["deployment", "name"], None),
        (usage::BUNDLE_IDENTIFY, &["value"], Some(true)),
    ];
    let with_any_verb = [
        ErrorKind::BadUid,
        ErrorKind::CommandTooLong,
        ErrorKind::InvalidName(NameKind::Secret),
        ErrorKind::InvalidName(NameKind::Service),
        ErrorKind::InvalidName(NameKind::Deployment),
        ErrorKind::LiteralCutShort,
        ErrorKind::LiteralTooLong,
        ErrorKind::MalformedLiteral,
        ErrorKind::ReservedService,
        ErrorKind::UnterminatedQuote,
        ErrorKind::ValueTooLong,
        ErrorKind::UnknownAction { suggestion: None },
        ErrorKind::BadNumber,
        ErrorKind::CatalogTooLarge,
        ErrorKind::NotText,
        ErrorKind::RepeatedOption,
        ErrorKind::BadDuration(model::DurationError::Form),
        ErrorKind::BadDuration(model::DurationError::Zero),
        ErrorKind::BadDuration(model::DurationError::TooLong),
    ]
    .into_iter()
    .chain(ACTIONS.map(|a| ErrorKind::UnknownAction {
        suggestion: Some(a),
    }));
    let mut out = Vec::new();
    for kind in with_any_verb {
        out.push(kind.to_string());
        out.extend(verbs.iter().map(|v| format!("{v}: {kind}")));
    }
    // What CtlStream refuses, with the verbs it refuses them for.
    let transactions = [
        ("commit", ErrorKind::NoTransaction),
        ("abort", ErrorKind::NoTransaction),
        ("rotate-key", ErrorKind::NotInTransaction),
        ("plan", ErrorKind::NotInTransaction),
        ("lint", ErrorKind::NotInTransaction),
        ("catalog", ErrorKind::NotInTransaction),
        ("bundle", ErrorKind::NotInTransaction),
        ("history", ErrorKind::NotInTransaction),
        ("stale", ErrorKind::NotInTransaction),
        ("reason", ErrorKind::BadReason),
        ("promote", ErrorKind::OverlapAndRevoke),
        ("promote", ErrorKind::RetireWhenReadWithoutOverlap),
        ("commit", ErrorKind::TransactionAborted { line: 99_999 }),
        ("begin", ErrorKind::TransactionNotCommitted),
        ("begin", ErrorKind::TransactionOpen),
    ];
    for (verb, kind) in transactions {
        out.push(format!("{verb}: {kind}"));
    }
    // The options and words that only some commands have, with those commands.
    for (verb, kind) in unknown_options().into_iter().chain(expected_words()) {
        out.push(format!("{verb}: {kind}"));
    }
    for verb in [
        "set", "delete", "grant", "revoke", "service", "tier", "meta", "strategy", "present",
        "generate", "stage", "promote", "discard", "rollback", "retire",
    ] {
        out.push(format!("{verb}: {}", ErrorKind::TransactionTooLarge));
    }
    // A skip is of a line whose verb was known, or not.
    out.push(ErrorKind::StillSkipping.to_string());
    for verb in &verbs {
        out.push(format!("{verb}: {}", ErrorKind::StillSkipping));
    }
    for suggestion in verbs.iter().copied().map(Some).chain([None]) {
        out.push(ErrorKind::UnknownCommand { suggestion }.to_string());
    }
    for (usage, missing, too_many) in commands {
        let verb = usage.split(' ').next().unwrap_or_default();
        for &arg in missing {
            out.push(format!(
                "{verb}: {}",
                ErrorKind::MissingArgument { arg, usage }
            ));
        }
        if let Some(value) = too_many {
            out.push(format!(
                "{verb}: {}",
                ErrorKind::TooManyArguments { usage, value }
            ));
        }
    }
    out
}

/// plan9port keeps at most 127 bytes of an Rerror and drops the rest: every error text,
/// with the prefix of a five-digit line number, must arrive whole.
#[test]
fn every_error_fits_what_plan9port_keeps() {
    let texts = possible_error_texts();
    let all = all_error_texts();
    for t in &texts {
        assert!(all.contains(t), "not a text the parser makes: {t}");
    }
    let too_long: Vec<String> = texts
        .into_iter()
        .map(|t| format!("ctl: line 99999: {t}"))
        .filter(|t| t.len() > crate::MAX_ERROR_LEN)
        .collect();
    assert!(
        too_long.is_empty(),
        "over {} bytes:\n{}",
        crate::MAX_ERROR_LEN,
        too_long.join("\n")
    );
    // Through the buffer, on line 99999.
    let mut b = CtlBuffer::new();
    b.push(&[b'\n'; 99_998]);
    b.push(b"set a {12x}\n");
    let e = b.next_command().expect("a result").expect_err("an error");
    assert_eq!(e.line, 99_999);
    assert!(e.to_string().len() <= crate::MAX_ERROR_LEN, "{e}");
}

// ---------------------------------------------------------------- properties

/// Bits of ctl text and junk, so that random inputs reach deep into the grammar.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"set ",
        b"delete ",
        b"grant ",
        b"revoke ",
        b"rotate-key",
        b"service ",
        b"uid ",
        b"manifest ",
        b"remove",
        b"web ",
        b"admin ",
        b".. ",
        b"4294967295",
        b"'",
        b"''",
        b"\n",
        b"\r\n",
        b"\r",
        b" ",
        b"\t",
        b"{3}\n",
        b"{0}\n",
        b"{1}\r\n",
        b"{1048577}\n",
        b"{12x}",
        b"{",
        b"}",
        b"\0",
    ];
    prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        proptest::sample::select(pieces).prop_map(<[u8]>::to_vec),
        "[a-z]{1,6}".prop_map(String::into_bytes),
        // The marker: no error may ever contain it.
        "ZQXJ[A-Z0-9]{0,6}".prop_map(String::into_bytes),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(fragment(), 0..48).prop_map(|v| v.concat())
}

/// Splits `input` at the given points (taken modulo its length).
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        out.push(&input[at..c]);
        at = c;
    }
    out.push(&input[at..]);
    out
}

/// Every error string this crate can produce after its `ctl: line K: ` prefix.
fn all_error_texts() -> Vec<String> {
    use crate::command::usage;
    use crate::error::ACTIONS;
    let verbs: Vec<&'static str> = crate::command::VERBS.iter().map(|v| v.word).collect();
    let usages = usage::ALL;
    let mut kinds = vec![
        ErrorKind::BadUid,
        ErrorKind::CommandTooLong,
        ErrorKind::InvalidName(NameKind::Secret),
        ErrorKind::InvalidName(NameKind::Service),
        ErrorKind::InvalidName(NameKind::Deployment),
        ErrorKind::LiteralCutShort,
        ErrorKind::LiteralTooLong,
        ErrorKind::MalformedLiteral,
        ErrorKind::ReservedService,
        ErrorKind::UnterminatedQuote,
        ErrorKind::ValueTooLong,
        ErrorKind::UnknownAction { suggestion: None },
        ErrorKind::UnknownCommand { suggestion: None },
        ErrorKind::NoTransaction,
        ErrorKind::NotInTransaction,
        ErrorKind::TransactionAborted { line: 99_999 },
        ErrorKind::TransactionNotCommitted,
        ErrorKind::TransactionOpen,
        ErrorKind::TransactionTooLarge,
        ErrorKind::StillSkipping,
        ErrorKind::BadNumber,
        ErrorKind::CatalogTooLarge,
        ErrorKind::NotText,
        ErrorKind::RepeatedOption,
        ErrorKind::BadDuration(model::DurationError::Form),
        ErrorKind::BadDuration(model::DurationError::Zero),
        ErrorKind::BadDuration(model::DurationError::TooLong),
        ErrorKind::BadReason,
        ErrorKind::OverlapAndRevoke,
        ErrorKind::RetireWhenReadWithoutOverlap,
        ErrorKind::BadTokenId,
    ];
    kinds.extend(unknown_options().into_iter().map(|(_, k)| k));
    kinds.extend(expected_words().into_iter().map(|(_, k)| k));
    for usage in usages {
        for arg in [
            "name",
            "value",
            "service",
            "action",
            "uid",
            "tier",
            "tiers",
            "class",
            "strategy",
            "template",
            "label",
            "reference",
            "yes or no",
            "file",
            "deployment",
            "duration",
            "reason",
            "principal",
            "token ID",
        ] {
            kinds.push(ErrorKind::MissingArgument { arg, usage });
        }
        for value in [false, true] {
            kinds.push(ErrorKind::TooManyArguments { usage, value });
        }
    }
    for a in ACTIONS {
        kinds.push(ErrorKind::UnknownAction {
            suggestion: Some(a),
        });
    }
    for v in &verbs {
        kinds.push(ErrorKind::UnknownCommand {
            suggestion: Some(v),
        });
    }
    let mut out = Vec::new();
    for kind in kinds {
        out.push(kind.to_string());
        for v in &verbs {
            out.push(format!("{v}: {kind}"));
        }
    }
    out
}

fn command() -> impl Strategy<Value = Command> {
    let name = || "[A-Za-z0-9._-]{1,128}".prop_filter("a path element", |s| s != "." && s != "..");
    let service = move || name().prop_filter("reserved", |s| !is_reserved_service(s));
    let value = || proptest::collection::vec(any::<u8>(), 0..600).prop_map(Value::from);
    prop_oneof![
        (name(), value()).prop_map(|(name, value)| Command::Set { name, value }),
        name().prop_map(|name| Command::Delete { name }),
        (
            service(),
            name(),
            proptest::option::of(1..=model::MAX_DURATION_SECS)
        )
            .prop_map(|(service, name, expires)| Command::Grant {
                service,
                name,
                expires
            }),
        (name(), value()).prop_map(|(name, value)| Command::Stage { name, value }),
        (name(), proptest::option::of("(\\PC|[ '\n{}]){0,40}"))
            .prop_map(|(name, template)| Command::StageGenerate { name, template }),
        (
            name(),
            proptest::option::of(1..=model::MAX_DURATION_SECS),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(name, overlap, revoke, retire)| {
                let overlap = if revoke { None } else { overlap };
                Command::Promote {
                    name,
                    retire_when_read: retire && overlap.is_some(),
                    overlap,
                    revoke_previous: revoke,
                }
            }),
        name().prop_map(|name| Command::Discard { name }),
        name().prop_map(|name| Command::Rollback { name }),
        name().prop_map(|name| Command::Retire { name }),
        name().prop_map(|name| Command::History { name }),
        Just(Command::Stale),
        "[ -~]{1,60}".prop_map(|text| Command::Reason { text }),
        (service(), name()).prop_map(|(service, name)| Command::Revoke { service, name }),
        Just(Command::RotateKey),
        Just(Command::Begin),
        Just(Command::Commit),
        Just(Command::Abort),
        Just(Command::Help),
        (service(), 0..NO_UID).prop_map(|(service, uid)| Command::ServiceUid { service, uid }),
        (service(), value())
            .prop_map(|(service, manifest)| Command::ServiceManifest { service, manifest }),
        service().prop_map(|service| Command::ServiceRemove { service }),
        service().prop_map(|service| Command::ServiceSuspend { service }),
        service().prop_map(|service| Command::ServiceResume { service }),
        Just(Command::Freeze),
        Just(Command::Unfreeze),
        name().prop_map(|name| Command::RevokeAll { name }),
        Just(Command::Matrix),
        catalog_command().prop_map(Command::Catalog),
        (
            prop_oneof![Just("admin".to_string()), service()],
            proptest::option::of(1..=model::MAX_DURATION_SECS)
        )
            .prop_map(|(principal, expires)| Command::TokenCreate { principal, expires }),
        "[0-9a-f]{16}".prop_map(|id| Command::TokenRevoke { id }),
        Just(Command::TokenList),
    ]
}

/// The catalog's commands, with any text where the grammar takes text (templates, labels,
/// even newlines and quotes).
fn catalog_command() -> impl Strategy<Value = CatalogCommand> {
    let name = || "[A-Za-z0-9._-]{1,64}".prop_filter("a path element", |s| s != "." && s != "..");
    let service = move || name().prop_filter("reserved", |s| !is_reserved_service(s));
    let text = || "(\\PC|[ '\n{}]){0,40}";
    let word = || "[a-z_-]{1,12}";
    let opt = move || proptest::option::of(text());
    let strategy = prop_oneof![
        proptest::option::of(text()).prop_map(|template| StrategyArg::Serve { template }),
        Just(StrategyArg::Strip),
        text().prop_map(|template| StrategyArg::Generate { template }),
        (
            text(),
            opt(),
            opt(),
            opt(),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i32>()),
            any::<bool>()
        )
            .prop_map(|(label, help, kind, pattern, min, max, optional)| {
                StrategyArg::Prompt(PromptArgs {
                    label,
                    help,
                    kind,
                    pattern,
                    min: min.map(i64::from),
                    max: max.map(i64::from),
                    optional,
                })
            }),
        text().prop_map(|reference| StrategyArg::Delegate { reference }),
    ];
    prop_oneof![
        (word(), any::<bool>()).prop_map(|(tier, core)| CatalogCommand::TierAdd { tier, core }),
        word().prop_map(|tier| CatalogCommand::TierRemove { tier }),
        (name(), opt(), opt(), opt(), opt()).prop_map(
            |(name, class, owner, rotate_every, description)| CatalogCommand::Meta {
                name,
                fields: MetaFields {
                    class,
                    owner,
                    rotate_every,
                    description,
                },
            }
        ),
        name().prop_map(|name| CatalogCommand::MetaRemove { name }),
        (name(), word(), proptest::option::of(word()), strategy).prop_map(
            |(name, tier, class, strategy)| CatalogCommand::Strategy {
                name,
                tier,
                class,
                strategy,
            }
        ),
        (name(), word()).prop_map(|(name, tier)| CatalogCommand::Strategy {
            name,
            tier,
            class: None,
            strategy: StrategyArg::Remove,
        }),
        (name(), word(), any::<bool>()).prop_map(|(name, tier, present)| {
            CatalogCommand::Present {
                name,
                tier,
                present,
            }
        }),
        (
            service(),
            proptest::option::of(proptest::collection::vec(word(), 1..4))
        )
            .prop_map(|(service, tiers)| CatalogCommand::ServiceTiers { service, tiers }),
        (name(), opt()).prop_map(|(name, template)| CatalogCommand::Generate { name, template }),
        (service(), word()).prop_map(|(service, tier)| CatalogCommand::Plan { service, tier }),
        proptest::option::of(word()).prop_map(|tier| CatalogCommand::Lint { tier }),
        any::<bool>().prop_map(|json| CatalogCommand::Export {
            format: if json {
                CatalogFormat::Json
            } else {
                CatalogFormat::Toml
            }
        }),
        (
            proptest::collection::vec(any::<u8>(), 1..600),
            any::<bool>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(file, dry_run, prune, with_values)| CatalogCommand::Apply {
                    format: dry_run.then_some(CatalogFormat::Json),
                    file: Value::from(file),
                    dry_run,
                    prune,
                    with_values,
                }
            ),
        (service(), word(), name(), any::<bool>()).prop_map(
            |(service, tier, deployment, replace)| CatalogCommand::BundleCreate {
                service,
                tier,
                deployment,
                replace,
            }
        ),
        (proptest::option::of(name()), proptest::option::of(name()))
            .prop_map(|(deployment, secret)| CatalogCommand::BundleList { deployment, secret }),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(|v| {
            CatalogCommand::BundleIdentify {
                value: Value::from(v),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes, split anywhere: no panic, and one push, random pushes and
    /// byte-by-byte pushes give the same commands and errors.
    #[test]
    fn splits_agree(input in input(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = run(&input);
        prop_assert_eq!(&run_chunks(split(&input, &cuts)), &whole);
        prop_assert_eq!(&run_chunks(input.chunks(1)), &whole);
        let mut last = 0;
        for r in &whole {
            let line = match r { Ok(p) => p.line, Err(e) => e.line };
            prop_assert!(line > last);
            last = line;
        }
    }

    /// The server's loop (discard after every error) never panics and keeps line numbers
    /// rising, whatever the input and its splitting.
    #[test]
    fn server_loop_never_panics(input in input(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let mut b = CtlBuffer::new();
        let mut last = 0;
        for chunk in split(&input, &cuts) {
            b.push(chunk);
            while let Some(r) = b.next_command() {
                // A swallowed write's error is about the line already refused.
                if is_still_skipping(&r) {
                    b.discard_pending();
                    continue;
                }
                let line = match r { Ok(p) => p.line, Err(e) => { b.discard_pending(); e.line } };
                prop_assert!(line > last);
                last = line;
            }
        }
        while let Some(r) = b.finish() {
            let line = match r { Ok(p) => p.line, Err(e) => e.line };
            prop_assert!(line > last);
            last = line;
        }
        prop_assert_eq!(b.pending(), 0);
    }

    /// No error ever holds input: each is `ctl: line K: ` and one of our fixed texts, and
    /// never holds the marker that random inputs are full of.
    #[test]
    fn errors_hold_no_input(input in input()) {
        let fixed = all_error_texts();
        for r in run(&input) {
            if let Err(e) = r {
                let text = e.to_string();
                prop_assert!(!text.contains("ZQXJ"), "{}", text);
                let prefix = format!("ctl: line {}: ", e.line);
                prop_assert!(text.starts_with(&prefix), "{}", text);
                prop_assert!(fixed.contains(&text[prefix.len()..].to_string()), "{}", text);
            }
        }
    }

    /// encode then parse gives back the commands, however the bytes are split.
    #[test]
    fn encode_parse_round_trip(
        commands in proptest::collection::vec(command(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for c in &commands {
            prop_assert_eq!(c.validate(), Ok(()));
            stream.extend_from_slice(&c.encode());
        }
        let expect: Vec<_> = commands
            .into_iter()
            .enumerate()
            .map(|(i, command)| Ok(Parsed { line: i + 1, command }))
            .collect();
        prop_assert_eq!(run_chunks(split(&stream, &cuts)), expect);
    }

    /// Any bytes survive rc quoting, newlines, NULs and quotes included.
    #[test]
    fn quoted_values_round_trip(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut line = b"set v ".to_vec();
        line.extend(rc_quote(&value));
        line.push(b'\n');
        prop_assert_eq!(one(&line), Ok(set("v", &value)));
    }

    /// A bad name is quoted by encode, and rejected, never read as more commands.
    #[test]
    fn encode_never_injects(name in proptest::collection::vec(any::<u8>(), 0..40)) {
        let name = String::from_utf8_lossy(&name).into_owned();
        let c = Command::Delete { name: name.clone() };
        let out = run(&c.encode());
        prop_assert_eq!(out.len(), 1);
        match &out[0] {
            Ok(p) => prop_assert_eq!(&p.command, &c),
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::InvalidName(NameKind::Secret)),
        }
    }
}

#[test]
fn a_large_value_does_not_keep_its_allocation() {
    let mut b = CtlBuffer::new();
    let value = pem(256 * 1024);
    for chunk in set("cert", &value).encode().chunks(4096) {
        b.push(chunk);
        while let Some(r) = b.next_command() {
            assert!(r.is_ok());
        }
    }
    assert_eq!(b.pending(), 0);
    assert!(b.buf.capacity() <= KEEP_CAPACITY, "{}", b.buf.capacity());
}

/// Every "unknown option" the parser can give, with the verb it comes with: each list of
/// choices, with each choice suggested or none.
fn unknown_options() -> Vec<(&'static str, ErrorKind)> {
    use crate::deployment::{META_OPTIONS, PROMPT_OPTIONS, STRATEGIES};
    let lists: [(&str, &[&'static str], &'static str); 15] = [
        ("grant", &["expires"], "expires"),
        (
            "promote",
            &["overlap", "revoke-previous"],
            "overlap, revoke-previous",
        ),
        ("tier", &["core"], "core"),
        ("tier", &["add", "remove"], "add, remove"),
        (
            "meta",
            &META_OPTIONS,
            "class, owner, rotate-every, description",
        ),
        (
            "strategy",
            &STRATEGIES,
            "serve, strip, generate, prompt, delegate, remove",
        ),
        (
            "strategy",
            &PROMPT_OPTIONS,
            "help, kind, pattern, min, max, optional",
        ),
        ("present", &["yes", "no"], "yes, no"),
        ("catalog", &["toml", "json"], "toml, json"),
        ("catalog", &["apply", "export"], "apply, export"),
        ("bundle", &["replace"], "replace"),
        ("bundle", &["deployment", "secret"], "deployment, secret"),
        (
            "bundle",
            &["create", "list", "identify"],
            "create, list, identify",
        ),
        ("token", &["expires"], "expires"),
        (
            "token",
            &["create", "revoke", "list"],
            "create, revoke, list",
        ),
    ];
    let mut out = Vec::new();
    for (verb, choices, expected) in lists {
        out.push((
            verb,
            ErrorKind::UnknownOption {
                suggestion: None,
                expected,
            },
        ));
        for &c in choices {
            out.push((
                verb,
                ErrorKind::UnknownOption {
                    suggestion: Some(c),
                    expected,
                },
            ));
        }
    }
    out
}

/// Every "expected WORD" the parser can give, with its verb.
fn expected_words() -> Vec<(&'static str, ErrorKind)> {
    use crate::command::usage;
    [("strategy", usage::STRATEGY), ("present", usage::PRESENT)]
        .into_iter()
        .map(|(verb, usage)| {
            (
                verb,
                ErrorKind::ExpectedWord {
                    word: "tier",
                    usage,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------- the catalog's commands

fn parse_one(line: &[u8]) -> Result<Command, String> {
    match run(line).pop() {
        Some(Ok(p)) => Ok(p.command),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("nothing".into()),
    }
}

fn catalog(line: &str) -> CatalogCommand {
    match parse_one(line.as_bytes()) {
        Ok(Command::Catalog(c)) => c,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn catalog_commands_as_a_person_writes_them() {
    assert_eq!(
        catalog("tier add local_dev core"),
        CatalogCommand::TierAdd {
            tier: "local_dev".into(),
            core: true
        }
    );
    assert_eq!(
        catalog("meta db class infrastructure owner 'platform team' rotate-every 30d"),
        CatalogCommand::Meta {
            name: "db".into(),
            fields: MetaFields {
                class: Some("infrastructure".into()),
                owner: Some("platform team".into()),
                rotate_every: Some("30d".into()),
                description: None,
            },
        }
    );
    // '' clears a field.
    assert_eq!(
        catalog("meta db owner ''"),
        CatalogCommand::Meta {
            name: "db".into(),
            fields: MetaFields {
                owner: Some(String::new()),
                ..MetaFields::default()
            },
        }
    );
    assert_eq!(
        catalog("strategy db tier desktop class service generate 'file://{{USER_DATA}}/app.db'"),
        CatalogCommand::Strategy {
            name: "db".into(),
            tier: "desktop".into(),
            class: Some("service".into()),
            strategy: StrategyArg::Generate {
                template: "file://{{USER_DATA}}/app.db".into()
            },
        }
    );
    assert_eq!(
        catalog(
            "strategy key tier desktop prompt 'OpenRouter key' kind password min 20 \
             pattern '^sk-or-' optional help 'From openrouter.ai'"
        ),
        CatalogCommand::Strategy {
            name: "key".into(),
            tier: "desktop".into(),
            class: None,
            strategy: StrategyArg::Prompt(PromptArgs {
                label: "OpenRouter key".into(),
                help: Some("From openrouter.ai".into()),
                kind: Some("password".into()),
                pattern: Some("^sk-or-".into()),
                min: Some(20),
                max: None,
                optional: true,
            }),
        }
    );
    assert_eq!(
        catalog("service web tiers desktop,local_dev"),
        CatalogCommand::ServiceTiers {
            service: "web".into(),
            tiers: Some(vec!["desktop".into(), "local_dev".into()])
        }
    );
    assert_eq!(
        catalog("service web tiers *"),
        CatalogCommand::ServiceTiers {
            service: "web".into(),
            tiers: None
        }
    );
    assert_eq!(
        catalog("service web tiers ''"),
        CatalogCommand::ServiceTiers {
            service: "web".into(),
            tiers: Some(Vec::new())
        }
    );
    assert_eq!(
        catalog("catalog apply prune with-values {9}\n[tiers.a]"),
        CatalogCommand::Apply {
            format: None,
            file: Value::from(b"[tiers.a]".to_vec()),
            dry_run: false,
            prune: true,
            with_values: true,
        }
    );
    assert_eq!(
        catalog("catalog export json"),
        CatalogCommand::Export {
            format: CatalogFormat::Json
        }
    );
    assert_eq!(catalog("lint"), CatalogCommand::Lint { tier: None });
}

#[test]
fn catalog_command_errors() {
    let cases: [(&[u8], &str); 12] = [
        (
            b"tier frob x",
            "ctl: line 1: tier: unknown option; expected: add, remove",
        ),
        (
            b"tier add x cor",
            "ctl: line 1: tier: unknown option; did you mean 'core'? expected: core",
        ),
        (
            b"meta a ownr b",
            "ctl: line 1: meta: unknown option; did you mean 'owner'? expected: class, owner, \
             rotate-every, description",
        ),
        (
            b"meta a owner b owner c",
            "ctl: line 1: meta: an option is given twice; give each once",
        ),
        (
            b"meta a owner",
            "ctl: line 1: meta: missing value; usage: meta NAME \
             [class|owner|rotate-every|description TEXT]...",
        ),
        (
            b"strategy a on desktop strip",
            "ctl: line 1: strategy: expected 'tier' here; usage: strategy NAME tier TIER \
             [class CLASS] STRATEGY",
        ),
        (
            b"strategy a tier t serv",
            "ctl: line 1: strategy: unknown option; did you mean 'serve'? expected: serve, \
             strip, generate, prompt, delegate, remove",
        ),
        (
            b"strategy a tier t generate {{random:hex:32}}",
            "ctl: line 1: strategy: malformed literal; send {N}, a newline, then exactly N \
             bytes (to send a word in braces, quote it)",
        ),
        (
            b"strategy a tier t prompt L min x",
            "ctl: line 1: strategy: min and max are whole numbers: digits, with - before a \
             negative one",
        ),
        (
            b"present a tier t maybe",
            "ctl: line 1: present: unknown option; expected: yes, no",
        ),
        (
            b"catalog apply prune",
            "ctl: line 1: catalog: missing file; usage: catalog apply [toml|json] [FLAG]... FILE",
        ),
        (
            b"generate a '\xff'",
            "ctl: line 1: generate: not UTF-8 text; tiers, classes, templates and labels are text",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_one(line).unwrap_err(), expected);
    }
}

#[test]
fn a_catalog_file_may_be_larger_than_a_value() {
    // 3 MiB: more than a value or an ordinary line holds.
    let file = vec![b'#'; 3 << 20];
    let mut line = format!("catalog apply dry-run {{{}}}\n", file.len()).into_bytes();
    line.extend_from_slice(&file);
    line.push(b'\n');
    let mut b = CtlBuffer::new();
    // In 64 KiB writes, as a client sends it.
    let mut got = Vec::new();
    for chunk in line.chunks(64 << 10) {
        b.push(chunk);
        while let Some(r) = b.next_command() {
            got.push(r);
        }
    }
    assert_eq!(got.len(), 1);
    let Ok(Parsed {
        command: Command::Catalog(CatalogCommand::Apply { file: got, .. }),
        ..
    }) = &got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(got.len(), file.len());
    // The same literal on a `set` line is refused, and skipped whole.
    let mut set = format!("set a {{{}}}\n", file.len()).into_bytes();
    set.extend_from_slice(&file);
    set.extend_from_slice(b"\nset b 1\n");
    let out = run(&set);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(&out[0], Err(e) if e.kind == ErrorKind::LiteralTooLong));
    assert!(matches!(&out[1], Ok(p) if p.command.verb() == "set"));
    // A catalog file past its own limit is refused.
    let over = format!("catalog apply {{{}}}\n", crate::MAX_CATALOG_LEN + 1);
    let out = run(over.as_bytes());
    assert!(
        matches!(&out[0], Err(e) if e.kind == ErrorKind::LiteralTooLong),
        "{out:?}"
    );
    assert_eq!(
        Command::Catalog(CatalogCommand::Apply {
            format: None,
            file: Value::from(vec![0; crate::MAX_CATALOG_LEN + 1]),
            dry_run: false,
            prune: false,
            with_values: false
        })
        .validate(),
        Err(ErrorKind::CatalogTooLarge)
    );
}

#[test]
fn templates_and_labels_travel_quoted() {
    let c = Command::Catalog(CatalogCommand::Strategy {
        name: "db".into(),
        tier: "desktop".into(),
        class: None,
        strategy: StrategyArg::Prompt(PromptArgs {
            label: "It's {{x}}".into(),
            min: Some(-3),
            ..PromptArgs::default()
        }),
    });
    assert_eq!(
        &c.encode()[..],
        b"strategy db tier desktop prompt 'It''s {{x}}' min -3\n"
    );
    let g = Command::Catalog(CatalogCommand::Generate {
        name: "k".into(),
        template: Some("{{random:hex:32}}".into()),
    });
    assert_eq!(&g.encode()[..], b"generate k '{{random:hex:32}}'\n");
    assert_eq!(g.verb(), "generate");
    assert!(g.is_change() && !g.is_query());
    let plan = Command::Catalog(CatalogCommand::Plan {
        service: "web".into(),
        tier: "desktop".into(),
    });
    assert!(plan.is_query() && !plan.is_change());
}

#[test]
fn bundle_commands_round_trip_and_send_identify_s_value_as_a_literal() {
    let create = Command::Catalog(CatalogCommand::BundleCreate {
        service: "web".into(),
        tier: "desktop".into(),
        deployment: "acme-7".into(),
        replace: true,
    });
    assert_eq!(
        &create.encode()[..],
        b"bundle create web desktop acme-7 replace\n"
    );
    assert!(create.is_change() && !create.is_query());
    let list = Command::Catalog(CatalogCommand::BundleList {
        deployment: Some("acme-7".into()),
        secret: Some("jwt_key".into()),
    });
    assert_eq!(
        &list.encode()[..],
        b"bundle list deployment acme-7 secret jwt_key\n"
    );
    assert!(list.is_query());
    let identify = Command::Catalog(CatalogCommand::BundleIdentify {
        value: Value::from(b"hunter2".to_vec()),
    });
    assert_eq!(&identify.encode()[..], b"bundle identify {7}\nhunter2\n");
    assert!(identify.is_query());
    assert!(!format!("{identify:?}").contains("hunter2"));
    for c in [&create, &list, &identify] {
        let out = run(&c.encode());
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].as_ref().unwrap().command, c);
    }
    // A deployment id breaks no line, and a bad one is refused by its kind, not echoed.
    let bad = run(b"bundle create web desktop 'acme 7'\n");
    let e = bad[0].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidName(NameKind::Deployment));
    assert!(!e.to_string().contains("acme"), "{e}");
    assert_eq!(
        Command::Catalog(CatalogCommand::BundleCreate {
            service: "web".into(),
            tier: "desktop".into(),
            deployment: "..".into(),
            replace: false
        })
        .validate(),
        Err(ErrorKind::InvalidName(NameKind::Deployment))
    );
    // Never inside a transaction.
    let mut stream = crate::CtlStream::new();
    stream.push(b"begin\nbundle list\n");
    assert!(matches!(stream.next_step(), Some(crate::Step::Answer(_))));
    assert!(matches!(stream.next_step(), Some(crate::Step::Refuse(_))));
}

#[test]
fn help_lists_the_catalog_commands() {
    let help = crate::help_text();
    for form in [
        "tier add TIER [core]",
        "meta NAME remove",
        "strategy NAME tier TIER [class CLASS] generate TEMPLATE",
        "present NAME tier TIER (yes|no)",
        "service SERVICE tiers TIER,TIER",
        "generate NAME [TEMPLATE]",
        "plan SERVICE TIER",
        "lint [TIER]",
        "catalog export [toml|json]",
        "catalog apply [toml|json] [dry-run] [prune] [with-values] FILE",
    ] {
        assert!(help.contains(form), "{form}\n{help}");
    }
}

// ---------------------------------------------------------------- tokens

#[test]
fn token_commands_as_a_person_writes_them() {
    assert_eq!(
        parse_one(b"token create admin"),
        Ok(Command::TokenCreate {
            principal: "admin".into(),
            expires: None
        })
    );
    assert_eq!(
        parse_one(b"token create web expires 90d"),
        Ok(Command::TokenCreate {
            principal: "web".into(),
            expires: Some(90 * 86_400)
        })
    );
    assert_eq!(
        parse_one(b"token revoke 0123456789abcdef"),
        Ok(Command::TokenRevoke {
            id: "0123456789abcdef".into()
        })
    );
    assert_eq!(parse_one(b"token list"), Ok(Command::TokenList));
    assert!(Command::TokenList.is_query());
    let create = Command::TokenCreate {
        principal: "web".into(),
        expires: Some(3600),
    };
    assert!(create.is_change() && !create.is_query());
    assert_eq!(&*create.encode(), b"token create web expires 1h\n");
    // Whom it is for: admin or a service; secrets is nobody.
    for (line, says) in [
        (&b"token create secrets"[..], "reserved service names"),
        (b"token create 'a b'", "invalid service name"),
        (
            b"token create",
            "missing principal; usage: token create PRINCIPAL",
        ),
        (
            b"token create web for 1h",
            "unknown option; expected: expires",
        ),
        (b"token create web expires", "missing duration"),
        (
            b"token revoke 0123456789ABCDEF",
            "a token ID is 16 hex digits",
        ),
        (b"token revoke 0123", "a token ID is 16 hex digits"),
        (b"token revoke", "missing token ID; usage: token revoke ID"),
        (b"token revoke 0123456789abcdef x", "too many arguments"),
        (b"token list all", "too many arguments"),
        (b"token lst", "did you mean 'list'?"),
    ] {
        let e = parse_one(line).unwrap_err();
        assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(line));
        assert!(e.starts_with("ctl: line 1: token: "), "{e}");
    }
    // A token is its own transaction: never inside begin ... commit.
    let mut stream = crate::CtlStream::new();
    stream.push(b"begin\ntoken create admin\n");
    let mut steps = Vec::new();
    while let Some(step) = stream.next_step() {
        steps.push(step);
    }
    assert!(
        steps.iter().any(
            |s| matches!(s, crate::Step::Refuse(e) if e.contains("cannot run inside a transaction"))
        ),
        "a token command joined a transaction"
    );
}
