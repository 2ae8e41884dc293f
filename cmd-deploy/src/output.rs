//! Human output (aligned tables, UTC times, durations, sizes), the escaping of untrusted
//! text for people, and JSON.
//!
//! Everything here renders to a `String` or writes to a caller's writer, so that it can
//! be tested, and so that stdout errors reach main.rs (which treats a closed pipe as
//! the end of the output, not a failure).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::error::CliError;

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table with a header row, columns two spaces apart, no trailing blanks.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments. Headers are [`printable`]:
    /// some are names from the server (a column per service).
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(h, a)| (printable(h).into_owned(), *a))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank and extra cells are dropped. Cells are
    /// [`printable`]: names come from the server.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| printable(c).into_owned()).collect());
    }

    /// The table as text, one line per row after the header, each ending in a newline.
    pub fn render(&self) -> String {
        self.render_lines(true)
    }

    /// The rows alone, without the header (for key/value lists).
    pub fn render_rows(&self) -> String {
        self.render_lines(false)
    }

    fn render_lines(&self, with_header: bool) -> String {
        let cell = |row: &[String], i: usize| row.get(i).map_or("", String::as_str).to_string();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.clone()).collect();
        let lines: Vec<Vec<String>> = with_header
            .then_some(header)
            .into_iter()
            .chain(
                self.rows
                    .iter()
                    .map(|r| (0..self.columns.len()).map(|i| cell(r, i)).collect()),
            )
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| lines.iter().map(|l| width(&l[i])).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for line in &lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.columns[i].1 {
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&pad);
                    }
                    Align::Right => {
                        text.push_str(&pad);
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` made safe to show a person on a terminal: every control character (C0, DEL,
/// C1, so also newlines and tabs) and every invisible character that changes how text
/// around it is shown (bidirectional overrides, zero-width characters, line separators)
/// is written as an escape, `\x1b` or `\u{202e}`. What the server sends (names, error
/// texts) could otherwise retitle the terminal, move the cursor, or forge lines of
/// output. Everything else, including non-ASCII letters and backslashes, is kept.
///
/// Everything deploy prints for a person that holds text it did not write itself goes
/// through here: table cells, notes, errors. (JSON escapes by itself; `secret get`
/// prints the value, see commands::secret.)
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`printable`] escapes `c`.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}'                     // soft hyphen
            | '\u{061c}'                   // Arabic letter mark
            | '\u{180e}'                   // Mongolian vowel separator
            | '\u{200b}'..='\u{200f}'      // zero-width characters, LRM, RLM
            | '\u{2028}'..='\u{202e}'      // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}'      // word joiner, invisible operators, bidi isolates
            | '\u{feff}'                   // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}'      // interlinear annotations
        )
}

/// Display width in columns. Everything deploy tabulates is ASCII (names follow the name
/// rule), so counting characters is exact where it matters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Writes text to stdout (or a test's buffer), mapping failures to [`CliError::Stdout`].
pub fn write_text(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// Writes a value as pretty JSON and a newline.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Unexpected(format!("cannot encode JSON: {e}")))?;
    let mut text = json_escaped(&text).into_owned();
    text.push('\n');
    write_text(out, &text)
}

/// JSON text with every character [`printable`] escapes written as `\uXXXX`: serde_json
/// escapes only C0 controls, and a C1 control or a bidi override in a name would reach
/// the terminal of whoever pipes `--json` to `less` or `jq`. Outside strings JSON text is
/// ASCII, so only characters inside strings change, and the value a parser reads is the
/// same.
pub fn json_escaped(json: &str) -> Cow<'_, str> {
    if !json.chars().any(needs_escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if needs_escape(c) && !c.is_ascii() {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A time the server gave (unix seconds), for people: [`iso8601`], the far future for one
/// past 2106.
pub fn when(secs: u64) -> String {
    iso8601(u32::try_from(secs).unwrap_or(u32::MAX))
}

/// A time as UTC ISO-8601, `2024-05-01T12:00:00Z`, from seconds since the epoch (9P's
/// mtime is a u32, so years 1970 to 2106).
pub fn iso8601(secs: u32) -> String {
    let secs = u64::from(secs);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01: Howard Hinnant's
/// `civil_from_days` (chrono-compatible algorithms, public domain), for days ≥ 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `n` of a thing, singular or plural: `1 secret`, `3 secrets`, `0 secrets`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A duration for people: `850ms`, `1.2s`, `3m04s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A duration as `--timeout` takes it: `10s`, `500ms`, `2m`, `1h`.
pub fn flag_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0ms".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A size in bytes for people: `1 MiB`, `64 KiB`, `1000 bytes`.
pub fn human_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    match bytes {
        0 => "0 bytes".to_string(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_output_escapes_c1_controls_and_bidi_overrides_and_parses_to_the_same_value() {
        let name = "a\u{85}b\u{202e}c\u{9b}d\u{feff}é\n";
        let mut out = Vec::new();
        super::write_json(&mut out, &serde_json::json!({ "name": name })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| super::needs_escape(c) && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u0085") && text.contains("\\u202e"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], name);
    }

    use std::time::Duration;

    use super::*;

    #[test]
    fn tables_align_and_have_no_trailing_blanks() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("VERSION", Align::Right),
            ("GRANTED TO", Align::Left),
        ]);
        t.row(vec!["db_password".into(), "3".into(), "web, worker".into()]);
        t.row(vec!["k".into(), "12".into(), "".into()]);
        assert_eq!(
            t.render(),
            "NAME         VERSION  GRANTED TO\n\
             db_password        3  web, worker\n\
             k                 12\n"
        );
    }

    #[test]
    fn tables_tolerate_ragged_rows_and_no_rows() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        assert_eq!(t.render(), "A  B\n");
        t.row(vec!["only".into()]);
        t.row(vec!["x".into(), "y".into(), "dropped".into()]);
        assert_eq!(t.render(), "A     B\nonly\nx     y\n");
        assert_eq!(t.render_rows(), "only\nx     y\n");
    }

    #[test]
    fn iso8601_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(iso8601(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(iso8601(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1, "secret", "secrets"), "1 secret");
        assert_eq!(count(0, "secret", "secrets"), "0 secrets");
        assert_eq!(count(12, "grant", "grants"), "12 grants");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(human_duration(Duration::from_secs(184)), "3m04s");
        assert_eq!(flag_duration(Duration::from_secs(10)), "10s");
        assert_eq!(flag_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(flag_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(flag_duration(Duration::from_secs(120)), "2m");
        assert_eq!(flag_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(64 << 10), "64 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
        assert_eq!(human_size((1 << 20) + 4096), "1028 KiB");
    }

    #[test]
    fn untrusted_text_cannot_drive_the_terminal() {
        // Plain text, non-ASCII letters and backslashes are kept as they are.
        assert!(matches!(printable("db_password"), Cow::Borrowed(_)));
        assert_eq!(printable("café \\ naïve"), "café \\ naïve");
        // An OSC that retitles the terminal, a CSI that clears it, a forged line.
        assert_eq!(
            printable("\x1b]0;pwned\x07\x1b[2J\nforged: ok\r\t"),
            "\\x1b]0;pwned\\x07\\x1b[2J\\nforged: ok\\r\\t"
        );
        // DEL, a C1 CSI, a bidi override, a zero-width space, a line separator, a BOM.
        assert_eq!(
            printable("a\x7fb\u{9b}c\u{202e}d\u{200b}e\u{2028}f\u{feff}"),
            "a\\x7fb\\u{9b}c\\u{202e}d\\u{200b}e\\u{2028}f\\u{feff}"
        );
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut t = Table::new(&[("NAME", Align::Left), ("N", Align::Right)]);
        t.row(vec!["evil\x1b[31m\nforged".into(), "1".into()]);
        assert_eq!(
            t.render(),
            "NAME                  N\nevil\\x1b[31m\\nforged  1\n"
        );
    }

    #[test]
    fn write_errors_are_stdout_errors() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(write_text(&mut Closed, "x").unwrap_err().is_broken_pipe());
        let mut buf = Vec::new();
        write_json(&mut buf, &serde_json::json!({"a": [1]})).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}\n"
        );
    }
}
