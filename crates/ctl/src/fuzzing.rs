//! Entry points for fuzzers: the ctl language fed arbitrary bytes, in arbitrary writes.
//!
//! The cargo-fuzz target in `crates/ctl/fuzz` calls [`fuzz_ctl`] on nightly; the stable
//! test `tests/fuzz_stable.rs` drives it with bounded random input, so that CI runs it
//! (`cargo test`) without a nightly toolchain. A finding is a panic.

use crate::{Command, CtlBuffer, CtlStream, MAX_ERROR_LEN, Step};

/// Runs of this many letters and digits of the input, or more, never appear in an error:
/// errors echo no input, and no word of the crate's own messages is this long, so such a
/// run in an error is a name or a value (or a part of one) sent back.
pub const ECHO_RUN: usize = 20;

/// Feeds `data` to a ctl stream as a server would, and checks what comes out. The first
/// byte (if any) picks how the rest is cut into writes; the rest is the stream. Panics
/// (the finding) unless:
/// - every error, of the stream (transactions) and of the buffer (lines), fits
///   [`MAX_ERROR_LEN`] and holds no run of [`ECHO_RUN`] letters and digits of the input;
/// - every command parsed, once [`Command::validate`]d, encodes ([`Command::encode`]) to
///   one line that parses back to the same command, and to nothing more.
pub fn fuzz_ctl(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let runs = alnum_runs(stream);
    let check_error = |text: &str| {
        assert!(
            text.len() <= MAX_ERROR_LEN,
            "an error of {} bytes: {text:?}",
            text.len()
        );
        for run in &runs {
            assert!(
                !text.as_bytes().windows(run.len()).any(|w| w == *run),
                "an error echoes the input {:?}: {text:?}",
                String::from_utf8_lossy(run)
            );
        }
    };
    let writes = split(stream, cut);

    // As the server drives it: transactions, refusals, the rest of a write dropped.
    let mut ctl = CtlStream::new();
    for write in &writes {
        ctl.push(write);
        while let Some(step) = ctl.next_step() {
            check_step(&step, &check_error);
            if matches!(step, Step::Refuse(_)) {
                ctl.discard_pending();
            }
        }
    }
    while let Some(step) = ctl.finish() {
        check_step(&step, &check_error);
    }

    // Line by line, every line's error seen (none dropped after a refusal).
    let mut buffer = CtlBuffer::new();
    for write in &writes {
        buffer.push(write);
        while let Some(next) = buffer.next_command() {
            check_parsed(next, &check_error);
        }
    }
    while let Some(next) = buffer.finish() {
        check_parsed(next, &check_error);
    }
}

fn check_step(step: &Step, check_error: &impl Fn(&str)) {
    match step {
        Step::Apply(parsed, _) => round_trips(&parsed.command),
        Step::Commit(transaction) => {
            for parsed in &transaction.commands {
                round_trips(&parsed.command);
            }
        }
        Step::Answer(_) => {}
        Step::Refuse(text) => check_error(text),
    }
}

fn check_parsed(next: Result<crate::Parsed, crate::CtlError>, check_error: &impl Fn(&str)) {
    match next {
        Ok(parsed) => round_trips(&parsed.command),
        Err(e) => check_error(&e.to_string()),
    }
}

/// `encode` of a valid command parses back to it, alone.
fn round_trips(command: &Command) {
    if command.validate().is_err() {
        return;
    }
    let line = command.encode();
    let mut again = CtlBuffer::new();
    again.push(&line);
    match again.next_command() {
        Some(Ok(parsed)) => assert_eq!(
            &parsed.command,
            command,
            "the encoding {:?} parses to another command",
            String::from_utf8_lossy(&line)
        ),
        other => panic!(
            "the encoding {:?} of {command:?} does not parse: {other:?}",
            String::from_utf8_lossy(&line)
        ),
    }
    assert!(again.next_command().is_none(), "the encoding is one line");
    assert!(again.finish().is_none(), "the encoding is one line");
}

/// The maximal runs of ASCII letters and digits at least [`ECHO_RUN`] long.
fn alnum_runs(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| !b.is_ascii_alphanumeric())
        .filter(|run| run.len() >= ECHO_RUN)
        .collect()
}

/// `data` cut into writes: all of it at once (`cut` 0), or pieces of 1 to 63 bytes.
fn split(data: &[u8], cut: u8) -> Vec<&[u8]> {
    match usize::from(cut % 64) {
        0 => vec![data],
        n => data.chunks(n).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_holding_a_long_run_of_the_input_is_a_finding() {
        let runs = alnum_runs(b"set a Zq9xK2mP8vL4nR7tY1wQ5e;x");
        assert_eq!(runs, [b"Zq9xK2mP8vL4nR7tY1wQ5e".as_slice()]);
        assert!(alnum_runs(b"short words only, mostly").is_empty());
        assert_eq!(split(b"abcde", 2), [b"ab".as_slice(), b"cd", b"e"]);
        assert_eq!(split(b"abcde", 64), [b"abcde".as_slice()]);
    }

    #[test]
    #[should_panic(expected = "an error of")]
    fn an_error_too_long_is_a_finding() {
        let check = |text: &str| assert!(text.len() <= MAX_ERROR_LEN, "an error of {text}");
        check_step(&Step::Refuse("x".repeat(MAX_ERROR_LEN + 1)), &check);
    }
}
