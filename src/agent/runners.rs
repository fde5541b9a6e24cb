//! Which [`Runner`] `AGENT_RUNNER` selects, built from the daemon's configuration.
//!
//! `container` (the default) never falls back to the host silently: when the runtime
//! or the image is missing, the runner is still the container runner and every agent
//! start fails at once with a message naming the fix (build the image with
//! scripts/build-image.sh, or choose `AGENT_RUNNER=host`), logged at start-up and told
//! to the chat.

use std::sync::Arc;

use super::container::{ContainerRunner, ContainerSettings};
use super::container_mounts::default_allowlist_path;
use super::container_runtime::Runtime;
use super::host::HostRunner;
use super::runner::Runner;
use crate::config::{Config, RunnerKind};
use crate::paths::Paths;

/// The runner for `config`. `tools_exe`: this `rust_claw` executable (the container
/// runner maps it to the image's copy).
pub(crate) fn from_config(
    paths: &Paths,
    config: &Config,
    tools_exe: &std::path::Path,
) -> Arc<dyn Runner> {
    match config.agent_runner {
        RunnerKind::Host => Arc::new(HostRunner::new(config.codex_bin.clone())),
        RunnerKind::Container => Arc::new(ContainerRunner::new(
            Runtime::detect(config.container_runtime),
            container_settings(config, tools_exe),
            paths.clone(),
        )),
    }
}

/// The container settings `config` asks for.
pub(crate) fn container_settings(
    config: &Config,
    tools_exe: &std::path::Path,
) -> ContainerSettings {
    ContainerSettings {
        image: config.container_image.clone(),
        network: config.container_network.clone(),
        pids_limit: config.container_pids_limit,
        memory: config.container_memory.clone(),
        cpus: config.container_cpus.clone(),
        host_tools_exe: tools_exe.to_owned(),
        allowlist: default_allowlist_path(),
    }
}
