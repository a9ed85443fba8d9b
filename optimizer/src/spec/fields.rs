//! What skycat does with each field of SkyPilot's task schema: the field table
//! (`docs/skypilot-fields.md`) and the launch-time verdict on a task's fields.

use super::*;

/// What skycat does with a field of SkyPilot's task schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldStatus {
    /// Honoured.
    Implemented,
    /// A launch stops with one line naming the field and what to do instead.
    Refused,
    /// Informational only: accepted, with a warning that skycat ignores it.
    Warned,
}

impl fmt::Display for FieldStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldStatus::Implemented => "implemented",
            FieldStatus::Refused => "refused",
            FieldStatus::Warned => "warned",
        })
    }
}

/// One row of the field table (`docs/skypilot-fields.md`): a field (or a field with a kind of
/// value), an example task using it, what skycat does, and a note.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FieldRow {
    pub field: &'static str,
    pub example: &'static str,
    pub status: FieldStatus,
    pub note: &'static str,
}

const fn row(field: &'static str, example: &'static str, status: FieldStatus, note: &'static str) -> FieldRow {
    FieldRow { field, example, status, note }
}

use FieldStatus::{Implemented as I, Refused as R, Warned as W};

/// SkyPilot 0.14.1's task schema (`sky/utils/schemas.py`: `get_task_schema`,
/// `get_resources_schema`), field by field. Fields outside it are refused as unknown.
pub const FIELDS: &[FieldRow] = &[
    row("name", "name: train\n", I, "cluster/job name default; shown in plans"),
    row("workdir", "workdir: .\n", I, "a local folder, relative to the YAML; uploaded to every node, where setup and run start in it; `${VAR}`/`$VAR` from envs substituted"),
    row("workdir: {url, ref}", "workdir:\n  url: https://github.com/org/repo\n  ref: main\n", R, "git workdirs: clone the repository in `setup`, or check it out locally and give the folder"),
    row("num_nodes", "num_nodes: 2\n", I, "nodes per cluster; placement prices all of them"),
    row("resources", "resources:\n  cpus: 4+\n", I, "per field below; also inside every `any_of`/`ordered` entry"),
    row("envs", "envs:\n  MODEL: llama\n", I, "exported to setup and run; a null value must be given with `-e KEY=VALUE` (or `--env-file`, `--secret`), else the launch stops naming the key"),
    row("secrets", "secrets:\n  HF_TOKEN: null\n", I, "envs redacted everywhere (state, logs, `skycat status`); a null value must come from `--secret KEY=VALUE` or `--secret KEY` (taken from this environment)"),
    row("secrets: [list]", "secrets:\n  - secrets:HF_TOKEN\n", R, "the list form names SkyPilot-managed secrets, which skycat has none of: write `secrets: {HF_TOKEN: null}` and pass `--secret HF_TOKEN`"),
    row("managed_secrets", "managed_secrets:\n  - HF_TOKEN\n", R, "SkyPilot-managed secrets: write `secrets: {HF_TOKEN: null}` and pass `--secret HF_TOKEN`"),
    row("setup", "setup: pip install -r requirements.txt\n", I, "runs once per node before `run`"),
    row("run", "run: python train.py\n", I, "runs on every node with SkyPilot's env names (`SKYPILOT_NODE_RANK`, …)"),
    row("file_mounts", "file_mounts:\n  /data: ./data\n", I, "local files and folders (packed where the CLI runs; `jobs launch` uploads them), bucket prefixes (`s3://`, `gs://`, `r2://`, Azure `https://ACCOUNT.blob.core.windows.net/CONTAINER`) copied (`COPY`) or mounted with rclone (`MOUNT`, `MOUNT_CACHED`) by the node's agent with this machine's credentials passed as secrets; storage objects with `name:` (+ `store`, local `source` or a list, `persistent`, `mode`) are made in the cluster's cloud's store and region, filled from this machine, listed by `skycat storage ls`, deleted by `skycat storage delete` or, with `persistent: false`, by `skycat down` (refused for managed jobs); a bucket source's region and size are looked up for the plan's egress; `${VAR}`/`$VAR` from envs substituted in keys, values and bucket names"),
    row("file_mounts_mapping", "file_mounts_mapping:\n  /a: /b\n", R, "internal to SkyPilot (written by `sky jobs launch`): remove it"),
    row("inputs", "inputs:\n  s3://bucket/data: 100\n", I, "data location and size (GB), charged as egress to each candidate region in single-task and DAG plans"),
    row("outputs", "outputs:\n  s3://bucket/out: 10\n", I, "output size (GB) for the egress terms of DAG plans"),
    row("service", "service:\n  readiness_probe: /health\n  replicas: 2\n", R, "SkyServe is not supported: serve from `run`, open `resources.ports` and `skycat launch` it"),
    row("pool", "pool:\n  workers: 2\n", R, "SkyPilot worker pools are not supported: launch a cluster and submit jobs with `skycat exec`"),
    row("config", "config:\n  docker:\n    run_options: [--ipc=host]\n", R, "per-task SkyPilot config is not supported: remove it (skycat's own settings live in `$SKYCAT_HOME/config.yaml`)"),
    row("event_callback", "event_callback: echo done\n", R, "not supported: run the command at the end of `run`"),
    row("volumes", "volumes:\n  /mnt/data: my-volume\n", R, "SkyPilot volumes are not supported: use `file_mounts` (a bucket or a local folder)"),
    row("volume_mounts", "volume_mounts:\n  - path: /mnt\n    volume_name: v\n", R, "internal to SkyPilot: use `file_mounts`"),
    row("api_server_access: false", "api_server_access: false\n", I, "jobs get no API server credentials, as asked"),
    row("api_server_access: true", "api_server_access: true\n", R, "skycat gives jobs no API server credentials: remove it, or pass a token with `--secret`"),
    row("_metadata", "_metadata:\n  git_commit: abc\n", W, "SkyPilot's bookkeeping: ignored"),
    row("resources.cloud / region / zone", "resources:\n  cloud: aws\n  region: us-east-1\n", I, "placement filters; `infra` is the newer spelling"),
    row("resources.infra", "resources:\n  infra: aws/us-east-1\n", I, "`cloud[/region[/zone]]`, `*` wildcards, `k8s[/context]`, `ssh[/pool]`"),
    row("resources.accelerators", "resources:\n  accelerators: A100:8\n", I, "`A100:8`, `{A100: 8}`, a set (cheapest) or a list (in order); names through the accelerator registry"),
    row("resources.gpus", "resources:\n  gpus: H100:8\n", I, "SkyPilot's alias of `accelerators` (both at once is an error naming the field)"),
    row("resources.accelerator_args", "resources:\n  accelerators: tpu-v4-8\n  accelerator_args:\n    runtime_version: tpu-vm-base\n", R, "TPU VM options: skycat launches no TPU VMs; remove it (`skycat optimize` still prices TPUs)"),
    row("resources.cpus", "resources:\n  cpus: 8+\n", I, "`N` exactly or `N+`; without it each cloud's default shape applies (docs/skypilot-compare.md)"),
    row("resources.memory", "resources:\n  memory: 32+\n", I, "GiB, `N`, `N+`, with units (`64GB+`); without it each cloud's default ratio applies"),
    row("resources.instance_type", "resources:\n  instance_type: p3.2xlarge\n", I, "an exact type"),
    row("resources.use_spot", "resources:\n  use_spot: true\n", I, "spot prices and spot capacity"),
    row("resources.job_recovery", "resources:\n  job_recovery:\n    strategy: FAILOVER\n    max_restarts_on_errors: 3\n", I, "managed jobs (`skycat jobs launch`); `launch` ignores it, as SkyPilot does"),
    row("resources.spot_recovery", "resources:\n  spot_recovery: FAILOVER\n", I, "older name of `job_recovery`"),
    row("resources.disk_size", "resources:\n  disk_size: 256\n", I, "root disk GB (`256`, `1TB`)"),
    row("resources.ephemeral_storage", "resources:\n  ephemeral_storage: 100\n", I, "deprecated SkyPilot alias: used as `disk_size` when that is not given"),
    row("resources.disk_tier: medium", "resources:\n  disk_tier: medium\n", I, "the default tier skycat provisions (gp3 on AWS)"),
    row("resources.disk_tier: best", "resources:\n  disk_tier: best\n", W, "\"best available\": skycat provisions the default tier (medium)"),
    row("resources.disk_tier: low / high / ultra", "resources:\n  disk_tier: high\n", R, "only the default tier is provisioned: use `medium` (or `best`), or remove it"),
    row("resources.network_tier: standard", "resources:\n  network_tier: standard\n", I, "the default networking"),
    row("resources.network_tier: best", "resources:\n  network_tier: best\n", W, "\"best available\": skycat provisions standard networking (no GPUDirect/InfiniBand setup)"),
    row("resources.local_disk", "resources:\n  local_disk: nvme:500\n", R, "local NVMe requests are not supported: pick an instance type that has it with `instance_type`"),
    row("resources.max_hourly_cost", "resources:\n  max_hourly_cost: 5\n", I, "offers above it per node (at your effective price, config.yaml `prices:`) are excluded; `--max-hourly-cost` sets it; an infeasible plan names the cheapest price available"),
    row("resources.ports", "resources:\n  ports: [8888, 10020-10040]\n", I, "opened on the cluster (security group on AWS); `skycat status --endpoints`"),
    row("resources.labels", "resources:\n  labels:\n    team: ml\n", W, "not applied to instances: skycat tags them with its own cluster tags"),
    row("resources.image_id", "resources:\n  image_id: ami-0123456789abcdef0\n", I, "a VM image id, or a map of region to image id"),
    row("resources.image_id: docker:…", "resources:\n  image_id: docker:nvidia/cuda:12.4.0-runtime-ubuntu22.04\n", R, "container images are not supported: install what you need in `setup`, or give a VM image id"),
    row("resources.autostop", "resources:\n  autostop:\n    idle_minutes: 10\n    down: true\n", I, "`false`, minutes (`10`, `\"2h\"`), `true` (5 min) or `{idle_minutes, down}`; `-i`/`--down` win"),
    row("resources.autostop.wait_for / hook", "resources:\n  autostop:\n    idle_minutes: 10\n    wait_for: jobs\n", R, "autostop hooks and wait modes are not supported: use `idle_minutes` and `down` only"),
    row("resources.priority / priority_class", "resources:\n  priority: 10\n", W, "skycat runs jobs in submission order: ignored"),
    row("resources.volumes", "resources:\n  volumes:\n    - path: /mnt/disk\n      disk_size: 100\n", R, "extra disks are not supported: raise `disk_size`"),
    row("resources._no_missing_accel_warnings", "resources:\n  _no_missing_accel_warnings: true\n", W, "SkyPilot-internal switch: ignored"),
    row("resources.any_of / ordered", "resources:\n  any_of:\n    - accelerators: A100:1\n    - accelerators: V100:1\n", I, "cheapest of the alternatives / first feasible in order"),
    row("resources._docker_login_config, _is_image_managed, _requires_fuse, _cluster_config_overrides", "resources:\n  _docker_login_config:\n    username: u\n", R, "internal to SkyPilot: refused as unknown fields, naming them"),
    row("any other field", "resource:\n  cpus: 4\n", R, "unknown field, named with its line"),
];

