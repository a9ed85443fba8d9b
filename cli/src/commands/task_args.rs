//! The task flags `sky launch` has, shared by `launch`, `jobs launch` and `gpunode`: they win
//! over the task YAML (`--gpus A100:8`, `--cpus 8+`, `--memory 32+`, `--use-spot`, `--infra`,
//! `--ports`, `--num-nodes`, `--disk-size`, `--image-id`, `-e KEY=VAL`, `--env-file`,
//! `--secret KEY[=VAL]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use skycat_controller::lifecycle::TaskRun;
use skycat_optimizer::{ResourcesSpec, TaskSpec};

#[derive(Args, Clone, Debug, Default)]
pub struct ResourceFlags {
    /// Accelerators per node, e.g. `A100:8` or `{A100:8, H100:8}` (wins over the YAML).
    #[arg(long)]
    pub gpus: Option<String>,
    /// vCPUs per node: `8` exactly or `8+` at least.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Memory per node in GiB: `32` or `32+`.
    #[arg(long)]
    pub memory: Option<String>,
    /// Use spot instances (or spot pools).
    #[arg(long)]
    pub use_spot: bool,
    /// Where: `aws`, `aws/us-east-1`, `aws/us-east-1/us-east-1a`, `ssh/POOL`.
    #[arg(long)]
    pub infra: Option<String>,
    /// Ports to open, a port or a range; repeatable: `--ports 8888 --ports 10020-10040`.
    #[arg(long = "ports")]
    pub ports: Vec<String>,
    /// Number of nodes.
    #[arg(long)]
    pub num_nodes: Option<u32>,
    /// Root disk size in GB.
    #[arg(long)]
    pub disk_size: Option<u32>,
    /// Image to boot (an AMI id on AWS).
    #[arg(long)]
    pub image_id: Option<String>,
    /// Env for the task, KEY=VALUE (or KEY to take it from this environment); repeatable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// A file of KEY=VALUE lines (dotenv style).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// A secret env, KEY=VALUE or KEY (from this environment); redacted everywhere.
    #[arg(long = "secret")]
    pub secret: Vec<String>,
    /// Price cap, USD per hour per node (`resources.max_hourly_cost`, at the effective price):
    /// dearer offers are left out.
    #[arg(long, value_parser = parse_max_hourly_cost)]
    pub max_hourly_cost: Option<f64>,
}

/// `--max-hourly-cost`: a positive USD per hour.
pub fn parse_max_hourly_cost(raw: &str) -> std::result::Result<f64, String> {
    match raw.trim().trim_start_matches('$').parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{raw:?} is not a positive USD per hour")),
    }
}

/// Sets `resources.max_hourly_cost` on the task's base resources and on every `any_of`/`ordered`
/// entry, so that the cap holds whatever the YAML says.
pub fn set_max_hourly_cost(spec: &mut TaskSpec, cap: f64) {
    let res = spec.resources.get_or_insert_with(ResourcesSpec::default);
    res.max_hourly_cost = Some(cap);
    for e in res.any_of.iter_mut().flatten().chain(res.ordered.iter_mut().flatten()) {
        e.max_hourly_cost = Some(cap);
    }
}

/// `KEY=VALUE`, or `KEY` taken from this process's environment.
fn parse_kv(flag: &str, a: &str) -> Result<(String, String)> {
    let (k, v) = match a.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => {
            let v = std::env::var(a).map_err(|_| anyhow!("{flag} {a:?}: expected KEY=VALUE, or KEY set in this environment"))?;
            (a.to_string(), v)
        }
    };
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("{flag} {a:?}: {k:?} is not an environment variable name");
    }
    Ok((k, v))
}

/// KEY=VALUE lines; `#` comments, blank lines and an `export ` prefix are allowed; values may be
/// quoted.
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --env-file {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow!("{} line {}: expected KEY=VALUE", path.display(), i + 1))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        let (k, v) = parse_kv("--env-file", &format!("{}={v}", k.trim())).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        out.insert(k, v);
    }
    Ok(out)
}

fn yaml<T: serde::de::DeserializeOwned>(flag: &str, raw: &str) -> Result<T> {
    serde_yaml::from_value(serde_yaml::Value::String(raw.to_string())).map_err(|e| anyhow!("{flag} {raw:?}: {e}"))
}

