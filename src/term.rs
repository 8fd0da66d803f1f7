//! Text for the terminal, and printing that survives a closed pipe.
//!
//! Symbol names and file names come from data files and are untrusted:
//! [`escape`] shows every control or invisible formatting character
//! visibly (`\u{1b}`, `\n`, `\u{202e}`…), so no name reaches the terminal
//! as a control sequence or breaks a table row. The print functions
//! ([`out_line`], [`err_line`]) apply the same escaping to everything
//! else they print as a last line of defence (line breaks excepted).
//!
//! A closed stdout (`atc-bt … | head -1`, EPIPE) is not an error, as in
//! ripgrep: the first failed write marks stdout closed, later lines are
//! dropped, the command finishes its work (a run still writes its files
//! and report) and exits 0. Long listings check [`stdout_closed`] to stop
//! early. Any other write error (`> /dev/full`, a full disk, an I/O error)
//! is kept ([`stdout_error`]): later lines are dropped the same way, and
//! the command ends with an error naming stdout and the cause (exit 1),
//! never a silent 0 with lost output. A closed stderr is ignored. Nothing
//! here panics.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// The first error writing stdout other than a closed pipe.
static STDOUT_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The first error writing stdout other than a closed pipe (EPIPE), if
/// one happened: the output is incomplete and the command must fail.
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Whether a write to stdout has failed (the reader went away).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Characters never sent to a terminal as they are: control characters
/// (C0, DEL, C1), and the invisible formatting characters that reorder or
/// hide text (bidi controls, zero-width characters, the BOM).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with every control or invisible formatting character escaped
/// visibly (and backslashes doubled, so the escaping is unambiguous, when
/// anything needed escaping). Borrowed when nothing needs it.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A file path as messages show it: [`escape`]d, so a line break or an
/// escape sequence in a file name can neither split a message nor reach
/// the terminal (the print functions keep line breaks, which messages
/// use for their hints).
pub fn shown(path: &std::path::Path) -> String {
    escape(&path.display().to_string()).into_owned()
}

/// An XML document with every character XML 1.0 forbids (C0 controls
/// other than tab, line feed and carriage return) written visibly escaped
/// (`\\u{1b}`). The document's markup never holds such characters, so
/// only text drawn from names changes. Borrowed when nothing needs it.
pub fn escape_controls_in_xml(xml: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r');
    if !xml.chars().any(bad) {
        return Cow::Borrowed(xml);
    }
    let mut out = String::with_capacity(xml.len() + 8);
    for c in xml.chars() {
        if bad(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A name as shown in messages: [`escape`]d, and `""` when empty (so an
/// empty name is visible).
pub fn quote(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        Cow::Borrowed("\"\"")
    } else {
        escape(s)
    }
}

/// JSON text (from serde_json, which escapes only C0 controls, `"` and
/// `\\`) with every other control or invisible formatting character
/// written as a JSON escape (`\\u202e`), so the document stays valid JSON,
/// means the same, and is safe on a terminal.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    // Raw line breaks are pretty-printing between tokens (serde_json
    // escapes those inside strings).
    let escape = |c: char| c != '\n' && needs_escape(c);
    if !json.chars().any(escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escape(c) {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with control characters other than line breaks escaped: the
/// last line of defence of everything printed.
fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c != '\n' && needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prints one line on stdout; a closed stdout drops it (and every later
/// line) silently.
pub fn out_line(args: std::fmt::Arguments<'_>) {
    if stdout_closed() {
        return;
    }
    let text = args.to_string();
    let mut o = std::io::stdout().lock();
    let r = o
        .write_all(sanitize(&text).as_bytes())
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush());
    if let Err(e) = r {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut g = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            g.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes `bytes` to stdout as they are: data for a file or a pipe (a CSV
/// whose quoted fields may hold any character must reach its reader
/// unchanged, so names stay apart). A closed stdout drops them as
/// [`out_line`] does. Callers send terminals [`out_line`]'s escaped text
/// instead.
pub fn out_raw(bytes: &[u8]) {
    if stdout_closed() {
        return;
    }
    let mut o = std::io::stdout().lock();
    let r = o.write_all(bytes).and_then(|()| o.flush());
    if let Err(e) = r {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut g = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            g.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Prints one line on stderr; a closed stderr is ignored.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let mut e = std::io::stderr().lock();
    let _ = e
        .write_all(sanitize(&text).as_bytes())
        .and_then(|()| e.write_all(b"\n"));
}

/// `println!` that never panics: see [`out_line`].
#[macro_export]
macro_rules! outln {
    () => { $crate::term::out_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::term::out_line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics: see [`err_line`].
#[macro_export]
macro_rules! errln {
    () => { $crate::term::err_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::term::err_line(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        assert_eq!(escape("AAPL"), "AAPL");
        assert_eq!(escape("A\u{1b}[31mB"), "A\\u{1b}[31mB");
        assert_eq!(escape("a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(sanitize("ok\nline\u{7}"), "ok\nline\\u{7}");
        let j = serde_json::to_string(&"a\u{1b}b\u{202e}c\u{7f}").unwrap();
        let safe = json_safe(&j);
        assert_eq!(safe, "\"a\\u001bb\\u202ec\\u007f\"");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "a\u{1b}b\u{202e}c\u{7f}");
    }
}
