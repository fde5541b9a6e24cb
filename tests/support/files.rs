//! A directory tree as a test sees it, links never followed: to prove a tree an agent
//! attacked was left as it was.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Whether `p` is a directory itself (not a link to one).
pub fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Every non-directory below `dir` (links listed, never entered) with its content
/// (empty for what cannot be read), sorted by path. A missing `dir` has none.
pub fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if is_real_dir(&p) {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}
