//! Node facts: CPU, memory, load, GPUs (nvidia-smi when present).

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skycat_protocol::{GpuFact, NodeFacts};

const NVIDIA_QUERY: &str = "index,name,memory.total,memory.used,utilization.gpu,uuid";

/// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,uuid
/// --format=csv,noheader,nounits` output.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuFact> {
    let num = |s: &str| s.trim().parse::<f64>().ok();
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols.len() < 2 {
                return None;
            }
            Some(GpuFact {
                index: cols[0].parse().ok()?,
                name: cols[1].to_string(),
                memory_total_mib: cols.get(2).and_then(|s| num(s)).map(|v| v as u64),
                memory_used_mib: cols.get(3).and_then(|s| num(s)).map(|v| v as u64),
                utilization_pct: cols.get(4).and_then(|s| num(s)),
                uuid: cols.get(5).map(|s| s.to_string()).filter(|s| !s.is_empty()),
            })
        })
        .collect()
}

/// Runs nvidia-smi with a 5 s limit; empty when it is absent or fails.
pub fn probe_gpus() -> Vec<GpuFact> {
    let child = Command::new("nvidia-smi")
        .arg(format!("--query-gpu={NVIDIA_QUERY}"))
        .arg("--format=csv,noheader,nounits")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Vec::new();
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return Vec::new(),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut out);
    }
    parse_nvidia_smi(&out)
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub fn collect(gpus: Vec<GpuFact>, gpus_for_jobs: f64) -> NodeFacts {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    NodeFacts {
        hostname: fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_total_bytes: meminfo_kib(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
        memory_available_bytes: meminfo_kib(&meminfo, "MemAvailable:").unwrap_or(0) * 1024,
        load_avg_1m: fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())),
        gpus,
        gpus_for_jobs,
        boot_time: crate::util::boot_time(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_csv() {
        let text = "0, NVIDIA H100 80GB HBM3, 81559, 0, 0, GPU-aaa\n1, NVIDIA H100 80GB HBM3, 81559, 1200, 35, GPU-bbb\n";
        let g = parse_nvidia_smi(text);
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].index, 1);
        assert_eq!(g[1].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(g[1].memory_total_mib, Some(81559));
        assert_eq!(g[1].memory_used_mib, Some(1200));
        assert_eq!(g[1].utilization_pct, Some(35.0));
        assert_eq!(g[1].uuid.as_deref(), Some("GPU-bbb"));
        assert!(parse_nvidia_smi("garbage\n").is_empty());
    }

    #[test]
    fn facts_from_proc() {
        let f = collect(Vec::new(), 2.0);
        assert!(f.cpus >= 1);
        assert!(f.memory_total_bytes > 0);
        assert_eq!(f.gpus_for_jobs, 2.0);
    }
}
