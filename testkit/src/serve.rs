//! A `skycat serve` child process for the CLI suites: started with its stderr appended to a file
//! (so that it never writes into a closed pipe, and what it printed stays readable after it
//! died), returned once it printed its ready line, stopped with SIGTERM or SIGKILL, and killed
//! on drop (a failed test leaves no server behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `BIN serve --addr ADDR FLAGS…` on the skycat home `home`, without the caller's API token or
/// log filter; the caller may add to it before [`Serve::start`].
pub fn command(bin: &str, home: &Path, addr_and_flags: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("serve").arg("--addr").args(addr_and_flags).env("SKYCAT_HOME", home).env_remove("SKYCAT_API_TOKEN").env_remove("RUST_LOG");
    c
}

pub struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Starts `cmd` (stdin and stdout null, stderr appended to `log`) and waits up to 2 minutes
    /// for `ready` in what it prints. Returns it with what it printed by then (which lacks
    /// `ready` when it exited or took longer: the caller asserts).
    pub fn start(mut cmd: Command, log: &Path, ready: &str) -> (Serve, String) {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let from = err.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err).spawn().expect("start skycat serve");
        let mut s = Serve { child, log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let seen = s.printed().get(from..).unwrap_or_default().to_string();
            if seen.contains(ready) || Instant::now() > deadline || s.child.try_wait().ok().flatten().is_some() {
                return (s, seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to the log so far (by this server and any before it on the same log).
    pub fn printed(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGKILL (no chance to clean up), then reaped.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap skycat serve")
    }

    /// Sends SIGTERM (`kill -TERM`).
    pub fn terminate(&self) {
        let st = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(st.success(), "kill -TERM {} failed", self.pid());
    }

    /// Its exit status once it exited, waiting up to `timeout`; None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait skycat serve") {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
