//! What users see of an agent message.
//!
//! The agent may think aloud inside `<internal>…</internal>`; those spans are for the
//! agent's own bookkeeping and never reach the chat.

/// Removes every `<internal>…</internal>` span (case-insensitive tags) and trims the
/// result. An unclosed `<internal>` hides the rest of the text: better to say less
/// than to leak half a private note.
pub(crate) fn strip_internal(text: &str) -> String {
    const OPEN: &str = "<internal>";
    const CLOSE: &str = "</internal>";
    let lower = text.to_ascii_lowercase(); // same byte offsets as `text`
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(start) = lower[pos..].find(OPEN).map(|i| pos + i) {
        out.push_str(&text[pos..start]);
        match lower[start + OPEN.len()..].find(CLOSE) {
            Some(end) => pos = start + OPEN.len() + end + CLOSE.len(),
            None => {
                pos = text.len();
                break;
            }
        }
    }
    out.push_str(&text[pos..]);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::strip_internal;

    #[test]
    fn strips_internal_spans() {
        for (input, want) in [
            ("hello", "hello"),
            ("<internal>plan</internal>Hi there", "Hi there"),
            (
                "a <internal>x</internal> b <internal>y</internal> c",
                "a  b  c",
            ),
            ("<INTERNAL>shout</Internal>ok", "ok"),
            ("<internal>multi\nline</internal>\n\n답변 🦀", "답변 🦀"),
            ("visible <internal>never closed", "visible"),
            ("<internal>only</internal>", ""),
            ("</internal> stray close", "</internal> stray close"),
            ("İ<internal>x</internal>ok", "İok"),
        ] {
            assert_eq!(strip_internal(input), want, "input {input:?}");
        }
    }
}