/// A launch-time verdict on the fields a task uses: what stops it, and what is ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldReport {
    pub refused: Vec<TaskError>,
    pub warnings: Vec<TaskError>,
}

/// `resources.autostop`, as a launch applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autostop {
    /// Idle minutes before the cluster stops; `None`: autostop off.
    pub idle_minutes: Option<f64>,
    /// Tear the cluster down instead of stopping it.
    pub down: bool,
}

/// SkyPilot's idle minutes for `autostop: true` or a map without `idle_minutes`.
pub const DEFAULT_AUTOSTOP_MINUTES: f64 = 5.0;

/// `10`, `"10m"`, `"2h"`, `"1d"`, `"1w"` as minutes.
fn parse_minutes(raw: &str) -> Option<f64> {
    let t = raw.trim().to_ascii_lowercase();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'm')) => (&t[..i], 1.0),
        Some((i, 'h')) => (&t[..i], 60.0),
        Some((i, 'd')) => (&t[..i], 1440.0),
        Some((i, 'w')) => (&t[..i], 10080.0),
        _ => (t.as_str(), 1.0),
    };
    let v: u64 = num.trim().parse().ok()?;
    Some(v as f64 * mult)
}

impl ResourcesSpec {
    /// `autostop:` as a launch applies it (`None`: not given).
    pub fn autostop_setting(&self) -> Result<Option<Autostop>, TaskError> {
        let bad = |m: &str| TaskError::new("resources.autostop", m.to_string());
        let Some(v) = &self.autostop else { return Ok(None) };
        let a = match v {
            Value::Null => return Ok(None),
            Value::Bool(false) => Autostop { idle_minutes: None, down: false },
            Value::Bool(true) => Autostop { idle_minutes: Some(DEFAULT_AUTOSTOP_MINUTES), down: false },
            Value::Number(n) => match n.as_u64() {
                Some(m) => Autostop { idle_minutes: Some(m as f64), down: false },
                None => return Err(bad("must be a non-negative whole number of minutes")),
            },
            Value::String(s) => match parse_minutes(s) {
                Some(m) => Autostop { idle_minutes: Some(m), down: false },
                None => return Err(bad(&format!("`{s}` is not a time like `10`, `10m`, `2h`"))),
            },
            Value::Object(m) => {
                let mut a = Autostop { idle_minutes: Some(DEFAULT_AUTOSTOP_MINUTES), down: false };
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("idle_minutes", Value::Number(n)) if n.as_u64().is_some() => {
                            a.idle_minutes = n.as_u64().map(|x| x as f64)
                        }
                        ("idle_minutes", _) => return Err(TaskError::new("resources.autostop.idle_minutes", "must be a non-negative whole number")),
                        ("down", Value::Bool(b)) => a.down = *b,
                        ("down", _) => return Err(TaskError::new("resources.autostop.down", "must be true or false")),
                        ("wait_for" | "hook" | "hook_timeout", _) => {
                            return Err(TaskError::new(
                                format!("resources.autostop.{k}"),
                                "autostop hooks and wait modes are not supported: use `idle_minutes` and `down` only",
                            ))
                        }
                        _ => return Err(TaskError::new(format!("resources.autostop.{k}"), "unknown field: use `idle_minutes` and `down`")),
                    }
                }
                a
            }
            Value::Array(_) => return Err(bad("must be false, minutes, or {idle_minutes, down}")),
        };
        Ok(Some(a))
    }

    fn field_report(&self, path: &str, out: &mut FieldReport) {
        let refuse = |out: &mut FieldReport, f: &str, m: &str| out.refused.push(TaskError::new(format!("{path}.{f}"), m));
        let warn = |out: &mut FieldReport, f: &str, m: &str| out.warnings.push(TaskError::new(format!("{path}.{f}"), m));
        if self.accelerator_args.as_ref().is_some_and(|v| !v.is_null()) {
            refuse(out, "accelerator_args", "TPU VM options are not supported (skycat launches no TPU VMs): remove it");
        }
        if let Some(t) = &self.disk_tier {
            match t.trim().to_ascii_lowercase().as_str() {
                "medium" => {}
                "best" => warn(out, "disk_tier", "`best`: skycat provisions the default disk tier (medium)"),
                _ => refuse(out, "disk_tier", &format!("`{t}`: only the default tier is provisioned; use `medium` (or `best`), or remove it")),
            }
        }
        if let Some(t) = &self.network_tier {
            match t.trim().to_ascii_lowercase().as_str() {
                "standard" => {}
                "best" => warn(out, "network_tier", "`best`: skycat provisions standard networking (no GPUDirect/InfiniBand setup)"),
                _ => refuse(out, "network_tier", &format!("`{t}` is not `standard` or `best`")),
            }
        }
        if self.local_disk.is_some() {
            refuse(out, "local_disk", "local NVMe requests are not supported: choose an instance type that has it with `instance_type`");
        }
        if self.labels.as_ref().is_some_and(|l| !l.is_empty()) {
            warn(out, "labels", "not applied to instances (skycat tags them with its own cluster tags)");
        }
        if let Some(Value::String(img)) = &self.image_id {
            if img.trim_start().starts_with("docker:") {
                refuse(out, "image_id", "container images (`docker:`) are not supported: install what you need in `setup`, or give a VM image id");
            }
        }
        if let Err(e) = self.autostop_setting() {
            let field = e.field.replacen("resources", path, 1);
            out.refused.push(TaskError { field, ..e });
        }
        if self.priority.is_some() {
            warn(out, "priority", "skycat runs jobs in submission order: ignored");
        }
        if self.priority_class.is_some() {
            warn(out, "priority_class", "skycat runs jobs in submission order: ignored");
        }
        if self.volumes.as_ref().is_some_and(|v| !v.is_null()) {
            refuse(out, "volumes", "extra disks are not supported: raise `disk_size`");
        }
        if self.no_missing_accel_warnings.is_some() {
            warn(out, "_no_missing_accel_warnings", "SkyPilot-internal switch: ignored");
        }
    }
}

