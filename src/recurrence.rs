//! Recurrence: parsing `cron` / `interval` / `once` schedules and computing the next run.
//!
//! Pure functions with the clock passed in, so the scheduler and the tests decide
//! what "now" is. The rules, which `docs/scheduling.md` documents for users:
//!
//! * **cron** — standard crontab: 5 fields `minute hour day-of-month month day-of-week`,
//!   or 6 with a leading seconds field. Day-of-week 0–7 with 0 and 7 = Sunday, names
//!   `SUN`…`SAT` and `JAN`…`DEC`, ranges, steps and lists. When both day-of-month and
//!   day-of-week are restricted a day matches if *either* does (the crontab OR rule).
//!   Evaluated on the task's local wall clock: a local time that does not exist (DST
//!   spring-forward) runs at the first valid instant after the gap, once; a local time
//!   that happens twice (fall-back) runs once, at its first occurrence.
//! * **interval** — milliseconds, anchored: the next run is the previous *due* time plus
//!   whole intervals, the first one after now. Run duration never shifts it.
//! * **once** — an RFC 3339 time with offset, or a local `YYYY-MM-DDTHH:MM[:SS]` read in
//!   the task's timezone. Must lie in the future when the task is created.
//!
//! The `cron` crate does the field matching, on a "naive local" clock (local wall time
//! dressed up as UTC); this module translates weekday numbering (the crate counts
//! Sunday = 1) and maps wall-clock times back to real instants through the zone.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::{ScheduleType, ValidationError};

/// The longest interval accepted: 366 days.
pub(crate) const MAX_INTERVAL_MS: i64 = 366 * 24 * 60 * 60 * 1000;

/// A parsed, validated schedule.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    Cron(CronSchedule),
    Interval { every_ms: i64 },
    Once { at: DateTime<Utc> },
}

/// A crontab expression, compiled into one or two `cron` crate schedules.
#[derive(Debug, Clone)]
pub(crate) struct CronSchedule {
    /// Alternatives: a time matches if any of them matches (the OR rule needs two).
    parts: Vec<cron::Schedule>,
}

impl Schedule {
    /// Parses `value` as a `kind` schedule. `tz` reads local `once` times; `now` refuses
    /// `once` times in the past.
    pub(crate) fn parse(
        kind: ScheduleType,
        value: &str,
        tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ValidationError> {
        let value = value.trim();
        match kind {
            ScheduleType::Cron => Ok(Schedule::Cron(CronSchedule::parse(value)?)),
            ScheduleType::Interval => {
                let every_ms: i64 = value.parse().map_err(|_| {
                    ValidationError::new(
                        "schedule_value",
                        format!("{value:?} must be a whole number of milliseconds for an interval schedule"),
                    )
                })?;
                if every_ms <= 0 || every_ms > MAX_INTERVAL_MS {
                    return Err(ValidationError::new(
                        "schedule_value",
                        format!(
                            "interval {every_ms} ms must be between 1 and {MAX_INTERVAL_MS} (366 days)"
                        ),
                    ));
                }
                Ok(Schedule::Interval { every_ms })
            }
            ScheduleType::Once => {
                let at = parse_once(value, tz)?;
                if at <= now {
                    return Err(ValidationError::new(
                        "schedule_value",
                        format!("once time {value:?} ({}) is in the past", at.to_rfc3339()),
                    ));
                }
                Ok(Schedule::Once { at })
            }
        }
    }

    /// The first run of a task created at `now`.
    pub(crate) fn first_run(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(tz, now),
            Schedule::Interval { every_ms } => Some(now + Duration::milliseconds(*every_ms)),
            Schedule::Once { at } => Some(*at),
        }
    }

