//! Validated identifiers and the small enums every layer shares.
//!
//! Everything that crosses a trust boundary (CLI flags, IPC payloads, agent tool
//! arguments, rows read back from disk) is turned into one of these types before it
//! is used. A `FolderName` in hand is therefore always safe to join onto a path, and a
//! `Jid` always names a chat form the daemon knows how to route.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that failed validation: which field, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The user-facing name of the field (`--folder`, `schedule_value`, ...).
    pub(crate) field: String,
    /// What the rule is, phrased so the user can fix the value.
    pub(crate) reason: String,
}

impl ValidationError {
    /// A reason that quotes a huge value is clipped (≈ [`crate::text::QUOTE_CHARS`]
    /// of the value plus the rule), so messages, logs and ledger rows stay small.
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: crate::text::clip(&reason.into(), 2 * crate::text::QUOTE_CHARS),
        }
    }

    /// The same error reported under another field name (e.g. the CLI flag
    /// instead of the IPC field).
    pub(crate) fn for_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

/// `as_str` (with visibility `$vis`), `Display`, `FromStr` and `Deserialize` for a
/// validated string newtype `$name(String)`: parsing and deserializing both go
/// through `$name::parse`, so a value read from anywhere is checked the same way.
macro_rules! validated_string {
    ($name:ident, $vis:vis) => {
        impl $name {
            $vis fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`: one path component, never `.` or `..` — the
/// rule task ids and skill names share.
fn is_name_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Folder names that would collide with the daemon's own directories.
pub(crate) const RESERVED_FOLDERS: &[&str] =
    &["global", "errors", "control", "shared", "skills", "tmp"];

/// A group's folder name: `^[a-z0-9][a-z0-9_-]{0,63}$`, not reserved.
///
/// It names `groups/<folder>/`, `data/ipc/<folder>/` and `data/sessions/<folder>/`,
/// so it can never contain a path separator, a dot or an upper-case letter (which
/// would make two folders differ only by case on case-insensitive filesystems).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FolderName(String);

validated_string!(FolderName, pub(crate));

impl FolderName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let err = |reason: &str| ValidationError::new("folder", format!("{value:?} {reason}"));
        if value.is_empty() || value.len() > 64 {
            return Err(err("must be 1 to 64 characters long"));
        }
        let mut chars = value.chars();
        let first = chars.next().unwrap_or('-');
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(err("must start with a lower-case letter or a digit"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(err(
                "may contain only lower-case letters, digits, '_' and '-' (pattern ^[a-z0-9][a-z0-9_-]{0,63}$)",
            ));
        }
        if RESERVED_FOLDERS.contains(&value) {
            return Err(err("is reserved for the daemon's own use"));
        }
        Ok(FolderName(value.to_owned()))
    }
}

/// A chat identifier.
///
/// * `<snowflake>@discord` — a Discord channel (the snowflake is its channel id).
/// * `<name>@local` — a chat of the local terminal channel (`rust_claw chat`); the
///   name follows the folder-name rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Jid {
    Discord(u64),
    Local(String),
}

impl Jid {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let err = |reason: &str| ValidationError::new("jid", format!("{value:?} {reason}"));
        if let Some(id) = value.strip_suffix("@discord") {
            let ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
            return match (ok, id.parse::<u64>()) {
                (true, Ok(n)) if n > 0 => Ok(Jid::Discord(n)),
                _ => Err(err(
                    "must be <channel id>@discord with a numeric Discord channel id (snowflake)",
                )),
            };
        }
        if let Some(name) = value.strip_suffix("@local") {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            return if ok {
                Ok(Jid::Local(name.to_owned()))
            } else {
                Err(err(
                    "must be <name>@local with a name of a-z, 0-9, '_' or '-'",
                ))
            };
        }
        Err(err(
            "must be <channel id>@discord (e.g. 123456789012345678@discord) or <name>@local",
        ))
    }

    /// The local-channel chat that `rust_claw chat --group <folder>` talks through.
    pub(crate) fn local_for(folder: &FolderName) -> Jid {
        Jid::Local(folder.as_str().to_owned())
    }

    pub fn is_discord(&self) -> bool {
        matches!(self, Jid::Discord(_))
    }

    /// The kind of channel the chat lives on, as the jid spells it after `@`
    /// (`discord`, `local`): what the `chats` table records.
    pub(crate) fn channel(&self) -> &'static str {
        match self {
            Jid::Discord(_) => "discord",
            Jid::Local(_) => "local",
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Jid::Discord(id) => write!(f, "{id}@{}", self.channel()),
            Jid::Local(name) => write!(f, "{name}@{}", self.channel()),
        }
    }
}

impl FromStr for Jid {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

impl Serialize for Jid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Listings serialize a jid per row; going through `Display` and the
            // formatting machinery cost more than the rest of the jid's work.
            Jid::Discord(id) => {
                let mut buf = [0u8; 20 + "@discord".len()];
                let mut start = 20;
                let mut n = *id;
                loop {
                    start -= 1;
                    buf[start] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                buf[20..].copy_from_slice(b"@discord");
                // ASCII digits and a literal suffix: always UTF-8.
                s.serialize_str(std::str::from_utf8(&buf[start..]).unwrap_or_default())
            }
            Jid::Local(name) => s.serialize_str(&format!("{name}@local")),
        }
    }
}

impl<'de> Deserialize<'de> for Jid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Jid::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A skill's name, the name of its directory (which holds a `SKILL.md`):
/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$` — one path component, never `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SkillName(String);

validated_string!(SkillName, pub(crate));

impl SkillName {
    pub(crate) fn parse(value: &str) -> Result<Self, ValidationError> {
        if is_name_token(value) {
            Ok(SkillName(value.to_owned()))
        } else {
            Err(ValidationError::new(
                "skill_name",
                format!("{value:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' or '.'"),
            ))
        }
    }
}

/// A scheduled task's id: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

validated_string!(TaskId, pub);

impl TaskId {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if is_name_token(value) {
            Ok(TaskId(value.to_owned()))
        } else {
            Err(ValidationError::new(
                "id",
                format!(
                    "{value:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' or '.', starting with a letter or digit"
                ),
            ))
        }
    }

    /// A fresh id: `task-<unix ms>-<6 random hex digits>`.
    pub(crate) fn generate(now_ms: i64) -> TaskId {
        let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
        TaskId(format!("task-{now_ms}-{suffix:06x}"))
    }
}

/// A group's trigger word, e.g. `@Andy`: `@` then 1 to 64 non-space characters.
pub(crate) fn validate_trigger(value: &str) -> Result<String, ValidationError> {
    let rest = value.strip_prefix('@').unwrap_or("");
    if rest.is_empty() || rest.chars().count() > 64 || rest.chars().any(char::is_whitespace) {
        return Err(ValidationError::new(
            "trigger",
            format!("{value:?} must be '@' followed by 1 to 64 non-space characters, e.g. @Andy"),
        ));
    }
    Ok(value.to_owned())
}

/// A group's display name: 1 to 200 characters, no control characters.
pub(crate) fn validate_name(value: &str) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 || trimmed.chars().any(char::is_control)
    {
        return Err(ValidationError::new(
            "name",
            format!("{value:?} must be 1 to 200 printable characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Implements `as_str`, `Display`, `FromStr` and serde for a closed set of
/// lower-case words, so the database, CLI and IPC all spell them the same way.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every word, in declaration order (the agent-tools schemas list them; not
            /// every word enum is in a schema).
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            pub(crate) fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub(crate) fn parse(value: &str) -> Result<Self, ValidationError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::new(
                        $field,
                        format!("{:?} must be one of: {}", value, [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

word_enum!(
    /// How a task's schedule value is read.
    ScheduleType, "schedule_type" { Cron => "cron", Interval => "interval", Once => "once" }
);

word_enum!(
    /// Which agent session a scheduled run uses: the group's ongoing one, or a fresh
    /// one that never replaces it.
    ContextMode, "context_mode" { Group => "group", Isolated => "isolated" }
);

word_enum!(
    /// A task's life cycle. `completed` and `failed` are final (once tasks only).
    TaskStatus, "status" {
        Active => "active", Paused => "paused", Completed => "completed", Failed => "failed"
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        for ok in ["main", "team-ops", "a", "0abc", "x_y-z", &"a".repeat(64)] {
            assert!(FolderName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "Main",
            "-a",
            "_a",
            "a/b",
            "../etc",
            "..",
            "a.b",
            "global",
            "errors",
            "a b",
            &"a".repeat(65),
            "é",
        ] {
            let e = FolderName::parse(bad).expect_err(bad);
            assert_eq!(e.field, "folder");
        }
    }

    #[test]
    fn jids() {
        assert_eq!(
            Jid::parse("123456789012345678@discord").unwrap(),
            Jid::Discord(123456789012345678)
        );
        assert_eq!(Jid::parse("main@local").unwrap(), Jid::Local("main".into()));
        assert_eq!(Jid::parse("main@local").unwrap().to_string(), "main@local");
        for bad in [
            "",
            "123",
            "@discord",
            "abc@discord",
            "-1@discord",
            "0@discord",
            "123456789012345678901@discord",
            "99999999999999999999@discord",
            "12 3@discord",
            "Main@local",
            "../x@local",
            "@local",
            "1@whatsapp",
        ] {
            assert!(Jid::parse(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn jids_serialize_as_their_text() {
        for text in [
            "1@discord",
            "10@discord",
            "123456789012345678@discord",
            "18446744073709551615@discord",
            "main@local",
        ] {
            let jid = Jid::parse(text).unwrap();
            assert_eq!(serde_json::to_string(&jid).unwrap(), format!("\"{text}\""));
            assert_eq!(jid.to_string(), text);
        }
    }

    #[test]
    fn task_ids() {
        assert!(TaskId::parse("daily-report").is_ok());
        assert!(TaskId::parse("a.b_c-1").is_ok());
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
        let id = TaskId::generate(1_700_000_000_000);
        assert!(TaskId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn triggers_and_names() {
        assert!(validate_trigger("@Andy").is_ok());
        assert!(validate_trigger("Andy").is_err());
        assert!(validate_trigger("@").is_err());
        assert!(validate_trigger("@An dy").is_err());
        assert_eq!(validate_name("  Team Ops ").unwrap(), "Team Ops");
        assert!(validate_name(" ").is_err());
        assert!(validate_name("a\nb").is_err());
    }

    #[test]
    fn word_enums_round_trip() {
        for s in [
            ScheduleType::Cron,
            ScheduleType::Interval,
            ScheduleType::Once,
        ] {
            assert_eq!(ScheduleType::parse(s.as_str()).unwrap(), s);
        }
        let e = TaskStatus::parse("done").unwrap_err();
        assert!(e.reason.contains("active, paused, completed, failed"));
    }
}
