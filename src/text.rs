//! Clipping text for places that must stay short: log lines, `.reason` files, error
//! messages that quote an offending value, one-line CLI tables.

/// How much of an offending value a message, `.reason` file, response or log line
/// quotes.
pub(crate) const QUOTE_CHARS: usize = 200;

/// At most `max` characters of `text` on one line (control characters become
/// spaces), with `…` as the last character when it was cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut n = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if n + 1 == max && chars.clone().next().is_some() {
            out.push('…');
            return out;
        }
        if n == max {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
        n += 1;
    }
    out
}

/// [`clip`] to [`QUOTE_CHARS`]: for quoting values an agent or user sent.
pub(crate) fn quote(text: &str) -> String {
    clip(text, QUOTE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_characters_and_flattens_lines() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("exactly10!", 10), "exactly10!");
        assert_eq!(clip("eleven chars", 10), "eleven ch…");
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("", 0), "");
        assert_eq!(quote(&"x".repeat(100_000)).chars().count(), QUOTE_CHARS);
    }
}