    /// The run after one that was due at `due`, given that it is now `now`: the first
    /// scheduled time strictly after `now` (missed runs are skipped, never replayed in a
    /// burst). `None` for `once` schedules, which do not repeat.
    pub(crate) fn next_after_run(
        &self,
        tz: Tz,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => c.next_after(tz, now.max(due)),
            Schedule::Interval { every_ms } => Some(next_interval(due, *every_ms, now)),
            Schedule::Once { .. } => None,
        }
    }

    /// The shortest time between two consecutive runs (looked for among the next 64
    /// runs of a cron schedule, so `0,1 9 * * *` counts as one minute); `None` for
    /// schedules that run once.
    pub(crate) fn min_gap(&self, tz: Tz, now: DateTime<Utc>) -> Option<Duration> {
        match self {
            Schedule::Interval { every_ms } => Some(Duration::milliseconds(*every_ms)),
            Schedule::Once { .. } => None,
            Schedule::Cron(c) => {
                let mut prev = c.next_after(tz, now)?;
                let mut min: Option<Duration> = None;
                for _ in 0..64 {
                    let Some(next) = c.next_after(tz, prev) else {
                        break;
                    };
                    let gap = next - prev;
                    min = Some(min.map_or(gap, |m| m.min(gap)));
                    prev = next;
                }
                min
            }
        }
    }

    /// Refuses a schedule whose runs come closer than `min_ms`, naming the minimum and
    /// where it comes from (`who`).
    pub(crate) fn check_min_gap(
        &self,
        tz: Tz,
        now: DateTime<Utc>,
        min_ms: u64,
        who: &str,
    ) -> Result<(), ValidationError> {
        match self.min_gap(tz, now) {
            Some(gap) if gap.num_milliseconds() < min_ms as i64 => Err(ValidationError::new(
                "schedule_value",
                format!(
                    "runs would come {} ms apart; the minimum for {who} is {min_ms} ms",
                    gap.num_milliseconds()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The next run of a task resumed at `now`: recomputed from now.
    pub(crate) fn resume_at(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once { at } => Some((*at).max(now)),
            _ => self.first_run(tz, now),
        }
    }
}

/// `anchor + k·every` for the smallest k ≥ 1 that lies strictly after `now`.
pub(crate) fn next_interval(
    anchor: DateTime<Utc>,
    every_ms: i64,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let every_ms = every_ms.max(1);
    let behind = (now - anchor).num_milliseconds();
    let k = if behind < 0 { 1 } else { behind / every_ms + 1 };
    anchor + Duration::milliseconds(k * every_ms)
}

fn parse_once(value: &str, tz: Tz) -> Result<DateTime<Utc>, ValidationError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .ok_or_else(|| {
            ValidationError::new(
                "schedule_value",
                format!(
                    "{value:?} must be an RFC 3339 time (2026-12-01T09:00:00+09:00) or a local time (2026-12-01T09:00)"
                ),
            )
        })?;
    local_to_utc(tz, naive).ok_or_else(|| {
        ValidationError::new(
            "schedule_value",
            format!("{value:?} cannot be placed in {tz}"),
        )
    })
}

/// A wall-clock time in `tz` as an instant: the earlier one if it happens twice, the
/// end of the gap if it does not exist.
fn local_to_utc(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // Inside a DST gap: walk forward a minute at a time (gaps are at most a few
            // hours) to the first wall-clock time that exists, then back to its instant.
            let mut probe = naive;
            for _ in 0..(26 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    // The gap ends exactly at the transition instant: the existing time we
                    // found may be up to a minute past it, so trim the seconds we added.
                    let trimmed = probe.and_utc().timestamp() % 60;
                    return Some((t - Duration::seconds(trimmed)).with_timezone(&Utc));
                }
            }
            None
        }
    }
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronSchedule {
    pub(crate) fn parse(expr: &str) -> Result<CronSchedule, ValidationError> {
        let bad = |reason: String| {
            ValidationError::new(
                "schedule_value",
                format!("invalid cron expression {expr:?}: {reason}"),
            )
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(bad(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {n}"
                )));
            }
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        for (name, f) in [
            ("minute", min),
            ("hour", hour),
            ("day-of-month", dom),
            ("month", month),
        ] {
            if f.contains('?') || f.contains('L') || f.contains('W') || f.contains('#') {
                return Err(bad(format!("{name} field {f:?} uses non-standard syntax")));
            }
        }
        let days = parse_weekdays(dow).map_err(bad)?;
        let dow_text = match &days {
            None => "*".to_owned(),
            Some(set) => set
                .iter()
                .map(|d| DAY_NAMES[*d as usize])
                .collect::<Vec<_>>()
                .join(","),
        };
        let dom_restricted = !dom.starts_with('*');
        let compile = |dom: &str, dow: &str| {
            cron::Schedule::from_str(&format!("{sec} {min} {hour} {dom} {month} {dow}"))
                .map_err(|e| bad(e.to_string()))
        };
        let parts = if dom_restricted && days.is_some() {
            // Crontab OR rule: a day matches when either field matches.
            vec![compile(dom, "*")?, compile("*", &dow_text)?]
        } else {
            vec![compile(dom, &dow_text)?]
        };
        let schedule = CronSchedule { parts };
        // An expression that can never fire (e.g. 31 February) is refused now, not
        // discovered when the task silently never runs.
        let probe = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        if schedule.next_naive(probe.naive_utc()).is_none() {
            return Err(bad("it never matches any date".to_owned()));
        }
        Ok(schedule)
    }

    /// The first wall-clock match strictly after `after`, on the naive clock.
    fn next_naive(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let fake = Utc.from_utc_datetime(&after);
        self.parts
            .iter()
            .filter_map(|s| s.after(&fake).next())
            .min()
            .map(|t| t.naive_utc())
    }

    /// The first run strictly after `after`, evaluated on `tz`'s wall clock.
    pub(crate) fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after.with_timezone(&tz).naive_local();
        // Each step moves the naive cursor forward, so this ends; the bound only guards
        // against a pathological expression.
        for _ in 0..10_000 {
            let naive = self.next_naive(cursor)?;
            if let Some(at) = local_to_utc(tz, naive)
                && at > after
            {
                return Some(at);
            }
            cursor = naive;
        }
        None
    }
}