impl ResourceFlags {
    /// Applies the flags to the task (to its base resources and to every `any_of`/`ordered`
    /// entry, so a flag wins everywhere).
    pub fn apply(&self, spec: &mut TaskSpec) -> Result<()> {
        let accelerators = match &self.gpus {
            Some(g) => Some(skycat_optimizer::AcceleratorsSpec::parse_str(g).map_err(|e| anyhow!("--gpus {g:?}: {e}"))?),
            None => None,
        };
        let cpus = self.cpus.as_deref().map(|c| yaml("--cpus", c)).transpose()?;
        let memory = self.memory.as_deref().map(|m| yaml("--memory", m)).transpose()?;
        let infra = match &self.infra {
            Some(i) => {
                skycat_optimizer::spec::parse_infra(i).map_err(|e| anyhow!("--infra {i:?}: {e}"))?;
                Some(i.clone())
            }
            None => None,
        };
        let ports = if self.ports.is_empty() {
            None
        } else {
            skycat_controller::backend::parse_ports(&self.ports).map_err(|e| anyhow!("--ports: {e}"))?;
            Some(skycat_optimizer::spec::Ports(self.ports.clone()))
        };
        let set = |r: &mut ResourcesSpec| {
            if let Some(a) = &accelerators {
                r.accelerators = Some(a.clone());
            }
            if cpus.is_some() {
                r.cpus = cpus;
            }
            if memory.is_some() {
                r.memory = memory;
            }
            if self.use_spot {
                r.use_spot = Some(true);
            }
            if let Some(i) = &infra {
                r.infra = Some(i.clone());
                r.cloud = None;
                r.region = None;
                r.zone = None;
            }
            if let Some(p) = &ports {
                r.ports = Some(p.clone());
            }
            if let Some(d) = self.disk_size {
                r.disk_size = Some(skycat_optimizer::spec::DiskSize(d as f64));
            }
            if let Some(img) = &self.image_id {
                r.image_id = Some(serde_json::Value::String(img.clone()));
            }
        };
        let res = spec.resources.get_or_insert_with(ResourcesSpec::default);
        set(res);
        for e in res.any_of.iter_mut().flatten().chain(res.ordered.iter_mut().flatten()) {
            set(e);
        }
        if let Some(cap) = self.max_hourly_cost {
            set_max_hourly_cost(spec, cap);
        }
        if let Some(n) = self.num_nodes {
            if n == 0 {
                bail!("--num-nodes must be at least 1");
            }
            spec.num_nodes = Some(n);
        }
        Ok(())
    }

    /// Envs from `-e`, `--env-file` and `--secret`, in that order of increasing precedence over
    /// the YAML's; secret names are returned so they are redacted even if not named like one.
    pub fn envs(&self) -> Result<(BTreeMap<String, String>, Vec<String>)> {
        let mut out = BTreeMap::new();
        if let Some(f) = &self.env_file {
            out.extend(parse_env_file(f)?);
        }
        for a in &self.env {
            let (k, v) = parse_kv("-e", a)?;
            out.insert(k, v);
        }
        let mut secrets = Vec::new();
        for a in &self.secret {
            let (k, v) = parse_kv("--secret", a)?;
            secrets.push(k.clone());
            out.insert(k, v);
        }
        Ok((out, secrets))
    }
}

