//! SSH node pools, in SkyPilot's `~/.sky/ssh_node_pools.yaml` format, read from
//! `$SKYCAT_HOME/ssh_node_pools.yaml`:
//!
//! ```yaml
//! my-box:
//!   hosts:
//!     - 192.168.1.10
//!     - ip: 192.168.1.11
//!       user: alice
//!       identity_file: ~/.ssh/alice
//!       port: 2222
//!   user: ubuntu
//!   identity_file: ~/.ssh/id_ed25519
//!   port: 22                 # skycat extension (SkyPilot: per host only)
//!   price_per_hour: 1.5      # skycat extension: USD per host-hour, default 0
//!   spot: true               # skycat extension: hosts may disappear, price is a spot price
//!   accelerators: H100:8     # skycat extension: what each host carries (for the optimizer)
//!   cpus: 32                 # skycat extension: vCPUs per host (for `cpus:` requirements)
//!   memory: 256              # skycat extension: GiB per host (for `memory:` requirements)
//! ```
//!
//! For the optimizer a pool is one offer (cloud `ssh`, region and instance type = the pool's
//! name); launching takes as many free hosts of it as the task has nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::home::expand_tilde;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("no SSH node pool named {name:?} in {path} (pools: {known})")]
    Unknown { name: String, path: PathBuf, known: String },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHost {
    Addr(String),
    Full {
        ip: String,
        user: Option<String>,
        identity_file: Option<String>,
        port: Option<u16>,
        password: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    hosts: Vec<RawHost>,
    user: Option<String>,
    identity_file: Option<String>,
    port: Option<u16>,
    password: Option<String>,
    use_ssh_config: Option<bool>,
    price_per_hour: Option<f64>,
    spot: Option<bool>,
    accelerators: Option<String>,
    cpus: Option<f64>,
    memory: Option<f64>,
}

/// One host of a pool, with its connection settings resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHost {
    pub pool: String,
    pub ip: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
}

impl PoolHost {
    /// `user@ip:port`, as shown to users and as the reservation key.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.ip, self.port)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub hosts: Vec<PoolHost>,
    pub price_per_hour: f64,
    pub spot: bool,
    /// (canonical name, count) per host, when the pool says what its hosts carry.
    pub accelerators: Option<(String, f64)>,
    /// vCPUs and GiB of memory per host, when the pool declares them.
    pub cpus: Option<f64>,
    pub memory: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Pools {
    pub pools: BTreeMap<String, Pool>,
    pub path: PathBuf,
}

fn default_identity() -> PathBuf {
    expand_tilde("~/.ssh/id_ed25519")
}

fn default_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".to_string())
}

