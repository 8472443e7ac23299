//! Log records that cannot be forged: every role logs identifiers that
//! came from requests (host ids, GPU UUIDs, rule names), and a value with a
//! newline in it would otherwise start a line of its own that reads like a
//! record from gpuwatch. [`EscapedLines`] wraps the log's writer and
//! escapes control characters inside a record (`\n` → `\\n`), keeping only
//! the record's final newline. The JSON log format escapes by itself.

use std::borrow::Cow;
use std::io::{self, Write};

/// A writer for one log record at a time (tracing's formatter writes each
/// record with one `write_all`), escaping control characters inside it.
pub struct EscapedLines<W> {
    inner: W,
    keep_ansi: bool,
}

impl<W: Write> EscapedLines<W> {
    /// Wraps `inner`; `keep_ansi` lets ESC through, for colours on a terminal.
    pub fn new(inner: W, keep_ansi: bool) -> Self {
        EscapedLines { inner, keep_ansi }
    }
}

fn needs_escape(b: u8, keep_ansi: bool) -> bool {
    (b < 0x20 && b != b'\t' && !(keep_ansi && b == 0x1b)) || b == 0x7f
}

/// One record with its inner control characters escaped.
pub fn escape_record(record: &[u8], keep_ansi: bool) -> Cow<'_, [u8]> {
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    if !body.iter().any(|&b| needs_escape(b, keep_ansi)) {
        return Cow::Borrowed(record);
    }
    let mut out = Vec::with_capacity(record.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if needs_escape(b, keep_ansi) => {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
            }
            b => out.push(b),
        }
    }
    if body.len() < record.len() {
        out.push(b'\n');
    }
    Cow::Owned(out)
}

impl<W: Write> Write for EscapedLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(&escape_record(buf, self.keep_ansi))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_inside_a_record_cannot_start_a_line() {
        let forged = b"INFO host.id=gpu01\nERROR forged: disk wiped\r\x00\n";
        let out = escape_record(forged, false);
        assert_eq!(
            &out[..],
            &b"INFO host.id=gpu01\\nERROR forged: disk wiped\\r\\x00\n"[..]
        );
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let clean = b"INFO\tall well\n";
        assert!(matches!(escape_record(clean, false), Cow::Borrowed(_)));
        // Colours survive on a terminal only.
        assert_eq!(
            &escape_record(b"\x1b[31mE\x1b[0m\n", true)[..],
            b"\x1b[31mE\x1b[0m\n"
        );
        assert_eq!(&escape_record(b"\x1b[31m\n", false)[..], b"\\x1b[31m\n");
    }

    #[test]
    fn the_wrapper_writes_escaped_records() {
        let mut w = EscapedLines::new(Vec::new(), false);
        w.write_all(b"a\nb\n").unwrap();
        w.write_all(b"c\n").unwrap();
        assert_eq!(w.inner, b"a\\nb\nc\n");
    }
}
