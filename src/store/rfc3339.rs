//! Serializes stored times as RFC 3339 UTC text, exactly as chrono's own serde does
//! (`2026-11-26T09:00:00Z`, or `…:00.250Z` when there are milliseconds), without
//! chrono's general-purpose formatter: listings print thousands of times, and that
//! formatter was a third of `list-tasks --json`'s work.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// `t` as `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (years 0 to 9999; others fall back to chrono).
pub(crate) fn format(t: &DateTime<Utc>) -> String {
    with_text(t, str::to_owned)
}

/// The fast path of [`format`], written into `buf` without allocating; `None` when
/// chrono's general formatter is needed (years outside 0..=9999, sub-millisecond parts).
fn format_into<'a>(t: &DateTime<Utc>, buf: &'a mut [u8; 24]) -> Option<&'a str> {
    let year = t.year();
    let millis = t.timestamp_subsec_millis();
    if !(0..=9999).contains(&year) || !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        return None;
    }
    *buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, millis, 3);
    let len = if millis == 0 {
        buf[19] = b'Z';
        20
    } else {
        24
    };
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buf[..len]).ok()
}

/// Calls `f` with `t`'s text, without allocating in the common case.
pub(crate) fn with_text<R>(t: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 24];
    match format_into(t, &mut buf) {
        Some(text) => f(text),
        None => f(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    with_text(t, |text| s.serialize_str(text))
}

/// For `Option<DateTime<Utc>>` fields: `null` or the text.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn matches_chronos_own_serde_output() {
        for ms in [
            0i64,
            1,
            999,
            1_000,
            1_795_626_565_982,
            1_795_626_565_000,
            253_402_300_799_999,
        ] {
            let t = Utc.timestamp_millis_opt(ms).unwrap();
            let chrono_json = serde_json::to_string(&t).unwrap();
            assert_eq!(format!("\"{}\"", format(&t)), chrono_json, "{ms}");
        }
    }
}
