//! The `kubernetes:` section of `$SKYCAT_HOME/config.yaml`, with SkyPilot's key names where
//! SkyPilot has one (`allowed_contexts`, `ports`, `provision_timeout`), and the kubeconfig it
//! points at.
//!
//! ```yaml
//! kubernetes:
//!   kubeconfig: ~/.kube/config       # default: $KUBECONFIG (first entry), else ~/.kube/config
//!   allowed_contexts: [team-a, gke]  # default: every context of the kubeconfig
//!   image: debian:bookworm-slim      # the pods' image (needs sh, cat and glibc for the agent)
//!   ports: nodeport                  # how resources.ports are exposed: nodeport | loadbalancer
//!   provision_timeout: 10            # seconds a pod may stay unschedulable before failover
//!   contexts:
//!     team-a:
//!       namespace: ml                # default: the context's namespace, else `default`
//!       gpu_hour_usd: 1.85           # what a GPU-hour here costs you (default: 0, flagged)
//!       vcpu_hour_usd: 0.03
//!       controller_ip: 10.0.0.5      # where pods reach skycat (default: the node's IP)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backend::{ErrorClass, ProvisionError};

/// The default pod image: small, with sh, coreutils and the glibc the agent links.
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// How `resources.ports` reach the outside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    #[default]
    Nodeport,
    Loadbalancer,
}

impl PortMode {
    /// The Service `spec.type`.
    pub fn service_type(self) -> &'static str {
        match self {
            PortMode::Nodeport => "NodePort",
            PortMode::Loadbalancer => "LoadBalancer",
        }
    }
}

/// Per-context settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextSettings {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub gpu_hour_usd: Option<f64>,
    #[serde(default)]
    pub vcpu_hour_usd: Option<f64>,
    #[serde(default)]
    pub controller_ip: Option<String>,
}

/// The `kubernetes:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubeSettings {
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub allowed_contexts: Option<Vec<String>>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub ports: PortMode,
    #[serde(default)]
    pub provision_timeout: Option<u64>,
    #[serde(default)]
    pub contexts: BTreeMap<String, ContextSettings>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    kubernetes: Option<KubeSettings>,
}

fn invalid(msg: String) -> ProvisionError {
    ProvisionError::new(ErrorClass::Invalid, msg)
}

impl KubeSettings {
    /// Reads the section (missing file or section: defaults). A bad value is an error naming the
    /// file and the key.
    pub fn load(path: &Path) -> Result<KubeSettings, ProvisionError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KubeSettings::default()),
            Err(e) => return Err(invalid(format!("{}: {e}", path.display()))),
        };
        if text.trim().is_empty() {
            return Ok(KubeSettings::default());
        }
        let f: ConfigFile = serde_yaml::from_str(&text).map_err(|e| invalid(format!("{}: kubernetes: {e}", path.display())))?;
        let s = f.kubernetes.unwrap_or_default();
        for (ctx, c) in &s.contexts {
            for (key, v) in [("gpu_hour_usd", c.gpu_hour_usd), ("vcpu_hour_usd", c.vcpu_hour_usd)] {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(invalid(format!("{}: kubernetes.contexts.{ctx}.{key} must be a price ≥ 0", path.display())));
                }
            }
        }
        if s.provision_timeout == Some(0) {
            return Err(invalid(format!("{}: kubernetes.provision_timeout must be at least 1 second", path.display())));
        }
        Ok(s)
    }

    /// The kubeconfig file: the setting, else `$KUBECONFIG`'s first entry, else ~/.kube/config.
    pub fn kubeconfig_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.kubeconfig {
            return Some(expand_home(p));
        }
        if let Some(v) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            return std::env::split_paths(&v).next();
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
    }

    pub fn image(&self) -> String {
        self.image.clone().filter(|i| !i.trim().is_empty()).unwrap_or_else(|| DEFAULT_IMAGE.to_string())
    }

    pub fn provision_timeout(&self) -> Duration {
        Duration::from_secs(self.provision_timeout.unwrap_or(10))
    }

    pub fn context(&self, name: &str) -> ContextSettings {
        self.contexts.get(name).cloned().unwrap_or_default()
    }

    /// Whether a kubeconfig context is a region skycat uses.
    pub fn allows(&self, context: &str) -> bool {
        self.allowed_contexts.as_ref().is_none_or(|a| a.iter().any(|c| c == context))
    }
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => p.to_path_buf(),
    }
}

/// What a context's offers cost: per GPU-hour and per vCPU-hour; `None` when nothing is
/// configured (the offer is then priced at 0 and flagged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextPrice {
    pub gpu_hour: f64,
    pub vcpu_hour: f64,
}

impl ContextSettings {
    pub fn price(&self) -> Option<ContextPrice> {
        if self.gpu_hour_usd.is_none() && self.vcpu_hour_usd.is_none() {
            return None;
        }
        Some(ContextPrice { gpu_hour: self.gpu_hour_usd.unwrap_or(0.0), vcpu_hour: self.vcpu_hour_usd.unwrap_or(0.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_section_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        std::fs::write(
            &p,
            "kubernetes:\n  allowed_contexts: [a]\n  ports: loadbalancer\n  contexts:\n    a: {namespace: ml, gpu_hour_usd: 1.5}\n",
        )
        .unwrap();
        let s = KubeSettings::load(&p).unwrap();
        assert!(s.allows("a") && !s.allows("b"));
        assert_eq!(s.ports.service_type(), "LoadBalancer");
        assert_eq!(s.context("a").price(), Some(ContextPrice { gpu_hour: 1.5, vcpu_hour: 0.0 }));
        assert_eq!(s.context("b").price(), None);
        assert_eq!(s.image(), DEFAULT_IMAGE);

        std::fs::write(&p, "kubernetes:\n  contexts:\n    a: {gpu_hour_usd: -1}\n").unwrap();
        let e = KubeSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("kubernetes.contexts.a.gpu_hour_usd"), "{e}");
        std::fs::write(&p, "kubernetes:\n  contxts: {}\n").unwrap();
        let e = KubeSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("contxts"), "{e}");
        std::fs::write(&p, "kubernetes:\n  ports: hostport\n").unwrap();
        assert!(KubeSettings::load(&p).is_err());
    }
}
