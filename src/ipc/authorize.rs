//! Who may ask for what: the permission table, as a pure function. Each request
//! type's module (`super::requests`) says which row it is and resolves the facts the
//! row needs; the table stays here, whole, so it reads (and is tested) as one.
//!
//! The sender is the group whose IPC directory the request file was found in — never
//! a payload field. The caller resolves the facts the table needs (which folder a chat
//! or task belongs to) from the database, inside the same transaction that applies the
//! request, and passes them in; this module decides without any I/O.
//!
//! | request                     | main          | any other group                   |
//! |-----------------------------|---------------|-----------------------------------|
//! | message                     | any chat      | only chats registered to itself   |
//! | schedule_task               | any group     | only its own chat                 |
//! | update/pause/resume/cancel  | any task      | only its own tasks                |
//! | register_group              | yes (never as main) | no                          |
//! | refresh_groups              | yes           | no                                |
//! | enable/disable_skill        | any group     | only itself                       |
//! | refresh_skills              | itself        | itself                            |

use crate::model::FolderName;

/// The group a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub folder: &'a FolderName,
    pub is_main: bool,
}

/// What the request would do, with the facts the table needs.
#[derive(Debug, Clone, Copy)]
pub enum Act<'a> {
    /// Send to a chat; `target_folder` is the folder that chat is registered to, if any.
    SendMessage {
        target_folder: Option<&'a FolderName>,
    },
    /// Create a task for the group registered to the target chat, if any.
    ScheduleTask {
        target_folder: Option<&'a FolderName>,
    },
    /// Change an existing task owned by `owner`.
    ChangeTask {
        owner: &'a FolderName,
    },
    RegisterGroup,
    RefreshGroups,
    /// Enable or disable a skill of group `target`.
    ChangeSkills {
        target: &'a FolderName,
    },
}

/// Why a request was refused; the text is what the agent reads after "denied: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// Decides whether `sender` may do `act`.
pub fn authorize(sender: Sender<'_>, act: Act<'_>) -> Result<(), Denied> {
    if sender.is_main {
        return Ok(());
    }
    let own = |f: Option<&FolderName>| f == Some(sender.folder);
    let deny = |why: &str| Err(Denied(why.to_owned()));
    match act {
        Act::SendMessage { target_folder } if own(target_folder) => Ok(()),
        Act::SendMessage { .. } => deny("a non-main group can only send messages to its own chat"),
        Act::ScheduleTask { target_folder } if own(target_folder) => Ok(()),
        Act::ScheduleTask { .. } => {
            deny("a non-main group can only schedule tasks for its own chat")
        }
        Act::ChangeTask { owner } if owner == sender.folder => Ok(()),
        Act::ChangeTask { .. } => deny("a non-main group can only change its own tasks"),
        Act::RegisterGroup => deny("only the main group can register groups"),
        Act::RefreshGroups => deny("only the main group can refresh the group list"),
        Act::ChangeSkills { target } if target == sender.folder => Ok(()),
        Act::ChangeSkills { .. } => deny("a non-main group can only change its own skills"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let main_f = FolderName::parse("main").unwrap();
        let ops = FolderName::parse("ops").unwrap();
        let dev = FolderName::parse("dev").unwrap();
        let main = Sender {
            folder: &main_f,
            is_main: true,
        };
        let own = Sender {
            folder: &ops,
            is_main: false,
        };
        let acts_on = |f: &'static FolderName| {
            [
                Act::SendMessage {
                    target_folder: Some(f),
                },
                Act::ScheduleTask {
                    target_folder: Some(f),
                },
                Act::ChangeTask { owner: f },
                Act::ChangeSkills { target: f },
            ]
        };
        let ops: &'static FolderName = Box::leak(Box::new(ops.clone()));
        let dev: &'static FolderName = Box::leak(Box::new(dev));
        for act in acts_on(ops).into_iter().chain(acts_on(dev)) {
            assert!(authorize(main, act).is_ok(), "main {act:?}");
        }
        for act in acts_on(ops) {
            assert!(authorize(own, act).is_ok(), "own {act:?}");
        }
        for act in acts_on(dev) {
            assert!(authorize(own, act).is_err(), "other {act:?}");
        }
        for act in [
            Act::SendMessage {
                target_folder: None,
            },
            Act::ScheduleTask {
                target_folder: None,
            },
            Act::RegisterGroup,
            Act::RefreshGroups,
        ] {
            assert!(authorize(main, act).is_ok());
            assert!(authorize(own, act).is_err(), "{act:?}");
        }
    }
}