/// Parses a crontab day-of-week field into a set of days (0 = Sunday … 6 = Saturday),
/// or `None` for an unrestricted field (`*`, `*/1`).
fn parse_weekdays(field: &str) -> Result<Option<BTreeSet<u8>>, String> {
    if field == "*" || field == "?" {
        return Ok(None);
    }
    let day = |s: &str| -> Result<u8, String> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = DAY_NAMES.iter().position(|n| *n == upper) {
            return Ok(i as u8);
        }
        match s.parse::<u8>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(format!(
                "day-of-week {s:?} must be 0-7 (0 and 7 = Sunday) or SUN-SAT"
            )),
        }
    };
    let mut set = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u8 =
                    s.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("day-of-week step {s:?} must be a positive number")
                    })?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day(a)?, day(b)?)
        } else {
            let d = day(range)?;
            // `5/2` means "from 5 to the end, every 2nd".
            (d, if item.contains('/') { 7 } else { d })
        };
        if lo > hi {
            return Err(format!("day-of-week range {range:?} runs backwards"));
        }
        for d in (lo..=hi).step_by(step as usize) {
            set.insert(d % 7);
        }
    }
    if set.is_empty() {
        return Err(format!("day-of-week field {field:?} matches no day"));
    }
    Ok(if set.len() == 7 && field.starts_with('*') {
        None
    } else {
        Some(set)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn runs(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let c = CronSchedule::parse(expr).unwrap();
        let mut t = utc(from);
        let mut out = vec![];
        for _ in 0..n {
            t = c.next_after(tz, t).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn weekdays_fire_monday_to_friday_at_nine_local() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 2026-03-05 is a Thursday; DST starts Sunday 2026-03-08.
        let got = runs("0 9 * * 1-5", tz, "2026-03-05T00:00:00Z", 6);
        let days: Vec<Weekday> = got.iter().map(|t| t.with_timezone(&tz).weekday()).collect();
        assert_eq!(
            days,
            [
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu
            ]
        );
        for t in &got {
            let local = t.with_timezone(&tz);
            assert_eq!((local.hour(), local.minute()), (9, 0), "{local}");
        }
        // Before the change 09:00 EST = 14:00Z, after it 09:00 EDT = 13:00Z.
        assert_eq!(got[1], utc("2026-03-06T14:00:00Z"));
        assert_eq!(got[2], utc("2026-03-09T13:00:00Z"));
    }

    #[test]
    fn sunday_is_zero_and_seven_and_names_work() {
        let tz = Tz::UTC;
        // 2026-11-29 is a Sunday.
        for expr in ["0 8 * * 0", "0 8 * * 7", "0 8 * * SUN", "0 8 * * sun"] {
            assert_eq!(
                runs(expr, tz, "2026-11-25T00:00:00Z", 1)[0],
                utc("2026-11-29T08:00:00Z"),
                "{expr}"
            );
        }
        let fri_to_sun = runs("0 8 * * 5-7", tz, "2026-11-25T00:00:00Z", 4);
        let days: Vec<Weekday> = fri_to_sun.iter().map(|t| t.weekday()).collect();
        assert_eq!(
            days,
            [Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Fri]
        );
        let odd = runs("0 8 * * 1-5/2", tz, "2026-11-22T00:00:00Z", 3);
        let days: Vec<Weekday> = odd.iter().map(|t| t.weekday()).collect();
        assert_eq!(days, [Weekday::Mon, Weekday::Wed, Weekday::Fri]);
        let named = runs("30 7 * JAN,dec MON", tz, "2026-11-25T00:00:00Z", 1);
        assert_eq!(named[0], utc("2026-12-07T07:30:00Z"));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        let tz = Tz::UTC;
        // "the 1st of the month, or any Monday" (crontab OR rule).
        let got = runs("0 0 1 * 1", tz, "2026-11-25T00:00:00Z", 4);
        assert_eq!(
            got,
            [
                utc("2026-11-30T00:00:00Z"), // Monday
                utc("2026-12-01T00:00:00Z"), // the 1st (a Tuesday)
                utc("2026-12-07T00:00:00Z"), // Monday
                utc("2026-12-14T00:00:00Z"),
            ]
        );
        // With day-of-week unrestricted only the day of month counts.
        assert_eq!(
            runs("0 0 1 * *", tz, "2026-11-25T00:00:00Z", 1)[0],
            utc("2026-12-01T00:00:00Z")
        );
        // Month and day of month combine with AND.
        assert_eq!(
            runs("0 12 15 6 *", tz, "2026-11-25T00:00:00Z", 1)[0],
            utc("2027-06-15T12:00:00Z")
        );
    }

    #[test]
    fn spring_forward_gap_runs_once_after_the_gap() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 02:00 EST jumps to 03:00 EDT (07:00Z). 02:30 does not exist.
        let got = runs("30 2 * * *", tz, "2026-03-07T12:00:00Z", 3);
        assert_eq!(got[0], utc("2026-03-08T07:00:00Z"));
        assert_eq!(got[1], utc("2026-03-09T06:30:00Z"));
        // Several matches inside the gap collapse into one run.
        let got = runs("*/15 2 * * *", tz, "2026-03-08T06:50:00Z", 2);
        assert_eq!(got[0], utc("2026-03-08T07:00:00Z"));
        assert_eq!(got[1], utc("2026-03-09T06:00:00Z"));
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00Z).
        assert_eq!(
            runs("30 2 * * *", berlin, "2026-03-28T12:00:00Z", 1)[0],
            utc("2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn fall_back_ambiguous_time_runs_once() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 2026-11-01 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
        let got = runs("30 1 * * *", tz, "2026-10-31T12:00:00Z", 2);
        assert_eq!(got[0], utc("2026-11-01T05:30:00Z"));
        assert_eq!(got[1], utc("2026-11-02T06:30:00Z"));
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25 02:30 happens at 00:30Z (CEST) and 01:30Z (CET).
        let got = runs("30 2 * * *", berlin, "2026-10-24T12:00:00Z", 2);
        assert_eq!(got[0], utc("2026-10-25T00:30:00Z"));
        assert_eq!(got[1], utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let got = runs("*/20 * * * * *", Tz::UTC, "2026-11-25T00:00:00Z", 2);
        assert_eq!(
            got,
            [utc("2026-11-25T00:00:20Z"), utc("2026-11-25T00:00:40Z")]
        );
    }

    #[test]
    fn invalid_cron_expressions_are_refused_with_the_reason() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* * * * 8",
            "* * * * MON-",
            "* * * * 5-1",
            "0 0 31 2 *",
            "x * * * *",
            "* * L * *",
        ] {
            let e = CronSchedule::parse(bad).expect_err(bad);
            assert_eq!(e.field, "schedule_value");
            assert!(e.reason.contains("invalid cron expression"), "{bad}: {e}");
        }
    }

    #[test]
    fn intervals_are_anchored() {
        let anchor = utc("2026-01-01T00:00:00Z");
        // A run that took 2.5 intervals: the next due time stays on the grid.
        let now = anchor + Duration::milliseconds(2_500);
        assert_eq!(
            next_interval(anchor, 1_000, now),
            anchor + Duration::milliseconds(3_000)
        );
        assert_eq!(
            next_interval(anchor, 1_000, anchor),
            anchor + Duration::milliseconds(1_000)
        );
        let s = Schedule::parse(ScheduleType::Interval, "60000", Tz::UTC, now).unwrap();
        assert_eq!(s.first_run(Tz::UTC, now), Some(now + Duration::minutes(1)));
        for bad in ["0", "-5", "1.5", "abc", "99999999999999"] {
            assert!(
                Schedule::parse(ScheduleType::Interval, bad, Tz::UTC, now).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn once_accepts_offsets_and_local_times_but_not_the_past() {
        let now = utc("2026-11-25T00:00:00Z");
        let seoul: Tz = "Asia/Seoul".parse().unwrap();
        let s = Schedule::parse(
            ScheduleType::Once,
            "2026-12-01T09:00:00+09:00",
            Tz::UTC,
            now,
        )
        .unwrap();
        assert_eq!(s.first_run(Tz::UTC, now), Some(utc("2026-12-01T00:00:00Z")));
        let s = Schedule::parse(ScheduleType::Once, "2026-12-01T09:00", seoul, now).unwrap();
        assert_eq!(s.first_run(seoul, now), Some(utc("2026-12-01T00:00:00Z")));
        assert!(s.next_after_run(seoul, now, now).is_none());
        let e =
            Schedule::parse(ScheduleType::Once, "2026-11-24T09:00:00Z", Tz::UTC, now).unwrap_err();
        assert!(e.reason.contains("in the past"));
        assert!(Schedule::parse(ScheduleType::Once, "tomorrow", Tz::UTC, now).is_err());
    }
}