fn is_set(v: &Option<Value>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_null())
}

impl TaskSpec {
    /// What a launch does with the fields this task uses ([`FIELDS`]): the ones it refuses
    /// (each one line naming the field and what to do instead) and the ones it ignores with a
    /// warning. Implemented fields are in neither list.
    pub fn field_report(&self) -> FieldReport {
        let mut out = FieldReport::default();
        let mut refuse = |f: &str, m: &str| out.refused.push(TaskError::new(f, m));
        if matches!(&self.workdir, Some(Value::Object(_))) {
            refuse("workdir", "git repositories (`url`, `ref`) are not supported: clone it in `setup`, or give a local folder");
        } else if self.workdir.as_ref().is_some_and(|w| !w.is_string() && !w.is_null()) {
            refuse("workdir", "must be a local folder path");
        }
        match &self.secrets {
            Some(Value::Array(_)) => refuse(
                "secrets",
                "the list form names SkyPilot-managed secrets, which skycat has none of: write `secrets: {NAME: null}` and pass `--secret NAME`",
            ),
            Some(Value::Object(m)) => {
                if let Some(k) = m.keys().find(|k| k.starts_with("secrets:")) {
                    let name = k.trim_start_matches("secrets:");
                    refuse(
                        &format!("secrets.{k}"),
                        &format!("`secrets:` references name SkyPilot-managed secrets: write `{name}: null` and pass `--secret {name}`"),
                    );
                }
            }
            _ => {}
        }
        if is_set(&self.managed_secrets) {
            refuse("managed_secrets", "SkyPilot-managed secrets are not supported: list them under `secrets:` with a null value and pass `--secret NAME`");
        }
        if is_set(&self.file_mounts_mapping) {
            refuse("file_mounts_mapping", "internal to SkyPilot (written by `sky jobs launch`): remove it");
        }
        if is_set(&self.service) {
            refuse("service", "SkyServe is not supported: serve from `run`, open `resources.ports` and `skycat launch` it");
        }
        if is_set(&self.pool) {
            refuse("pool", "SkyPilot worker pools are not supported: launch a cluster and submit jobs with `skycat exec`");
        }
        if self.config.as_ref().is_some_and(|c| !c.is_null() && c.as_object().is_none_or(|m| !m.is_empty())) {
            refuse("config", "per-task SkyPilot config is not supported: remove it (skycat's settings live in $SKYCAT_HOME/config.yaml)");
        }
        if self.event_callback.is_some() {
            refuse("event_callback", "not supported: run the command at the end of `run`");
        }
        if is_set(&self.volumes) {
            refuse("volumes", "SkyPilot volumes are not supported: use `file_mounts` (a bucket or a local folder)");
        }
        if is_set(&self.volume_mounts) {
            refuse("volume_mounts", "internal to SkyPilot: use `file_mounts`");
        }
        if self.api_server_access == Some(true) {
            refuse("api_server_access", "skycat gives jobs no API server credentials: remove it, or pass a token with `--secret`");
        }
        if is_set(&self.metadata) {
            out.warnings.push(TaskError::new("_metadata", "SkyPilot's bookkeeping: ignored"));
        }
        if let Some(r) = &self.resources {
            r.field_report("resources", &mut out);
            for (key, alts) in [("any_of", &r.any_of), ("ordered", &r.ordered)] {
                for (i, a) in alts.iter().flatten().enumerate() {
                    a.field_report(&format!("resources.{key}[{i}]"), &mut out);
                }
            }
        }
        out
    }
}
