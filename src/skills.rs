//! Which skills exist for a group: directories holding a `SKILL.md` under
//! `groups/global/skills/` (shared) and `groups/<folder>/skills/` (the group's own).
//!
//! Whether a skill is *enabled* lives in the store (`store::skills`); this module only
//! reads the filesystem. Symlinks are not followed (a group's agent can write its own
//! folder and must not make the host read elsewhere), and names that fail
//! [`validate_skill_name`] are skipped.

use std::path::Path;

use serde::Serialize;

use crate::actions::validate_skill_name;
use crate::model::FolderName;
use crate::paths::Paths;

/// Where a skill comes from. A group's own skill shadows a global one of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Global,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skill {
    pub name: String,
    pub scope: Scope,
}

/// The skills available to `folder`, sorted by name.
pub fn list(paths: &Paths, folder: &FolderName) -> Vec<Skill> {
    let mut out: Vec<Skill> = Vec::new();
    for (dir, scope) in [
        (paths.global_dir().join("skills"), Scope::Global),
        (paths.group_dir(folder).join("skills"), Scope::Group),
    ] {
        for name in skill_dirs(&dir) {
            out.retain(|s| s.name != name);
            out.push(Skill { name, scope });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The names of the skills available to `folder`, sorted (what `actions::set_skill`
/// takes as `available`).
pub fn available(paths: &Paths, folder: &FolderName) -> Vec<String> {
    list(paths, folder).into_iter().map(|s| s.name).collect()
}

fn skill_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| validate_skill_name(name).is_ok())
        .filter(|name| {
            std::fs::symlink_metadata(dir.join(name).join("SKILL.md")).is_ok_and(|m| m.is_file())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_own_skills() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let ops = FolderName::parse("ops").unwrap();
        let mk = |base: std::path::PathBuf, name: &str, with_md: bool| {
            let d = base.join("skills").join(name);
            std::fs::create_dir_all(&d).unwrap();
            if with_md {
                std::fs::write(d.join("SKILL.md"), "---\nname: x\n---\n").unwrap();
            }
        };
        mk(paths.global_dir(), "pdf", true);
        mk(paths.global_dir(), "web", true);
        mk(paths.global_dir(), "empty", false);
        mk(paths.group_dir(&ops), "web", true);
        mk(paths.group_dir(&ops), "ops-only", true);
        mk(paths.group_dir(&ops), ".hidden", true);
        std::os::unix::fs::symlink(
            paths.global_dir().join("skills").join("pdf"),
            paths.group_dir(&ops).join("skills").join("linked"),
        )
        .unwrap();
        assert_eq!(available(&paths, &ops), ["ops-only", "pdf", "web"]);
        let web = list(&paths, &ops).into_iter().find(|s| s.name == "web");
        assert_eq!(web.unwrap().scope, Scope::Group);
        let other = FolderName::parse("dev").unwrap();
        assert_eq!(available(&paths, &other), ["pdf", "web"]);
    }
}
