//! The network-namespace hosts that stand in for containers. A pod that runs takes one; when the
//! pod ends (deleted, evicted, its node lost) the processes it started are killed and its home is
//! emptied before another pod may take it, as a container's filesystem and processes go with it.
//!
//! "The processes it started" are the namespace's processes that were not there when the sandbox
//! was added (the test host's own sshd stays).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use super::state::State;
use super::Sandbox;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotUse {
    Free,
    Pod(String, String),
    /// Its pod ended; processes are being killed and the home emptied.
    Resetting,
}

pub struct SandboxSlot {
    pub sandbox: Sandbox,
    pub baseline_pids: Vec<i32>,
    pub in_use: SlotUse,
}

impl SandboxSlot {
    pub fn new(sandbox: Sandbox) -> SandboxSlot {
        let baseline_pids = namespace_pids(&sandbox.netns);
        SandboxSlot { sandbox, baseline_pids, in_use: SlotUse::Free }
    }
}

/// A sandbox whose pod ended, to reset outside the state lock.
pub struct Released {
    pub index: usize,
    pub sandbox: Sandbox,
    pub baseline_pids: Vec<i32>,
}

/// Pids of the processes in network namespace `netns` (`ip netns pids`); none if it is missing.
fn namespace_pids(netns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills the pod's processes (SIGKILL, as a container's end) and empties its home.
pub fn reset(released: &Released) {
    // Kill until none is left: a dying shell may have forked a moment before.
    for _ in 0..20 {
        let strays: Vec<i32> =
            namespace_pids(&released.sandbox.netns).into_iter().filter(|p| !released.baseline_pids.contains(p)).collect();
        if strays.is_empty() {
            break;
        }
        for pid in strays {
            // SAFETY: kill(2) with a pid read from the namespace; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    empty_dir(&released.sandbox.home);
}

fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let _ = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

/// Resets each sandbox, then makes it free for the next pod.
pub fn reset_and_free(state: &Mutex<State>, released: Vec<Released>) {
    for one in &released {
        reset(one);
    }
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    for one in released {
        if let Some(slot) = state.sandboxes.get_mut(one.index) {
            slot.in_use = SlotUse::Free;
        }
        state.sandboxes_freed += 1;
    }
}