/// A task YAML (or an empty task for flag-only commands like `gpunode`) with the flags applied:
/// (what to run, the spec to plan).
pub fn load_task(path: Option<&Path>, flags: &ResourceFlags) -> Result<(TaskRun, TaskSpec)> {
    let mut spec = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading task {}", p.display()))?;
            skycat_optimizer::parse_task_yaml(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => skycat_optimizer::parse_task_yaml("{}").map_err(|e| anyhow!("empty task: {e}"))?,
    };
    flags.apply(&mut spec)?;
    let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| "task".into());
    // Every SkyPilot field is honoured, refused in one line, or ignored with a warning
    // (docs/skypilot-fields.md).
    let report = spec.field_report();
    if let Some(first) = report.refused.first() {
        let more = match report.refused.len() {
            1 => String::new(),
            n => format!(
                " (and {} more: {})",
                n - 1,
                report.refused[1..].iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        bail!("{shown}: {first}{more}");
    }
    for w in &report.warnings {
        eprintln!("warning: {shown}: {w}");
    }
    if let Some(r) = spec.resources.as_mut() {
        // SkyPilot's deprecated alias.
        let alias = |r: &mut skycat_optimizer::ResourcesSpec| {
            if r.disk_size.is_none() {
                r.disk_size = r.ephemeral_storage;
            }
        };
        alias(r);
        r.any_of.iter_mut().flatten().chain(r.ordered.iter_mut().flatten()).for_each(alias);
    }
    // Envs; a null value is "supply it at launch".
    let mut envs = BTreeMap::new();
    let mut null_envs = Vec::new();
    for (k, v) in spec.envs.clone().unwrap_or_default() {
        match v.0 {
            Some(v) => {
                envs.insert(k, v);
            }
            None => null_envs.push(k),
        }
    }
    // The YAML's `secrets:` (SkyPilot's): envs whose values are never shown; a null value must
    // come from --secret.
    let mut secret_envs = Vec::new();
    let mut null_secrets = Vec::new();
    match &spec.secrets {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::Null => null_secrets.push(k.clone()),
                    serde_json::Value::String(s) => {
                        envs.insert(k.clone(), s.clone());
                    }
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                        envs.insert(k.clone(), v.to_string());
                    }
                    _ => bail!("{shown}: secrets.{k}: must be a string (or null, to pass it with --secret {k})"),
                }
                secret_envs.push(k.clone());
            }
        }
        Some(_) => bail!("{shown}: secrets: must be a mapping of NAME: value"),
    }
    let (flag_envs, flag_secrets) = flags.envs()?;
    envs.extend(flag_envs);
    for k in flag_secrets {
        if !secret_envs.contains(&k) {
            secret_envs.push(k);
        }
    }
    if let Some(k) = null_secrets.iter().find(|k| !envs.contains_key(*k)) {
        bail!("{shown}: secrets.{k} has no value; pass it with --secret {k}=VALUE (or --secret {k} to take it from this environment)");
    }
    if let Some(k) = null_envs.iter().find(|k| !envs.contains_key(*k)) {
        bail!("{shown}: envs.{k} has no value in the YAML; pass it with -e {k}=VALUE (or --env-file, or --secret {k}=VALUE)");
    }
    // SkyPilot substitutes ${VAR} / $VAR from the envs (and inline secrets) in workdir and
    // file_mounts (keys, values, bucket names).
    spec.fill_in_envs(&envs);
    let workdir = match &spec.workdir {
        None => None,
        Some(serde_json::Value::String(s)) => Some(match path.and_then(|p| p.parent()) {
            // A relative workdir is relative to the YAML, as in SkyPilot.
            Some(dir) if Path::new(s).is_relative() && !dir.as_os_str().is_empty() => dir.join(s),
            _ => PathBuf::from(s),
        }),
        Some(_) => bail!("{shown}: workdir: must be a local folder path"),
    };
    let gpus = spec
        .resources
        .as_ref()
        .and_then(|r| r.accelerators.as_ref())
        .and_then(|a| a.choices.first())
        .map(|c| c.count)
        .unwrap_or(0.0);
    // file_mounts: local sources relative to the YAML, as the workdir; buckets with this
    // machine's credentials for their stores (passed to the nodes as secrets).
    let home_dir = std::env::var_os("HOME").map(PathBuf::from);
    let base = path.and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty());
    let file_mounts = skycat_controller::mounts::parse(spec.file_mounts.as_ref().unwrap_or(&BTreeMap::new()), base, home_dir.as_deref())
        .map_err(|e| anyhow!("{shown}: {e}"))?;
    let storage_envs = skycat_controller::mounts::credentials_for(&file_mounts, |k| std::env::var(k).ok()).map_err(|e| anyhow!("{shown}: {e}"))?;
    let run = TaskRun {
        name: spec.name.clone(),
        num_nodes: spec.num_nodes.unwrap_or(1),
        setup: spec.setup.clone(),
        run: spec.run.clone(),
        envs,
        workdir,
        workdir_archive: None,
        gpus_per_node: gpus,
        secret_envs,
        file_mounts,
        storage_envs,
    };
    Ok((run, spec))
}

