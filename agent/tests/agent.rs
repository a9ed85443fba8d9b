//! End-to-end tests of the real `skycat-agent` binary (no SSH: the controller's tests do that).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "hf_s3cr3t_value_123";

fn base_config() -> Value {
    json!({
        "cluster_name": "c1",
        "launch_id": "launch-1",
        "node_rank": 1,
        "num_nodes": 2,
        "node_ips": ["10.1.0.1", "10.1.0.2"],
        "gpus_per_node": 2,
        "task_id": "task-abc",
        "heartbeat_interval_secs": 0.2,
        "price_per_hour": 36.0,
        "termination_grace_secs": 5,
        "envs": {"MODEL": "llama", "HF_TOKEN": SECRET}
    })
}

fn file_contains(path: &std::path::Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}

#[test]
fn setup_once_then_fifo_jobs_with_env_logs_and_no_secret_leaks() {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, "tok", reqs.clone());
    let mut cfg = base_config();
    cfg["server_url"] = json!(server.url());
    cfg["token"] = json!("tok");
    let agent = Agent::new(cfg);
    let marker = agent.path().join("setup-count");
    agent.start();
    let setup = json!({"setup": format!("echo setup-ran >> {}; echo setting up with $HF_TOKEN", marker.display()),
                       "envs": {"DB_PASSWORD": "pw-hunter2"}});
    let st = agent.json(&["setup", "--wait"], Some(&setup.to_string()));
    assert_eq!(st["state"], "SUCCEEDED");
    // Setup runs once per launch: a second submission is a no-op.
    let again = agent.json(&["setup"], Some(&setup.to_string()));
    assert_eq!(again["already_done"], true);

    let order = agent.path().join("order");
    let env_dump =
        "for v in SKYCAT_NUM_GPUS_PER_NODE SKYCAT_NODE_RANK SKYCAT_NUM_NODES SKYCAT_TASK_ID \
        SKYCAT_JOB_RECOVERY_COUNT SKYPILOT_NUM_GPUS_PER_NODE SKYPILOT_NODE_RANK SKYPILOT_NUM_NODES \
        SKYPILOT_TASK_ID SKYPILOT_JOB_RECOVERY_COUNT MODEL JOBVAR; do echo \"$v=${!v}\"; done; \
        echo \"IPS=[$SKYCAT_NODE_IPS]\"; echo \"SPIPS=[$SKYPILOT_NODE_IPS]\"; \
        echo \"token is $HF_TOKEN\"; echo \"api $MY_API_KEY\"; echo \"priv $MYPRIV\"; \
        echo \"lens ${#HF_TOKEN} ${#MY_API_KEY}\"";
    let mut ids = Vec::new();
    for i in 0..3 {
        let run = format!("echo {i} >> {}; {env_dump}", order.display());
        ids.push(agent.submit(json!({"run": run, "gpus": 1, "envs": {"JOBVAR": format!("v{i}"), "MY_API_KEY": "key-xyz-789", "MYPRIV": "priv-value-555"},
                                     "secret_envs": ["MYPRIV"], "recovery_count": i})));
    }
    assert_eq!(ids, vec![1, 2, 3]);
    for id in &ids {
        let j = agent.wait_job(*id, 30);
        assert_eq!(j["state"], "SUCCEEDED", "{j}");
    }
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "0\n1\n2\n");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "setup-ran\n");

    let out = agent.cmd(&["logs", "2"], None);
    assert!(out.status.success());
    let log = String::from_utf8(out.stdout).unwrap();
    for line in [
        "SKYCAT_NUM_GPUS_PER_NODE=1",
        "SKYCAT_NODE_RANK=1",
        "SKYCAT_NUM_NODES=2",
        "SKYCAT_TASK_ID=task-abc",
        "SKYCAT_JOB_RECOVERY_COUNT=1",
        "SKYPILOT_NUM_GPUS_PER_NODE=1",
        "SKYPILOT_NODE_RANK=1",
        "SKYPILOT_NUM_NODES=2",
        "SKYPILOT_TASK_ID=task-abc",
        "SKYPILOT_JOB_RECOVERY_COUNT=1",
        "MODEL=llama",
        "JOBVAR=v1",
        "IPS=[10.1.0.1\n10.1.0.2]",
        "SPIPS=[10.1.0.1\n10.1.0.2]",
        // The job saw the secrets (the filter replaced them in the log).
        "token is <redacted>",
        "api <redacted>",
        // A secret by the submitter's word (`--secret MYPRIV`), whatever its name.
        "priv <redacted>",
        // …and saw the real values, not the redaction marker (lengths 19 and 11).
        "lens 19 11",
    ] {
        assert!(log.contains(line), "missing {line:?} in log:\n{log}");
    }
    let setup_log = String::from_utf8(agent.cmd(&["logs", "setup"], None).stdout).unwrap();
    assert!(
        setup_log.contains("setting up with <redacted>"),
        "{setup_log}"
    );

    // Secrets: never in clear in logs, status, queue, journal, snapshot, ledger or heartbeats.
    eventually(10, "a heartbeat after the jobs", || {
        let hbs = heartbeats(&reqs, "tok");
        hbs.last()
            .filter(|h| h.jobs.len() == 3 && h.jobs.iter().all(|j| j.state.is_terminal()))
            .map(|_| ())
    });
    let status = agent.cmd(&["--json", "status"], None).stdout;
    let queue = agent.cmd(&["queue"], None).stdout;
    for secret in [SECRET, "pw-hunter2", "key-xyz-789", "priv-value-555"] {
        assert!(!String::from_utf8_lossy(&status).contains(secret));
        assert!(!String::from_utf8_lossy(&queue).contains(secret));
        for f in agent.public_files() {
            assert!(
                !file_contains(&f, secret),
                "{secret} in clear in {}",
                f.display()
            );
        }
        for r in server.requests() {
            assert!(!String::from_utf8_lossy(&r.body).contains(secret));
        }
    }
    // …but the journal does record the jobs (redacted).
    assert!(
        file_contains(&agent.path().join("state/state.json"), "<redacted>")
            || file_contains(&agent.path().join("state/journal.jsonl"), "<redacted>")
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(agent.path().join("secrets/2.env.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn gpu_accounting_never_overlaps_full_node_jobs() {
    let agent = Agent::new(base_config());
    agent.start();
    // More GPUs than the node has: refused at submit.
    let out = agent.cmd(&["submit"], Some(r#"{"run":"true","gpus":3}"#));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs 3 GPUs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = agent.submit(json!({"run": "echo cvd=$CUDA_VISIBLE_DEVICES; sleep 1", "gpus": 2}));
    let b = agent.submit(json!({"run": "sleep 0.2", "gpus": 2}));
    // A CPU job queued after b waits its turn (FIFO), even though it needs no GPU.
    let c = agent.submit(json!({"run": "echo cvd=${CUDA_VISIBLE_DEVICES-unset}", "gpus": 0}));
    let (ja, jb, jc) = (
        agent.wait_job(a, 30),
        agent.wait_job(b, 30),
        agent.wait_job(c, 30),
    );
    let t =
        |j: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(j[k].as_str().unwrap()).unwrap();
    assert!(
        t(&jb, "started_at") >= t(&ja, "ended_at"),
        "b overlapped a: {ja} {jb}"
    );
    assert!(t(&jc, "started_at") >= t(&jb, "started_at"));

    // Two 1-GPU jobs share the node.
    let d = agent.submit(json!({"run": "echo cvd=$CUDA_VISIBLE_DEVICES; sleep 3", "gpus": 1}));
    let e = agent.submit(json!({"run": "echo cvd=$CUDA_VISIBLE_DEVICES; sleep 1", "gpus": 1}));
    let (jd, je) = (agent.wait_job(d, 30), agent.wait_job(e, 30));
    assert!(
        t(&je, "started_at") < t(&jd, "ended_at"),
        "1-GPU jobs should share: {jd} {je}"
    );
    // Whole-GPU jobs get distinct devices through CUDA_VISIBLE_DEVICES.
    let log =
        |id: u64| String::from_utf8(agent.cmd(&["logs", &id.to_string()], None).stdout).unwrap();
    assert_eq!(log(a), "cvd=0,1\n");
    assert_eq!(log(c), "cvd=unset\n");
    assert_eq!(log(d), "cvd=0\n");
    assert_eq!(log(e), "cvd=1\n");
    assert_eq!(jd["gpu_ids"], json!([0]));
    assert_eq!(je["gpu_ids"], json!([1]));
}

#[test]
fn cancel_kills_the_whole_process_tree() {
    let agent = Agent::new(base_config());
    agent.start();
    let pids = agent.path().join("pids");
    let id = agent.submit(json!({"run": format!("sleep 300 & echo $! >> {p}; (sleep 300 & echo $! >> {p}; wait) & wait", p = pids.display())}));
    let children: Vec<u32> = eventually(20, "the job's children", || {
        let text = std::fs::read_to_string(&pids).ok()?;
        let v: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (v.len() == 2).then_some(v)
    });
    assert!(children.iter().all(|p| pid_alive(*p)));
    let v = agent.json(&["cancel", &id.to_string()], None);
    assert_eq!(v["state"], "CANCELLED");
    eventually(15, "the job's children to die", || {
        children.iter().all(|p| !pid_alive(*p)).then_some(())
    });
    let j = agent.job(id);
    assert_eq!(j["state"], "CANCELLED");
    // A pending job can be cancelled too, and an unknown one is an error.
    let out = agent.cmd(&["cancel", "99"], None);
    assert!(!out.status.success());
}

#[test]
fn heartbeats_carry_cost_and_survive_a_server_outage_in_order() {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, "tok", reqs.clone());
    let port = server.port;
    let mut cfg = base_config();
    cfg["server_url"] = json!(server.url());
    cfg["token"] = json!("tok");
    let agent = Agent::new(cfg);
    agent.start();
    eventually(20, "3 heartbeats", || {
        (heartbeats(&reqs, "tok").len() >= 3).then_some(())
    });
    server.shutdown();
    let seq_at_outage = agent.status()["heartbeat_seq"].as_u64().unwrap();
    // Heartbeats keep being made (and journaled) while the server is down.
    eventually(20, "5 heartbeats made during the outage", || {
        (agent.status()["heartbeat_seq"].as_u64().unwrap() >= seq_at_outage + 5).then_some(())
    });
    let st = agent.status();
    assert!(st["heartbeat_acked_seq"].as_u64().unwrap() < st["heartbeat_seq"].as_u64().unwrap());
    // The daemon dies (SIGKILL) during the outage and comes back: its journaled backlog survives.
    let pid = agent.daemon_pid().unwrap();
    unsafe_kill(pid as i32, 9);
    eventually(10, "daemon dead", || (!pid_alive(pid)).then_some(()));
    agent.start();
    eventually(20, "2 more heartbeats after the restart", || {
        (agent.status()["heartbeat_seq"].as_u64().unwrap() >= seq_at_outage + 7).then_some(())
    });
    let server = heartbeat_server(port, "tok", reqs.clone());
    let target = agent.status()["heartbeat_seq"].as_u64().unwrap();
    eventually(20, "the backlog to be replayed", || {
        (agent.status()["heartbeat_acked_seq"].as_u64().unwrap() >= target).then_some(())
    });
    let hbs = heartbeats(&reqs, "tok");
    let seqs: Vec<u64> = hbs.iter().map(|h| h.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "heartbeats must arrive once each, in seq order"
    );
    assert!(hbs
        .iter()
        .all(|h| h.protocol_version == 1 && h.cluster == "c1" && h.node_id == "c1-1"));
    assert_eq!(hbs[0].reason, skycat_protocol::HeartbeatReason::Startup);
    let startups = hbs
        .iter()
        .filter(|h| h.reason == skycat_protocol::HeartbeatReason::Startup)
        .count();
    assert_eq!(
        startups, 2,
        "both daemon starts are in the delivered sequence"
    );
    // Cost grows at the pinned price; it never decreases.
    let costs: Vec<f64> = hbs.iter().map(|h| h.cost.accrued_usd).collect();
    assert!(costs.windows(2).all(|w| w[1] >= w[0]));
    let last = hbs.last().unwrap();
    assert!(last.cost.accrued_usd > 0.0);
    assert_eq!(last.cost.price_per_hour, 36.0);
    let expect = 36.0 * last.cost.metered_seconds / 3600.0;
    assert!(
        (last.cost.accrued_usd - expect).abs() < 1e-9,
        "{} vs {expect}",
        last.cost.accrued_usd
    );
    assert!(last.facts.cpus >= 1 && last.facts.memory_total_bytes > 0);
    assert_eq!(last.facts.gpus_for_jobs, 2.0);
    assert!(last.idle_seconds > 0.0);
    drop(server);
}

#[test]
fn wrong_token_gets_401_and_nothing_is_acknowledged() {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, "right", reqs.clone());
    let mut cfg = base_config();
    cfg["server_url"] = json!(server.url());
    cfg["token"] = json!("wrong");
    let agent = Agent::new(cfg);
    agent.start();
    eventually(20, "rejected attempts", || {
        (server.requests().len() >= 2).then_some(())
    });
    assert!(heartbeats(&reqs, "right").is_empty());
    assert_eq!(agent.status()["heartbeat_acked_seq"], 0);
    assert!(agent.agent_log().contains("401"), "{}", agent.agent_log());
    // The oldest heartbeat is retried first: every attempt is seq 1.
    for r in server.requests() {
        let hb: skycat_protocol::Heartbeat = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(hb.seq, 1);
    }
}

#[test]
fn sigkill_mid_job_then_restart_reports_truthfully() {
    let agent = Agent::new(base_config());
    let pid = agent.start();
    let go = agent.path().join("go");
    // Job 1 keeps running across the daemon's death: it waits for a file, then exits 7.
    let survivor = agent.submit(json!({"run": format!("while [ ! -e {} ]; do sleep 0.05; done; echo finished; exit 7", go.display())}));
    eventually(20, "job 1 running", || {
        (agent.job(survivor)["pid"].as_u64().is_some()).then_some(())
    });
    let pgid = agent.job(survivor)["pid"].as_u64().unwrap();
    unsafe_kill(pid as i32, 9);
    eventually(10, "daemon dead", || (!pid_alive(pid)).then_some(()));
    // A second daemon must refuse while a first one holds the dir: start one, then try again.
    let pid2 = agent.start();
    assert_ne!(pid2, pid);
    let out = agent.cmd(&["daemon"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another skycat-agent daemon"));
    // Re-adopted: still RUNNING with the same process.
    let j = agent.job(survivor);
    assert_eq!(j["state"], "RUNNING", "{j}");
    assert_eq!(j["pid"].as_u64(), Some(pgid));
    std::fs::write(&go, "").unwrap();
    let j = agent.wait_job(survivor, 30);
    assert_eq!(j["state"], "FAILED");
    assert_eq!(
        j["exit_code"], 7,
        "exit code read from the wrapper's exit file: {j}"
    );
    let log = String::from_utf8(agent.cmd(&["logs", &survivor.to_string()], None).stdout).unwrap();
    assert!(log.contains("finished"));

    // Now the job dies together with the daemon (SIGKILL to both): reported lost, not running.
    let lost = agent.submit(json!({"run": "sleep 300"}));
    eventually(20, "job running", || {
        (agent.job(lost)["pid"].as_u64().is_some()).then_some(())
    });
    let pg = agent.job(lost)["pid"].as_u64().unwrap();
    unsafe_kill(pid2 as i32, 9);
    unsafe_kill(-(pg as i32), 9);
    eventually(10, "daemon dead", || (!pid_alive(pid2)).then_some(()));
    // Offline status still answers from the journal.
    let offline = agent.status();
    assert_eq!(offline["daemon_running"], false);
    std::thread::sleep(Duration::from_millis(1200));
    agent.start();
    let j = agent.job(lost);
    assert_eq!(j["state"], "FAILED", "{j}");
    assert_eq!(j["reason"], "agent restarted, job process lost");
    // The earlier jobs' history survived both restarts.
    assert_eq!(agent.job(survivor)["exit_code"], 7);
    // A new job still runs after all that.
    let next = agent.submit(json!({"run": "true"}));
    assert_eq!(agent.wait_job(next, 30)["state"], "SUCCEEDED");
    // The ledger billed the time the daemon was down (no reboot in between) as a gap.
    let ledger: Vec<skycat_protocol::CostRecord> =
        std::fs::read_to_string(agent.path().join("state/ledger.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(
        ledger.iter().any(|r| r.kind == "gap" && r.seconds >= 1.0),
        "{ledger:?}"
    );
    // Contiguous metering: each record starts where the previous one ended.
    for w in ledger.windows(2) {
        assert_eq!(w[1].from, w[0].to, "{ledger:?}");
    }
    let total: f64 = ledger.iter().map(|r| r.usd).sum();
    let st = agent.status();
    assert!((st["cost"]["accrued_usd"].as_f64().unwrap() - total).abs() < 1e-6);
}

#[test]
fn autostop_fires_after_idle_and_runs_the_stop_action() {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, "tok", reqs.clone());
    let stopped = tempfile::tempdir().unwrap();
    let flag = stopped.path().join("stopped");
    let mut cfg = base_config();
    cfg["server_url"] = json!(server.url());
    cfg["token"] = json!("tok");
    cfg["heartbeat_interval_secs"] = json!(5.0);
    cfg["idle_seconds"] = json!(1.0);
    cfg["stop_action"] = json!(format!("touch {}", flag.display()));
    let agent = Agent::new(cfg);
    agent.start();
    // Busy for 1.5 s: autostop must not fire while a job runs. (On a slow machine it may fire
    // once before the job is submitted; the job then starts a new idle period afterwards.)
    let id = agent.submit(json!({"run": "sleep 1.5"}));
    let j = agent.wait_job(id, 30);
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(j[k].as_str().unwrap()).unwrap();
    let (started, ended) = (t("started_at"), t("ended_at"));
    let after_job = || {
        heartbeats(&reqs, "tok")
            .into_iter()
            .filter(|h| h.reason == skycat_protocol::HeartbeatReason::Autostop)
            .filter(|h| h.autostop.as_ref().unwrap().fired_at.unwrap() > ended)
            .collect::<Vec<_>>()
    };
    let hb = eventually(20, "the autostop heartbeat", || {
        after_job().into_iter().next()
    });
    let auto = hb.autostop.as_ref().unwrap();
    assert_eq!(auto.idle_limit_secs, 1.0);
    let fired = auto.fired_at.unwrap();
    assert!(
        fired.signed_duration_since(ended).num_milliseconds() >= 1000,
        "fired {fired} ended {ended}"
    );
    assert!(hb.idle_seconds >= 1.0);
    assert!(hb.jobs.iter().all(|j| j.state.is_terminal()));
    // The stop action ran (after the heartbeat was delivered).
    eventually(20, "the stop action", || flag.exists().then_some(()));
    // Never during the job; once per idle period.
    for h in heartbeats(&reqs, "tok")
        .iter()
        .filter(|h| h.reason == skycat_protocol::HeartbeatReason::Autostop)
    {
        let f = h.autostop.as_ref().unwrap().fired_at.unwrap();
        assert!(
            f < started || f > ended,
            "autostop fired during the job at {f}"
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(after_job().len(), 1);
}

#[test]
fn interruption_notice_is_reported_at_once_and_jobs_get_sigterm() {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let server = heartbeat_server(0, "tok", reqs.clone());
    let notice_on = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on = notice_on.clone();
    let metadata = Server::start(
        0,
        Arc::new(move |r: &Req| {
            assert_eq!(r.path, "/latest/meta-data/spot/instance-action");
            if on.load(std::sync::atomic::Ordering::SeqCst) {
                (
                    200,
                    r#"{"action":"terminate","time":"2026-11-28T18:00:00Z"}"#.into(),
                )
            } else {
                (404, "".into())
            }
        }),
    );
    let mut cfg = base_config();
    cfg["server_url"] = json!(server.url());
    cfg["token"] = json!("tok");
    cfg["heartbeat_interval_secs"] = json!(30.0); // only the immediate heartbeat can carry it
    cfg["metadata_url"] = json!(format!(
        "{}/latest/meta-data/spot/instance-action",
        metadata.url()
    ));
    cfg["metadata_poll_secs"] = json!(0.1);
    cfg["termination_grace_secs"] = json!(10.0);
    let agent = Agent::new(cfg);
    agent.start();
    let term = agent.path().join("term");
    let id = agent.submit(json!({"gpus": 2, "run": format!("trap 'echo got SIGTERM; echo saved > {}; exit 0' TERM; echo started; while true; do sleep 0.05; done", term.display())}));
    let pending = agent.submit(json!({"gpus": 2, "run": "echo should-not-run"}));
    let _ = pending;
    eventually(20, "job running", || {
        (agent.job(id)["state"] == "RUNNING").then_some(())
    });
    eventually(20, "metadata polled", || {
        (metadata.requests().len() >= 2).then_some(())
    });
    notice_on.store(true, std::sync::atomic::Ordering::SeqCst);
    let hb = eventually(10, "the interruption heartbeat", || {
        heartbeats(&reqs, "tok")
            .into_iter()
            .find(|h| h.reason == skycat_protocol::HeartbeatReason::Interruption)
    });
    let n = hb.interruption.as_ref().unwrap();
    assert_eq!(n.action, "terminate");
    assert_eq!(n.time.as_deref(), Some("2026-11-28T18:00:00Z"));
    let j = agent.wait_job(id, 30);
    assert_eq!(j["state"], "INTERRUPTED", "{j}");
    assert_eq!(j["exit_code"], 0);
    assert!(term.exists(), "the job's TERM handler ran (checkpoint)");
    let log = String::from_utf8(agent.cmd(&["logs", &id.to_string()], None).stdout).unwrap();
    assert!(log.contains("got SIGTERM"), "{log}");
    // The pending job is not started on a node about to go away.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.job(pending)["state"], "PENDING");
    assert!(agent.status()["interruption"]["action"] == "terminate");
}

#[test]
fn sigterm_ignoring_job_is_killed_after_the_grace_period() {
    let preempted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p2 = preempted.clone();
    let metadata = Server::start(
        0,
        Arc::new(move |_r: &Req| {
            let on = p2.load(std::sync::atomic::Ordering::SeqCst);
            (200, if on { "TRUE" } else { "FALSE" }.into())
        }),
    );
    let mut cfg = base_config();
    cfg["metadata_url"] = json!(format!(
        "{}/computeMetadata/v1/instance/preempted",
        metadata.url()
    ));
    cfg["metadata_poll_secs"] = json!(0.5);
    cfg["termination_grace_secs"] = json!(1.0);
    let agent = Agent::new(cfg);
    agent.start();
    let id = agent.submit(json!({"run": "trap '' TERM; while true; do sleep 0.05; done"}));
    eventually(20, "job running", || {
        (agent.job(id)["state"] == "RUNNING").then_some(())
    });
    preempted.store(true, std::sync::atomic::Ordering::SeqCst);
    let j = agent.wait_job(id, 30);
    assert_eq!(j["state"], "INTERRUPTED", "{j}");
    assert_eq!(agent.status()["interruption"]["action"], "preempted");
    let r = &metadata.requests()[0];
    assert_eq!(r.header("metadata-flavor"), Some("Google"));
}

#[test]
fn out_of_range_timer_settings_are_refused_naming_the_field_without_panicking() {
    for (field, value) in [
        ("heartbeat_interval_secs", json!(1e20)),
        ("heartbeat_interval_secs", json!(1.7e308)),
        ("heartbeat_interval_secs", json!(604_801)),
        ("metadata_poll_secs", json!(1e20)),
        ("termination_grace_secs", json!(1e20)),
        ("idle_seconds", json!(1e20)),
    ] {
        let mut cfg = base_config();
        cfg[field] = value.clone();
        let agent = Agent::new(cfg);
        let out = agent.cmd(&["daemon", "--detach"], None);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{field}={value}: {err}");
        assert!(
            err.contains(&format!("field `{field}`")) && err.contains("at most"),
            "{field}={value}: {err}"
        );
        assert!(err.contains("config.json"), "names the file: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            agent.daemon_pid().is_none(),
            "{field}={value}: no daemon started"
        );
    }

    // The longest allowed interval runs (the clock arithmetic does not overflow), and waits
    // with a huge or infinite --timeout work; a negative one is refused by the parser.
    let mut cfg = base_config();
    cfg["heartbeat_interval_secs"] = json!(604_800);
    cfg["termination_grace_secs"] = json!(604_800);
    let agent = Agent::new(cfg);
    agent.start();
    let id = agent.submit(json!({"run": "true"}));
    for timeout in ["1e20", "inf"] {
        let j = agent.json(&["wait", &id.to_string(), "--timeout", timeout], None);
        assert_eq!(j["state"], "SUCCEEDED", "{timeout}: {j}");
    }
    let out = agent.cmd(&["wait", &id.to_string(), "--timeout=-1"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--timeout") && err.contains(">= 0") && !err.contains("panicked"),
        "{err}"
    );
}
