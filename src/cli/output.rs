//! Listings: an aligned table for people, JSON for programs.

use std::io::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::CliError;

/// Prints `rows` as JSON (one array on one line) or as a table with `headers`.
pub(crate) fn print_listing<T: Serialize>(
    json: bool,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<(), CliError> {
    if json {
        let mut array = JsonArray::stdout();
        for item in items {
            if let Err(e) = array.push(item) {
                return finished(Err(e));
            }
        }
        return finished(array.finish().map(drop));
    }
    let mut out = stdout_buffer();
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    finished(write_table(&mut out, headers, &rows).and_then(|()| out.flush()))
}

/// Stdout is line-buffered; one JSON line of 1,000 tasks would be flushed in 1 KiB
/// pieces. A block buffer writes it in a few large writes.
fn stdout_buffer() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock())
}

/// A JSON array written one item at a time — the same bytes as serializing the whole
/// slice at once (`[a,b]`, then a newline), without holding the slice in memory.
pub(crate) struct JsonArray<W: Write> {
    out: W,
    empty: bool,
}

impl JsonArray<std::io::BufWriter<std::io::StdoutLock<'static>>> {
    pub(crate) fn stdout() -> Self {
        JsonArray::new(stdout_buffer())
    }
}

impl<W: Write> JsonArray<W> {
    pub(crate) fn new(out: W) -> Self {
        JsonArray { out, empty: true }
    }

    pub(crate) fn push(&mut self, item: &impl Serialize) -> std::io::Result<()> {
        self.out.write_all(if self.empty { b"[" } else { b"," })?;
        self.empty = false;
        serde_json::to_writer(&mut self.out, item).map_err(std::io::Error::from)
    }

    /// Closes the array and flushes; the writer back.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        if self.empty {
            self.out.write_all(b"[")?;
        }
        self.out.write_all(b"]\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The outcome of writing a listing.
pub(crate) fn finished(result: std::io::Result<()>) -> Result<(), CliError> {
    match result {
        // `rust_claw list-tasks | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| CliError::Runtime(e.into())),
    }
}

pub(crate) fn write_table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for r in rows {
        writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// A time for a table cell, in `tz`, to the minute.
pub(crate) fn when(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    match t {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => "-".to_owned(),
    }
}

/// A time for a table cell, in `tz`, to the second (run logs of short intervals).
pub(crate) fn when_secs(t: Option<DateTime<Utc>>, tz: Tz) -> String {
    match t {
        Some(t) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => "-".to_owned(),
    }
}

pub(crate) use crate::text::clip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let mut out = Vec::new();
        let rows = vec![vec!["a".to_owned(), "한국어".to_owned(), "x".to_owned()]];
        write_table(&mut out, &["LONG", "B", "C"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "LONG  B    C\na     한국어  x\n"
        );
    }

    #[test]
    fn json_arrays_match_serializing_the_whole_slice() {
        for items in [vec![], vec!["a"], vec!["a", "b\"c\n", "ü"]] {
            let mut array = JsonArray::new(Vec::new());
            for item in &items {
                array.push(item).unwrap();
            }
            let streamed = array.finish().unwrap();
            let mut whole = serde_json::to_vec(&items).unwrap();
            whole.push(b'\n');
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("hello\nworld", 20), "hello world");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