/// The autostop a launch applies: `-i`/`--down` win over the YAML's `resources.autostop`.
/// Returns (idle minutes, tear down instead of stop).
pub fn autostop(spec: &TaskSpec, flag_idle: Option<f64>, flag_down: bool) -> Result<(Option<f64>, bool)> {
    if flag_idle.is_some() {
        return Ok((flag_idle, flag_down));
    }
    let yaml = match &spec.resources {
        Some(r) => r.autostop_setting().map_err(|e| anyhow!("{e}"))?,
        None => None,
    };
    let idle = yaml.and_then(|a| a.idle_minutes);
    if flag_down && idle.is_none() {
        bail!("--down needs -i IDLE_MINUTES (autostop with teardown) or resources.autostop in the task");
    }
    Ok((idle, flag_down || (idle.is_some() && yaml.is_some_and(|a| a.down))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_yaml() {
        let mut spec = skycat_optimizer::parse_task_yaml(
            "resources:\n  accelerators: V100:1\n  cpus: 4+\nnum_nodes: 1\nrun: echo hi\n",
        )
        .unwrap();
        let f = ResourceFlags {
            gpus: Some("H100:8".into()),
            cpus: Some("8+".into()),
            memory: Some("32".into()),
            use_spot: true,
            infra: Some("aws/us-east-1".into()),
            ports: vec!["8888".into(), "10020-10040".into()],
            num_nodes: Some(2),
            disk_size: Some(256),
            image_id: Some("ami-1".into()),
            ..Default::default()
        };
        f.apply(&mut spec).unwrap();
        let r = spec.resources.as_ref().unwrap();
        assert_eq!(r.accelerators.as_ref().unwrap().choices[0].to_string(), "H100:8");
        assert_eq!(r.cpus.unwrap().to_string(), "8+");
        assert_eq!(r.memory.unwrap().to_string(), "32");
        assert_eq!((r.use_spot, r.infra.as_deref(), spec.num_nodes), (Some(true), Some("aws/us-east-1"), Some(2)));
        assert_eq!(r.ports.as_ref().unwrap().0, vec!["8888", "10020-10040"]);
        for bad in [
            ResourceFlags { gpus: Some("H100:x".into()), ..Default::default() },
            ResourceFlags { cpus: Some("many".into()), ..Default::default() },
            ResourceFlags { ports: vec!["0".into()], ..Default::default() },
            ResourceFlags { num_nodes: Some(0), ..Default::default() },
            ResourceFlags { infra: Some("a/b/c/d".into()), ..Default::default() },
        ] {
            assert!(bad.apply(&mut spec.clone()).is_err());
        }
    }

    #[test]
    fn envs_and_env_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        std::fs::write(&f, "# c\nexport A=1\nB=\"two words\"\n\nC='x'\n").unwrap();
        let flags = ResourceFlags {
            env: vec!["A=3".into()],
            env_file: Some(f.clone()),
            secret: vec!["HF=hf_x".into()],
            ..Default::default()
        };
        let (e, secrets) = flags.envs().unwrap();
        assert_eq!(e["A"], "3");
        assert_eq!(e["B"], "two words");
        assert_eq!(e["C"], "x");
        assert_eq!(e["HF"], "hf_x");
        assert_eq!(secrets, vec!["HF"]);
        std::fs::write(&f, "NOEQUALS\n").unwrap();
        assert!(parse_env_file(&f).unwrap_err().to_string().contains("line 1"));
        assert!(parse_kv("-e", "1BAD=x").is_err());
    }

    #[test]
    fn secrets_from_yaml_and_flags_are_redacted_in_the_stored_task() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("task.yaml");
        std::fs::write(&yaml, "run: echo hi\nenvs:\n  MODEL: llama\nsecrets:\n  WANDB_ENTITY: acme-team\n  HF_HUB: null\n").unwrap();
        // HF_HUB has no value in the YAML: --secret must give it.
        let err = load_task(Some(&yaml), &ResourceFlags::default()).unwrap_err().to_string();
        assert!(err.contains("HF_HUB") && err.contains("--secret"), "{err}");
        let flags = ResourceFlags { secret: vec!["HF_HUB=hub-value-42".into(), "PLAIN=plain-value-7".into()], ..Default::default() };
        let (run, _) = load_task(Some(&yaml), &flags).unwrap();
        assert_eq!(run.envs["HF_HUB"], "hub-value-42");
        assert_eq!(run.envs["WANDB_ENTITY"], "acme-team");
        let mut names = run.secret_envs.clone();
        names.sort();
        assert_eq!(names, vec!["HF_HUB", "PLAIN", "WANDB_ENTITY"]);
        let stored = run.redacted_json();
        for clear in ["hub-value-42", "plain-value-7", "acme-team"] {
            assert!(!stored.contains(clear), "{clear} in {stored}");
        }
        assert!(stored.contains("llama"), "{stored}");
        std::fs::write(&yaml, "run: echo hi\nsecrets: [A]\n").unwrap();
        assert!(load_task(Some(&yaml), &ResourceFlags::default()).unwrap_err().to_string().contains("secrets"));
    }

    #[test]
    fn null_envs_must_be_given_and_fields_are_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("task.yaml");
        std::fs::write(&yaml, "run: echo $HF_TOKEN\nenvs:\n  HF_TOKEN: null\n  SIZE: 7\n").unwrap();
        let err = load_task(Some(&yaml), &ResourceFlags::default()).unwrap_err().to_string();
        assert!(err.contains("envs.HF_TOKEN") && err.contains("-e HF_TOKEN=VALUE"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // An empty value is a value, as in SkyPilot.
        let flags = ResourceFlags { env: vec!["HF_TOKEN=".into()], ..Default::default() };
        let (run, _) = load_task(Some(&yaml), &flags).unwrap();
        assert_eq!(run.envs["HF_TOKEN"], "");
        // Refused fields: one line naming the field and what to do instead.
        std::fs::write(&yaml, "run: x\nservice:\n  replicas: 2\nresources:\n  disk_tier: ultra\n").unwrap();
        let err = load_task(Some(&yaml), &ResourceFlags::default()).unwrap_err().to_string();
        assert!(err.contains("service: SkyServe is not supported") && err.contains("and 1 more: resources.disk_tier"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // Warned fields launch.
        std::fs::write(&yaml, "run: x\nresources:\n  disk_tier: best\n  labels:\n    team: ml\n  ephemeral_storage: 100\n").unwrap();
        let (_, spec) = load_task(Some(&yaml), &ResourceFlags::default()).unwrap();
        assert_eq!(spec.resources.unwrap().disk_size, Some(skycat_optimizer::spec::DiskSize(100.0)), "ephemeral_storage is disk_size");
    }

    #[test]
    fn envs_are_substituted_in_workdir_and_file_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("task.yaml");
        std::fs::write(
            &yaml,
            "run: x\nworkdir: src-${SIZE}\nenvs:\n  SIZE: 7\n  BUCKET: null\nfile_mounts:\n  /data/llama-${SIZE}b: s3://$BUCKET/llama-${SIZE}b\n",
        )
        .unwrap();
        let flags = ResourceFlags { env: vec!["BUCKET=weights".into(), "SIZE=13".into()], ..Default::default() };
        let (run, spec) = load_task(Some(&yaml), &flags).unwrap();
        assert_eq!(run.workdir.as_deref(), Some(dir.path().join("src-13").as_path()));
        assert_eq!(spec.file_mounts.unwrap()["/data/llama-13b"], "s3://weights/llama-13b");
    }

    #[test]
    fn autostop_from_the_yaml_unless_flags_say_otherwise() {
        let spec = |y: &str| skycat_optimizer::parse_task_yaml(y).unwrap();
        let t = spec("resources:\n  autostop:\n    idle_minutes: 10\n    down: true\n");
        assert_eq!(autostop(&t, None, false).unwrap(), (Some(10.0), true));
        assert_eq!(autostop(&t, Some(3.0), false).unwrap(), (Some(3.0), false));
        assert_eq!(autostop(&spec("resources:\n  autostop: 2h\n"), None, true).unwrap(), (Some(120.0), true));
        assert_eq!(autostop(&spec("resources:\n  autostop: false\n"), None, false).unwrap(), (None, false));
        assert!(autostop(&spec("run: x\n"), None, true).is_err());
    }
}