impl Pools {
    /// Reads the pools file; a missing file means no pools.
    pub fn load(path: &Path) -> Result<Pools, PoolError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Pools::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Pools { pools: BTreeMap::new(), path: path.to_path_buf() })
            }
            Err(source) => Err(PoolError::Read { path: path.to_path_buf(), source }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Pools, PoolError> {
        let invalid = |msg: String| PoolError::Invalid { path: path.to_path_buf(), msg };
        if text.trim().is_empty() {
            return Ok(Pools { pools: BTreeMap::new(), path: path.to_path_buf() });
        }
        let raw: BTreeMap<String, RawPool> =
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut pools = BTreeMap::new();
        for (name, rp) in raw {
            if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
                return Err(invalid(format!("pool name {name:?} must be non-empty, without '/' or spaces")));
            }
            if rp.password.is_some() {
                return Err(invalid(format!("pool {name}: password login is not supported; use identity_file")));
            }
            if rp.use_ssh_config == Some(true) {
                return Err(invalid(format!("pool {name}: use_ssh_config is not supported; list ip/user/identity_file")));
            }
            let price = rp.price_per_hour.unwrap_or(0.0);
            if !price.is_finite() || price < 0.0 {
                return Err(invalid(format!("pool {name}: price_per_hour must be a non-negative number")));
            }
            if rp.hosts.is_empty() {
                return Err(invalid(format!("pool {name}: hosts is empty")));
            }
            let accelerators = match &rp.accelerators {
                None => None,
                Some(s) => Some(parse_accel(s).ok_or_else(|| {
                    invalid(format!("pool {name}: accelerators {s:?} is not NAME or NAME:COUNT"))
                })?),
            };
            for (field, v) in [("cpus", rp.cpus), ("memory", rp.memory)] {
                if v.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                    return Err(invalid(format!("pool {name}: {field} must be a positive number")));
                }
            }
            let mut hosts = Vec::new();
            for (i, h) in rp.hosts.into_iter().enumerate() {
                let (ip, user, idf, port) = match h {
                    RawHost::Addr(s) => (s, None, None, None),
                    RawHost::Full { ip, user, identity_file, port, password } => {
                        if password.is_some() {
                            return Err(invalid(format!(
                                "pool {name} host {ip}: password login is not supported; use identity_file"
                            )));
                        }
                        (ip, user, identity_file, port)
                    }
                };
                let ip = ip.trim().to_string();
                if ip.is_empty() {
                    return Err(invalid(format!("pool {name}: host #{} has an empty address", i + 1)));
                }
                hosts.push(PoolHost {
                    pool: name.clone(),
                    ip,
                    port: port.or(rp.port).unwrap_or(22),
                    user: user.or_else(|| rp.user.clone()).unwrap_or_else(default_user),
                    identity_file: idf
                        .or_else(|| rp.identity_file.clone())
                        .map(|p| expand_tilde(&p))
                        .unwrap_or_else(default_identity),
                });
            }
            pools.insert(
                name.clone(),
                Pool {
                    name,
                    hosts,
                    price_per_hour: price,
                    spot: rp.spot.unwrap_or(false),
                    accelerators,
                    cpus: rp.cpus,
                    memory: rp.memory,
                },
            );
        }
        Ok(Pools { pools, path: path.to_path_buf() })
    }

    pub fn get(&self, name: &str) -> Result<&Pool, PoolError> {
        self.pools.get(name).ok_or_else(|| PoolError::Unknown {
            name: name.to_string(),
            path: self.path.clone(),
            known: if self.pools.is_empty() {
                "none defined".to_string()
            } else {
                self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// Every pool as a catalog offer: cloud `ssh`, region = instance type = the pool's name,
    /// priced per host-hour (on-demand, or spot when the pool says `spot: true`).
    pub fn as_offers(&self) -> Vec<skycat_catalog::Offer> {
        let now = chrono::Utc::now();
        self.pools
            .values()
            .map(|pool| {
                let (accel, count) = match &pool.accelerators {
                    Some((n, c)) => (Some(n.clone()), *c),
                    None => (None, 0.0),
                };
                skycat_catalog::Offer {
                    cloud: "ssh".into(),
                    instance_type: pool.name.clone().into(),
                    region: pool.name.clone().into(),
                    zone: None,
                    accelerator_name: accel.map(Into::into),
                    accelerator_count: count,
                    accelerator_memory_gib: None,
                    accelerator_vendor: None,
                    vcpus: pool.cpus,
                    memory_gib: pool.memory,
                    arch: None,
                    price: if pool.spot { None } else { Some(pool.price_per_hour) },
                    spot_price: if pool.spot { Some(pool.price_per_hour) } else { None },
                    fetched_at: now,
                    source: format!("ssh_node_pools.yaml:{}", self.path.display()).into(),
                    price_breakdown: None,
                    spot_interruption: None,
                    hyperv_generations: None,
                }
            })
            .collect()
    }
}

fn parse_accel(s: &str) -> Option<(String, f64)> {
    let s = s.trim();
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n.trim(), c.trim().parse::<f64>().ok()?),
        None => (s, 1.0),
    };
    if name.is_empty() || count.is_nan() || count <= 0.0 {
        return None;
    }
    Some((name.to_string(), count))
}

/// The pools of `$SKYCAT_HOME/ssh_node_pools.yaml` as catalog offers (see [`Pools::as_offers`]).
/// A missing or unreadable file gives no offers.
pub fn pools_as_offers() -> Vec<skycat_catalog::Offer> {
    let home = crate::home::Home::from_env();
    Pools::load(&home.pools_file()).map(|p| p.as_offers()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_skypilot_format_with_extensions() {
        let text = r#"
box:
  hosts:
    - 10.0.0.1
    - ip: 10.0.0.2
      user: alice
      port: 2222
      identity_file: /keys/a
  user: ubuntu
  identity_file: /keys/default
  price_per_hour: 1.25
  accelerators: H100:8
spotty:
  hosts: [10.1.0.1]
  user: root
  identity_file: /k
  spot: true
  price_per_hour: 0.4
"#;
        let p = Pools::parse(text, Path::new("pools.yaml")).unwrap();
        let b = p.get("box").unwrap();
        assert_eq!(b.hosts[0].display(), "ubuntu@10.0.0.1:22");
        assert_eq!(b.hosts[0].identity_file, PathBuf::from("/keys/default"));
        assert_eq!(b.hosts[1].display(), "alice@10.0.0.2:2222");
        assert_eq!(b.hosts[1].identity_file, PathBuf::from("/keys/a"));
        let offers = p.as_offers();
        assert_eq!(offers.len(), 2);
        let o = offers.iter().find(|o| &*o.instance_type == "box").unwrap();
        assert_eq!((o.cloud.as_ref(), o.region.as_ref()), ("ssh", "box"));
        assert_eq!(o.price, Some(1.25));
        assert_eq!(o.accelerator_name.as_deref(), Some("H100"));
        assert_eq!(o.accelerator_count, 8.0);
        let s = offers.iter().find(|o| &*o.region == "spotty").unwrap();
        assert_eq!((s.price, s.spot_price), (None, Some(0.4)));
    }

    #[test]
    fn bad_input_gives_one_line_errors() {
        let e = Pools::parse("p:\n  hosts: []\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("pool p: hosts is empty"), "{e}");
        let e = Pools::parse("p:\n  hosts: [a]\n  price_per_hour: -1\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("price_per_hour"), "{e}");
        let e = Pools::parse("p:\n  hosts: [a]\n  password: x\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        let p = Pools::parse("p:\n  hosts: [a]\n", Path::new("x.yaml")).unwrap();
        let e = p.get("q").unwrap_err();
        assert!(e.to_string().contains("no SSH node pool named \"q\"") && e.to_string().contains("pools: p"), "{e}");
        assert!(Pools::parse("p: [1, 2]\n", Path::new("x.yaml")).is_err());
    }
}
