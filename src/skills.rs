//! Skills on disk: directories holding a `SKILL.md`, shared under
//! `groups/global/skills/<name>/` or a group's own under `groups/<folder>/skills/<name>/`.
//!
//! Whether a skill is enabled lives in the store (`store::skills`); this module only
//! knows what exists. A group's own skill wins over a global one of the same name.

use std::path::{Path, PathBuf};

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

/// The skills available to `folder` with where each comes from, sorted by name.
pub fn list(paths: &Paths, folder: &FolderName) -> Vec<Skill> {
    let mut out: Vec<Skill> = skills_in(&paths.global_skills_dir())
        .into_iter()
        .map(|(name, _)| Skill {
            name,
            scope: Scope::Global,
        })
        .collect();
    for (name, _) in skills_in(&paths.group_skills_dir(folder)) {
        out.retain(|s| s.name != name);
        out.push(Skill {
            name,
            scope: Scope::Group,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The names of the skills available to `folder` (its own and the global ones),
/// sorted, without duplicates. Directories whose name is not a valid skill name, or
/// with no regular-file `SKILL.md` (symlinks do not count), are left out.
pub fn available(paths: &Paths, folder: &FolderName) -> Vec<String> {
    let mut names: Vec<String> = [paths.group_skills_dir(folder), paths.global_skills_dir()]
        .iter()
        .flat_map(|dir| skills_in(dir))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Where skill `name` of `folder` lives: the group's own copy, else the global one.
pub fn source_dir(paths: &Paths, folder: &FolderName, name: &str) -> Option<PathBuf> {
    validate_skill_name(name).ok()?;
    [paths.group_skills_dir(folder), paths.global_skills_dir()]
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|d| is_skill_dir(d))
}

/// `(name, dir)` of each valid skill directly under `dir`.
fn skills_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            validate_skill_name(&name).ok()?;
            let path = e.path();
            is_skill_dir(&path).then_some((name, path))
        })
        .collect()
}

/// A real directory (not a link) holding a regular `SKILL.md` (not a link).
fn is_skill_dir(dir: &Path) -> bool {
    let real_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    real_dir && std::fs::symlink_metadata(dir.join("SKILL.md")).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("SKILL.md"), "---\nname: x\n---\n").unwrap();
    }

    #[test]
    fn lists_group_and_global_skills_sorted_and_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path());
        let f = FolderName::parse("team").unwrap();
        let other = FolderName::parse("other").unwrap();
        skill(&paths.global_skills_dir(), "web");
        skill(&paths.global_skills_dir(), "notes");
        skill(&paths.group_skills_dir(&f), "notes");
        skill(&paths.group_skills_dir(&f), "alpha");
        skill(&paths.group_skills_dir(&other), "secret");
        skill(&paths.global_skills_dir(), ".hidden");
        std::fs::create_dir_all(paths.global_skills_dir().join("empty")).unwrap();
        std::os::unix::fs::symlink(
            paths.group_skills_dir(&other).join("secret"),
            paths.group_skills_dir(&f).join("linked"),
        )
        .unwrap();
        assert_eq!(available(&paths, &f), ["alpha", "notes", "web"]);
        assert_eq!(available(&paths, &other), ["notes", "secret", "web"]);
        assert_eq!(
            source_dir(&paths, &f, "notes").unwrap(),
            paths.group_skills_dir(&f).join("notes")
        );
        assert_eq!(
            source_dir(&paths, &f, "web").unwrap(),
            paths.global_skills_dir().join("web")
        );
        assert!(source_dir(&paths, &f, "secret").is_none());
        assert!(source_dir(&paths, &f, "../other/skills/secret").is_none());
        let scopes: Vec<(String, Scope)> = list(&paths, &f)
            .into_iter()
            .map(|s| (s.name, s.scope))
            .collect();
        assert_eq!(
            scopes,
            [
                ("alpha".to_owned(), Scope::Group),
                ("notes".to_owned(), Scope::Group),
                ("web".to_owned(), Scope::Global)
            ]
        );
    }
}
