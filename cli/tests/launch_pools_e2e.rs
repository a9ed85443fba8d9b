//! `skycat launch` follows the optimizer on SSH node pools, through the real binary and real
//! sshd hosts in network namespaces: a cheap CPU-only pool and a dearer `H100:8` pool.
//! * a task asking for H100:8 lands on the GPU pool, a CPU-only task on the CPU pool;
//! * the `--dryrun` placement is the one launch uses;
//! * `ssh CLUSTER` works with the system ssh through the generated config and the Include line;
//! * `skycat cpunode` attaches to the running node in an interactive session (driven in tmux);
//! * `down` removes the SSH config entries.
//!
//! Needs root, iproute2, openssh-server and tmux (scripts/ci-setup-*.sh). Never skipped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "../../controller/tests/common/mod.rs"]
mod common;
use common::{agent_bin, TestHosts};

const NET: u32 = 180;

struct Env {
    home: tempfile::TempDir,
    user_home: tempfile::TempDir,
    agent: std::path::PathBuf,
}

impl Env {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skycat"));
        c.env("SKYCAT_HOME", self.home.path()).env("HOME", self.user_home.path()).env("SKYCAT_AGENT_BIN", &self.agent);
        c
    }
    fn skycat(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run skycat")
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn first_failover_row(plan: &str) -> String {
    plan.lines().skip_while(|l| !l.starts_with("Failover order")).nth(2).unwrap_or_default().to_string()
}

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux").args(args).output().expect("tmux (scripts/ci-setup-sshd.sh installs it)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn launch_follows_the_plan_on_pools_and_ssh_works() {
    let hosts = TestHosts::up(2, NET, "lp");
    let env = Env { home: tempfile::tempdir().unwrap(), user_home: tempfile::tempdir().unwrap(), agent: agent_bin() };
    let key = hosts.key();
    std::fs::write(
        env.home.path().join("ssh_node_pools.yaml"),
        format!(
            "cpu:\n  hosts: [{}]\n  user: root\n  identity_file: {}\n  price_per_hour: 0.5\n\
             gpu:\n  hosts: [{}]\n  user: root\n  identity_file: {}\n  price_per_hour: 9.0\n  accelerators: H100:8\n",
            hosts.ip(1),
            key.display(),
            hosts.ip(2),
            key.display()
        ),
    )
    .unwrap();
    let h100 = env.home.path().join("h100.yaml");
    std::fs::write(&h100, "resources:\n  accelerators: H100:8\n  infra: ssh\nrun: echo gpus=$SKYCAT_NUM_GPUS_PER_NODE on $SKYCAT_TESTHOST\n").unwrap();
    let cpu = env.home.path().join("cpu.yaml");
    std::fs::write(&cpu, "resources:\n  infra: ssh\nrun: echo cpu on $SKYCAT_TESTHOST\n").unwrap();

    // The dry run's first placement is the GPU pool for H100:8, the CPU pool for a CPU task.
    let dry = env.skycat(&["launch", "-c", "g", h100.to_str().unwrap(), "--dryrun"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let row = first_failover_row(&text(&dry));
    assert!(row.contains("ssh") && row.contains("gpu") && row.contains("H100:8"), "{}", text(&dry));
    let dry = env.skycat(&["launch", "-c", "c", cpu.to_str().unwrap(), "--dryrun"]);
    let row = first_failover_row(&text(&dry));
    assert!(row.contains("ssh") && row.contains("cpu") && !row.contains("H100"), "{}", text(&dry));

    // Launch lands there.
    let out = env.skycat(&["launch", "-c", "g", h100.to_str().unwrap(), "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("Cluster g UP on root@{}:22", hosts.ip(2))), "{}", text(&out));
    let out = env.skycat(&["launch", "-c", "c", cpu.to_str().unwrap(), "-y"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("Cluster c UP on root@{}:22", hosts.ip(1))), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = text(&env.skycat(&["logs", "g", "1"]));
        if log.contains("gpus=8 on 2") {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A second H100 task finds the GPU pool taken: nothing else has H100s, so it fails and says so.
    let out = env.skycat(&["launch", "-c", "g2", h100.to_str().unwrap(), "-y"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no capacity") && text(&out).contains("ssh/gpu"), "{}", text(&out));

    // `ssh g` through the user's ~/.ssh/config, which includes skycat's.
    let user_cfg = env.user_home.path().join(".ssh/config");
    let cfg_text = std::fs::read_to_string(&user_cfg).expect("~/.ssh/config written with the Include");
    assert!(cfg_text.contains("Include"), "{cfg_text}");
    let out = Command::new("ssh")
        .args(["-F", user_cfg.to_str().unwrap(), "-o", "BatchMode=yes", "g", "echo on-$SKYCAT_TESTHOST; hostname"])
        .output()
        .expect("ssh");
    assert!(out.status.success() && text(&out).contains("on-2"), "{}", text(&out));

    // `skycat cpunode -c c` attaches to the running node in an interactive shell.
    let session = format!("skycat-lp-{}", std::process::id());
    let cmd = format!(
        "env SKYCAT_HOME={} HOME={} SKYCAT_AGENT_BIN={} {} cpunode -c c -y",
        env.home.path().display(),
        env.user_home.path().display(),
        env.agent.display(),
        env!("CARGO_BIN_EXE_skycat")
    );
    tmux(&["new-session", "-d", "-s", &session, "-x", "200", "-y", "50", &cmd]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = String::new();
    while Instant::now() < deadline {
        tmux(&["send-keys", "-t", &session, "echo node-$SKYCAT_TESTHOST-here", "Enter"]);
        std::thread::sleep(Duration::from_millis(700));
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if screen.contains("node-1-here") {
            break;
        }
    }
    tmux(&["send-keys", "-t", &session, "exit", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("Attaching to c") && screen.contains("node-1-here"), "{screen}");

    for c in ["g", "c"] {
        let out = env.skycat(&["down", c]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let skycat_cfg = std::fs::read_to_string(env.home.path().join("ssh/config")).unwrap_or_default();
    assert!(!skycat_cfg.contains("Host g") && !skycat_cfg.contains("Host c"), "{skycat_cfg}");
    let _ = Path::new("");
}
