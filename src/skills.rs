//! Skills on disk: directories holding a `SKILL.md`, shared under
//! `groups/global/skills/<name>/` or a group's own under `groups/<folder>/skills/<name>/`.
//!
//! Whether a skill is enabled lives in the store (`store::skills`); this module only
//! knows what exists. A group's own skill wins over a global one of the same name.

use serde::Serialize;

use crate::model::{FolderName, SkillName};
use crate::paths::Paths;
use crate::safe_dir::{Lookup, SafeDir};

/// Where a skill comes from. A group's own skill shadows a global one of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    Global,
    Group,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Skill {
    pub(crate) name: String,
    pub(crate) scope: Scope,
}

/// `groups/<owner>/skills/` reached by descriptor: `groups/` is the owner's, but
/// `groups/<folder>/` (and `groups/global/` for main) are agent-writable, so neither
/// `<folder>` nor `skills` is ever followed if it is a link.
fn skills_root(paths: &Paths, owner: &str) -> Option<SafeDir> {
    let groups = SafeDir::open_trusted(&paths.groups_dir(), false).ok()?;
    match groups.open_path(&[owner, "skills"]) {
        Ok(Lookup::Dir(d)) => Some(d),
        Ok(Lookup::Impostor(kind)) => {
            tracing::warn!(group = owner, %kind, "groups/<folder>/skills (or the folder) is not a real directory; ignored");
            None
        }
        _ => None,
    }
}

/// The skills available to `folder` with where each comes from, sorted by name.
pub(crate) fn list(paths: &Paths, folder: &FolderName) -> Vec<Skill> {
    let mut out: Vec<Skill> = skills_in(skills_root(paths, GLOBAL).as_ref())
        .into_iter()
        .map(|name| Skill {
            name,
            scope: Scope::Global,
        })
        .collect();
    for name in skills_in(skills_root(paths, folder.as_str()).as_ref()) {
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
    let mut names: Vec<String> = list(paths, folder).into_iter().map(|s| s.name).collect();
    names.dedup();
    names
}

/// The directory of skill `name` of `folder`, opened by descriptor: the group's own
/// copy, else the global one.
pub(crate) fn source(paths: &Paths, folder: &FolderName, name: &str) -> Option<SafeDir> {
    SkillName::parse(name).ok()?;
    [folder.as_str(), GLOBAL]
        .into_iter()
        .filter_map(|owner| skills_root(paths, owner))
        .find_map(|root| skill_dir(&root, name))
}

const GLOBAL: &str = "global";

/// The names of the valid skills directly under `dir`.
fn skills_in(dir: Option<&SafeDir>) -> Vec<String> {
    let Some(dir) = dir else { return Vec::new() };
    let Ok(entries) = dir.entries() else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|(name, _)| {
            let name = name.into_string().ok()?;
            SkillName::parse(&name).ok()?;
            skill_dir(dir, &name).map(|_| name)
        })
        .collect()
}

/// A real directory (not a link) holding a regular `SKILL.md` (not a link).
fn skill_dir(root: &SafeDir, name: &str) -> Option<SafeDir> {
    let Ok(Lookup::Dir(d)) = root.open_dir(name) else {
        return None;
    };
    let is_file = d
        .stat("SKILL.md")
        .is_ok_and(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG);
    is_file.then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(dir: &std::path::Path, name: &str) {
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
            source(&paths, &f, "notes").unwrap().path(),
            paths.group_skills_dir(&f).join("notes")
        );
        assert_eq!(
            source(&paths, &f, "web").unwrap().path(),
            paths.global_skills_dir().join("web")
        );
        assert!(source(&paths, &f, "secret").is_none());
        assert!(source(&paths, &f, "../other/skills/secret").is_none());
        // A group's skills directory replaced by a link to another group's: ignored.
        std::fs::remove_dir_all(paths.group_skills_dir(&other)).unwrap();
        std::os::unix::fs::symlink("../team/skills", paths.group_skills_dir(&other)).unwrap();
        assert_eq!(available(&paths, &other), ["notes", "web"]);
        assert!(source(&paths, &other, "alpha").is_none());
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
