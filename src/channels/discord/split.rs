//! Splitting a reply into Discord-sized messages (pure; no I/O).
//!
//! Discord refuses messages over 2000 characters (counted as Unicode scalar values).
//! A long reply is cut on character boundaries, preferring the end of a paragraph,
//! then of a line, then a space; a word longer than a whole message is cut where it
//! must be. A code fence open at a cut is closed at the end of that chunk and
//! reopened, with the same language, at the start of the next, so every chunk renders
//! on its own.

/// Discord's limit on a message's content, in characters.
pub(crate) const MAX_CHARS: usize = 2000;

/// The longest info string (language) carried over to a reopened fence; a longer one
/// is not a language anyone highlights, and reopening it would eat the chunk.
const MAX_LANG_CHARS: usize = 32;
/// What closing a fence costs at the end of a chunk: `\n` + three backticks.
const CLOSE_COST: usize = 4;

/// Where the text stands with respect to code fences.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fence {
    /// `Some(lang)` inside a fence opened with that info string (possibly empty).
    open: Option<String>,
}

impl Fence {
    /// Updates the state with `piece`; `line_start` says whether it begins a line.
    fn advance(&mut self, piece: &str, line_start: bool) {
        for (i, line) in piece.split('\n').enumerate() {
            if i == 0 && !line_start {
                continue;
            }
            let Some(rest) = line.trim_start().strip_prefix("```") else {
                continue;
            };
            self.open = match self.open.take() {
                Some(_) => None,
                None => {
                    let lang = rest.split_whitespace().next().unwrap_or("");
                    let lang = if lang.chars().count() <= MAX_LANG_CHARS && !lang.contains('`') {
                        lang
                    } else {
                        ""
                    };
                    Some(lang.to_owned())
                }
            };
        }
    }
}

/// Splits `text` into chunks of at most `max` characters each (`max` ≥ 64).
pub(crate) fn split(text: &str, max: usize) -> Vec<String> {
    assert!(
        max >= 64,
        "a chunk must hold a reopened fence and some text"
    );
    let mut chunks = Vec::new();
    let mut fence = Fence::default();
    let mut rest = text;
    let mut line_start = true;
    loop {
        let prefix = fence
            .open
            .as_ref()
            .map(|lang| format!("```{lang}\n"))
            .unwrap_or_default();
        let prefix_chars = prefix.chars().count();
        if prefix_chars + rest.chars().count() <= max {
            if !rest.trim().is_empty() {
                chunks.push(format!("{prefix}{rest}"));
            }
            return chunks;
        }
        let budget = max - prefix_chars - CLOSE_COST;
        let window_end = rest
            .char_indices()
            .nth(budget)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..window_end];
        // (end of this chunk's text, start of the next chunk's text)
        let (cut, next) = [("\n\n", 2), ("\n", 1), (" ", 1)]
            .iter()
            .find_map(|(sep, len)| {
                window
                    .rfind(sep)
                    .filter(|&at| at > 0 && !window[..at].trim().is_empty())
                    .map(|at| (at, at + len))
            })
            .unwrap_or((window_end, window_end));
        let piece = &rest[..cut];
        let mut after = fence.clone();
        after.advance(piece, line_start);
        let mut chunk = prefix;
        chunk.push_str(piece);
        if after.open.is_some() {
            chunk.push_str("\n```");
        }
        chunks.push(chunk);
        let separator = &rest[cut..next];
        line_start = if separator.is_empty() {
            // A hard cut in the middle of a line.
            false
        } else {
            separator.contains('\n')
        };
        rest = &rest[next..];
        if after.open.is_none() {
            // Blank lines between chunks would only pad the next message.
            let trimmed = rest.trim_start_matches('\n');
            if trimmed.len() != rest.len() {
                line_start = true;
            }
            rest = trimmed;
        }
        fence = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split("hello", MAX_CHARS), vec!["hello"]);
        assert_eq!(split("", MAX_CHARS), Vec::<String>::new());
        let exact = "a".repeat(MAX_CHARS);
        assert_eq!(split(&exact, MAX_CHARS), vec![exact.clone()]);
    }

    #[test]
    fn table() {
        // (input, max, expected chunks)
        let cases: &[(&str, usize, &[&str])] = &[
            // Paragraph break preferred over a later line break.
            (
                "first paragraph here\n\nsecond one\nand more words to push it past the limit of sixty",
                64,
                &[
                    "first paragraph here",
                    "second one\nand more words to push it past the limit of sixty",
                ],
            ),
            // No paragraph: a line break.
            (
                "line one is here\nline two is here\nline three is quite a bit longer than the rest",
                64,
                &[
                    "line one is here\nline two is here",
                    "line three is quite a bit longer than the rest",
                ],
            ),
            // No line break: a space.
            (
                "word word word word word word word word word word word word word word",
                64,
                &[
                    "word word word word word word word word word word word word",
                    "word word",
                ],
            ),
        ];
        for (input, max, expected) in cases {
            assert_eq!(split(input, *max), *expected, "input {input:?}");
        }
    }

    #[test]
    fn a_word_longer_than_a_message_is_cut_on_a_char_boundary() {
        let word = "가".repeat(150);
        let chunks = split(&word, 64);
        assert!(chunks.iter().all(|c| chars(c) <= 64));
        assert_eq!(chunks.concat(), word);
    }

    #[test]
    fn fences_are_closed_and_reopened_with_their_language() {
        let code: String = (0..40).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.");
        let chunks = split(&text, 200);
        assert!(chunks.len() > 2, "{chunks:?}");
        for (i, c) in chunks.iter().enumerate() {
            assert!(chars(c) <= 200, "chunk {i} too long");
            assert_eq!(c.matches("```").count() % 2, 0, "unbalanced chunk {i}: {c}");
            if i > 0 && i < chunks.len() - 1 {
                assert!(c.starts_with("```rust\n"), "chunk {i} not reopened: {c}");
            }
        }
        // Every line of code arrives exactly once, in order.
        let joined = chunks.join("\n");
        let mut pos = 0;
        for i in 0..40 {
            let line = format!("let x{i} = {i};");
            let at = joined[pos..].find(&line).expect("line present") + pos;
            pos = at + line.len();
            assert_eq!(joined.matches(&line).count(), 1, "{line} doubled");
        }
        assert!(chunks.last().unwrap().ends_with("Done."));
    }

    #[test]
    fn fence_without_language_and_hard_cut_inside_code() {
        let long_line = "x".repeat(300);
        let text = format!("```\n{long_line}\n```");
        let chunks = split(&text, 100);
        for c in &chunks {
            assert!(chars(c) <= 100);
            assert_eq!(c.matches("```").count(), 2, "{c}");
        }
        let body: String = chunks
            .iter()
            .map(|c| c.trim_start_matches("```\n").trim_end_matches("\n```"))
            .collect();
        assert_eq!(body.trim_matches('`').trim(), long_line);
    }

    #[test]
    fn five_thousand_characters() {
        let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(25);
        let code: String = (0..60)
            .map(|i| format!("print({i})  # step {i}\n"))
            .collect();
        let text = format!("{para}\n\n```python\n{code}```\n\n{para}\n\n{para}");
        assert!(chars(&text) >= 5000, "{}", chars(&text));
        let chunks = split(&text, MAX_CHARS);
        assert!(chunks.len() >= 3);
        for c in &chunks {
            assert!(chars(c) <= MAX_CHARS);
            assert_eq!(c.matches("```").count() % 2, 0);
        }
    }
}
