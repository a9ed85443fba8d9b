//! The task spec: SkyPilot's task YAML, parsed unchanged.
//!
//! Every field of SkyPilot's published task schema is accepted (so published examples parse);
//! unknown or ill-typed fields are rejected with an error naming the field and the line. The
//! fields the optimizer uses (`resources`, `num_nodes`, `name`) are typed precisely; fields that
//! only matter to the runner (`setup`, `run`, `envs`, `file_mounts`, …) are kept as given.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A SkyPilot task (one YAML document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A local path, or `{url, ref}` for a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_nodes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Environment variables; a null value must be supplied at launch time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    pub envs: Option<BTreeMap<String, EnvValue>>,
    /// Secrets: a map like `envs`, or a list of managed secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_secrets: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Remote path -> local path, bucket URL, or storage object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mounts: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mounts_mapping: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Value>,
    /// Per-task overrides of SkyPilot's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_callback: Option<String>,
    /// SkyPilot's experimental data location: `{s3://bucket/path: size_gb}`, charged as egress to
    /// each candidate region (single-task and DAG plans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_access: Option<bool>,
    #[serde(default, rename = "_metadata", skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Per-node resource requirements (`resources:`), also used for each `any_of` / `ordered` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `cloud[/region[/zone]]`, `*` as a wildcard: `aws/us-east-1`, `*/us-west-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<String>,
    /// Also read as `gpus:` (SkyPilot's alias); giving both is an error.
    #[serde(default, alias = "gpus", skip_serializing_if = "Option::is_none")]
    pub accelerators: Option<AcceleratorsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_args: Option<Value>,
    /// `4`, `4+`, or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<SizeReq>,
    /// GiB: `32`, `32+`, `64GB+`, or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeReq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_spot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_recovery: Option<Value>,
    /// Older SkyPilot name of `job_recovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_recovery: Option<Value>,
    /// GB, an integer or a string with a unit (`256`, `1TB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<DiskSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<DiskSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_disk: Option<String>,
    /// Upper bound on the per-node hourly price; offers above it are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hourly_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    #[serde(default, rename = "_no_missing_accel_warnings", skip_serializing_if = "Option::is_none")]
    pub no_missing_accel_warnings: Option<bool>,
    /// Alternatives: the cheapest feasible one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub any_of: Option<Vec<ResourcesSpec>>,
    /// Alternatives in order of preference: the first feasible one wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub ordered: Option<Vec<ResourcesSpec>>,
}

/// One accelerator kind and its count per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AcceleratorChoice {
    pub name: String,
    pub count: f64,
}

impl fmt::Display for AcceleratorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, fmt_count(self.count))
    }
}

/// Formats an accelerator count without a trailing `.0`.
pub fn fmt_count(c: f64) -> String {
    if c.fract() == 0.0 {
        format!("{}", c as i64)
    } else {
        format!("{c}")
    }
}

/// `accelerators:` in any of SkyPilot's forms: `A100:8`, `{A100: 8}`, a set `{A100:1, V100:1}`
/// (any of them, cheapest first) or a list `[A100:1, V100:1]` (in order of preference).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceleratorsSpec {
    pub choices: Vec<AcceleratorChoice>,
    /// True for the list form: alternatives are tried in the order given.
    pub ordered: bool,
}

/// A lower bound (`4+`) or an exact value (`4`) for vCPUs or memory (GiB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeReq {
    pub value: f64,
    pub at_least: bool,
}

impl SizeReq {
    pub fn admits(&self, have: f64) -> bool {
        if self.at_least {
            have + 1e-9 >= self.value
        } else {
            (have - self.value).abs() < 1e-6
        }
    }
}

impl fmt::Display for SizeReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", fmt_count(self.value), if self.at_least { "+" } else { "" })
    }
}

/// Disk size in GB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSize(pub f64);

/// An `envs` value: YAML scalars are kept as strings; null means "supply at launch".
#[derive(Debug, Clone, PartialEq)]
pub struct EnvValue(pub Option<String>);

/// `ports:` as a port, a range (`"8000-8010"`), or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Ports(pub Vec<String>);

// ---------------------------------------------------------------------------------------------
// Parsing helpers

/// `A100`, `A100:8`, `A100:0.5`, optionally quoted.
pub(crate) fn parse_accel_item(raw: &str) -> Result<AcceleratorChoice, String> {
    let s = raw.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    if s.is_empty() {
        return Err("empty accelerator name".into());
    }
    let (name, count) = match s.rsplit_once(':') {
        Some((n, c)) => {
            let c = c.trim();
            let count: f64 = c
                .parse()
                .map_err(|_| format!("invalid count `{c}` in `{s}` (expected NAME or NAME:COUNT)"))?;
            (n.trim(), count)
        }
        None => (s, 1.0),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid accelerator name in `{s}`"));
    }
    check_count(name, count)?;
    Ok(AcceleratorChoice { name: name.to_string(), count })
}

fn check_count(name: &str, count: f64) -> Result<(), String> {
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("count for `{name}` must be a positive number, got {count}"));
    }
    Ok(())
}

impl AcceleratorsSpec {
    /// Parses the string forms: `A100:8`, `{A100:1, V100:1}`, `[A100:1, V100:1]`.
    pub fn parse_str(s: &str) -> Result<AcceleratorsSpec, String> {
        let t = s.trim();
        let (inner, ordered, multi) = if let Some(x) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            (x, false, true)
        } else if let Some(x) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            (x, true, true)
        } else {
            (t, false, false)
        };
        let choices = if multi {
            inner
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(parse_accel_item)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![parse_accel_item(inner)?]
        };
        if choices.is_empty() {
            return Err("no accelerator given".into());
        }
        Ok(AcceleratorsSpec { choices, ordered })
    }
}

impl<'de> Deserialize<'de> for AcceleratorsSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AcceleratorsSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an accelerator spec: `A100:8`, `{A100: 8}`, or a list/set of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                AcceleratorsSpec::parse_str(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut choices = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let count: Option<f64> = map.next_value()?;
                    match count {
                        // `{A100:1, V100:1}` in YAML is a map of keys with null values.
                        None => choices.push(parse_accel_item(&key).map_err(de::Error::custom)?),
                        Some(c) => {
                            if key.contains(':') {
                                return Err(de::Error::custom(format!(
                                    "`{key}: {c}` gives the count twice"
                                )));
                            }
                            check_count(&key, c).map_err(de::Error::custom)?;
                            choices.push(AcceleratorChoice { name: key.trim().to_string(), count: c });
                        }
                    }
                }
                if choices.is_empty() {
                    return Err(de::Error::custom("empty accelerator map"));
                }
                Ok(AcceleratorsSpec { choices, ordered: false })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut choices = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    choices.push(parse_accel_item(&item).map_err(de::Error::custom)?);
                }
                if choices.is_empty() {
                    return Err(de::Error::custom("empty accelerator list"));
                }
                Ok(AcceleratorsSpec { choices, ordered: true })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for AcceleratorsSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.choices.len() == 1 && !self.ordered {
            return s.serialize_str(&self.choices[0].to_string());
        }
        if self.ordered {
            let items: Vec<String> = self.choices.iter().map(|c| c.to_string()).collect();
            items.serialize(s)
        } else {
            let map: BTreeMap<&str, f64> = self.choices.iter().map(|c| (c.name.as_str(), c.count)).collect();
            map.serialize(s)
        }
    }
}

fn any_value_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(description.to_string()))
        .into()
}

impl PartialSchema for AcceleratorsSpec {
    fn schema() -> RefOr<Schema> {
        any_value_schema("`A100:8`, `{\"A100\": 8}`, a set `{\"A100:1\": null, \"V100:1\": null}` or an ordered list `[\"A100:1\", \"V100:1\"]`")
    }
}
impl ToSchema for AcceleratorsSpec {}

/// Splits `32`, `32+`, `32GB+`, `1TB` into a GiB value (memory) or a count (cpus).
fn parse_size(s: &str, with_units: bool) -> Result<SizeReq, String> {
    let t = s.trim();
    let (body, at_least) = match t.strip_suffix('+') {
        Some(b) => (b.trim(), true),
        None => (t, false),
    };
    let lower = body.to_ascii_lowercase();
    let (num, mult) = if with_units {
        let units: [(&str, f64); 10] = [
            ("tib", 1024.0),
            ("tb", 1024.0),
            ("t", 1024.0),
            ("gib", 1.0),
            ("gb", 1.0),
            ("g", 1.0),
            ("mib", 1.0 / 1024.0),
            ("mb", 1.0 / 1024.0),
            ("m", 1.0 / 1024.0),
            ("kb", 1.0 / (1024.0 * 1024.0)),
        ];
        units
            .iter()
            .find_map(|(u, m)| lower.strip_suffix(u).map(|n| (n.trim().to_string(), *m)))
            .unwrap_or((lower.clone(), 1.0))
    } else {
        (lower.clone(), 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a number, `N` or `N+`"))?;
    let value = v * mult;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{t}` must be a non-negative number"));
    }
    Ok(SizeReq { value, at_least })
}

impl<'de> Deserialize<'de> for SizeReq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SizeReq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, `N` or `N+`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeReq, E> {
                parse_size(v, true).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeReq, E> {
                Ok(SizeReq { value: v as f64, at_least: false })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeReq, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} must be non-negative")));
                }
                Ok(SizeReq { value: v as f64, at_least: false })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SizeReq, E> {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(E::custom(format!("{v} must be a non-negative number")));
                }
                Ok(SizeReq { value: v, at_least: false })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for SizeReq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl PartialSchema for SizeReq {
    fn schema() -> RefOr<Schema> {
        any_value_schema("a number, or a string `N` (exactly N) / `N+` (at least N); memory may carry a unit (`64GB+`)")
    }
}
impl ToSchema for SizeReq {}

impl<'de> Deserialize<'de> for DiskSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DiskSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in GB: an integer or a string like `256GB`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DiskSize, E> {
                let r = parse_size(v, true).map_err(E::custom)?;
                if r.at_least {
                    return Err(E::custom(format!("`{v}`: a disk size takes no `+`")));
                }
                Ok(DiskSize(r.value))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DiskSize, E> {
                Ok(DiskSize(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DiskSize, E> {
                if v < 0 {
                    return Err(E::custom(format!("{v} must be non-negative")));
                }
                Ok(DiskSize(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for DiskSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl PartialSchema for DiskSize {
    fn schema() -> RefOr<Schema> {
        any_value_schema("GB: an integer or a string with a unit (`1TB`)")
    }
}
impl ToSchema for DiskSize {}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<EnvValue, E> {
                Ok(EnvValue(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<EnvValue, E> {
                Ok(EnvValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn item<E: de::Error>(s: &str) -> Result<String, E> {
            let t = s.trim();
            let ok = match t.split_once('-') {
                Some((a, b)) => a.trim().parse::<u16>().is_ok() && b.trim().parse::<u16>().is_ok(),
                None => t.parse::<u16>().is_ok(),
            };
            if !ok {
                return Err(E::custom(format!("`{t}` is not a port or a port range")));
            }
            Ok(t.to_string())
        }
        struct Item(String);
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct IV;
                impl<'de> Visitor<'de> for IV {
                    type Value = Item;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a port number or a range `A-B`")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                        item(v).map(Item)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Item, E> {
                        item(&v.to_string()).map(Item)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Item, E> {
                        item(&v.to_string()).map(Item)
                    }
                }
                d.deserialize_any(IV)
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port, a range `A-B`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ports, E> {
                Ok(Ports(vec![item(v)?]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ports, E> {
                Ok(Ports(vec![item(&v.to_string())?]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ports, E> {
                Ok(Ports(vec![item(&v.to_string())?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ports, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(s)) = seq.next_element::<Item>()? {
                    out.push(s);
                }
                Ok(Ports(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Ports {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl PartialSchema for Ports {
    fn schema() -> RefOr<Schema> {
        any_value_schema("a port, a range `\"8000-8010\"`, or a list of them")
    }
}
impl ToSchema for Ports {}

// ---------------------------------------------------------------------------------------------
// Errors with field + line

/// A task that cannot be parsed or is inconsistent. `field` is a dotted path
/// (`resources.accelerators`), `line`/`column` are 1-based positions in the YAML, when known.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[error("{field}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct TaskError {
    pub field: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl TaskError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> TaskError {
        TaskError { field: field.into(), message: message.into(), line: None, column: None }
    }

    pub(crate) fn from_yaml(e: &serde_yaml::Error) -> TaskError {
        let (line, column) = match e.location() {
            Some(l) => (Some(l.line()), Some(l.column())),
            None => (None, None),
        };
        let mut text = e.to_string();
        // serde_yaml appends " at line L column C"; we carry the position separately.
        if let Some(pos) = text.rfind(" at line ") {
            text.truncate(pos);
        }
        // serde_yaml prefixes the path of the failing value: `resources.cpus: invalid …`.
        let (mut field, mut message) = match text.split_once(": ") {
            Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => (p.to_string(), m.to_string()),
            _ => (String::new(), text.clone()),
        };
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((name, _)) = rest.split_once('`') {
                field = if field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
                message = format!("unknown field `{name}`: not in SkyPilot's task schema (or internal to SkyPilot); remove it");
            }
        }
        if field.is_empty() {
            field = "task".into();
        }
        TaskError { field, message, line, column }
    }
}

/// The 1-based line of the first `key:` at the start of a line (after indentation), if any.
pub(crate) fn line_of(yaml: &str, key: &str) -> Option<usize> {
    yaml.lines().position(|l| {
        let t = l.trim_start().trim_start_matches("- ");
        t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
    })
    .map(|i| i + 1)
}

/// Parses one SkyPilot task YAML document.
pub fn parse_task_yaml(yaml: &str) -> Result<TaskSpec, TaskError> {
    let task: TaskSpec = if yaml.trim().is_empty() {
        TaskSpec::default()
    } else {
        match serde_yaml::from_str::<Option<TaskSpec>>(yaml) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => return Err(TaskError::from_yaml(&e)),
        }
    };
    task.validate().map_err(|mut e| {
        let leaf = e.field.rsplit('.').next().unwrap_or(&e.field).to_string();
        e.line = line_of(yaml, &leaf);
        e
    })?;
    Ok(task)
}

impl TaskSpec {
    /// Checks what the types alone cannot: counts, consistency of location fields.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.num_nodes == Some(0) {
            return Err(TaskError::new("num_nodes", "must be at least 1"));
        }
        if let Some(envs) = &self.envs {
            for k in envs.keys() {
                let ok = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(TaskError::new(format!("envs.{k}"), "not a valid environment variable name"));
                }
            }
        }
        if let Some(r) = &self.resources {
            r.validate("resources")?;
            for (key, alts) in [("any_of", &r.any_of), ("ordered", &r.ordered)] {
                if let Some(alts) = alts {
                    if alts.is_empty() {
                        return Err(TaskError::new(format!("resources.{key}"), "is an empty list"));
                    }
                    for (i, a) in alts.iter().enumerate() {
                        let p = format!("resources.{key}[{i}]");
                        if a.any_of.is_some() || a.ordered.is_some() {
                            return Err(TaskError::new(p, "any_of/ordered cannot be nested"));
                        }
                        a.validate(&p)?;
                    }
                }
            }
            if r.any_of.is_some() && r.ordered.is_some() {
                return Err(TaskError::new("resources.ordered", "cannot be combined with any_of"));
            }
        }
        Ok(())
    }
}

impl ResourcesSpec {
    fn validate(&self, path: &str) -> Result<(), TaskError> {
        if let Some(infra) = &self.infra {
            if self.cloud.is_some() || self.region.is_some() || self.zone.is_some() {
                return Err(TaskError::new(
                    format!("{path}.infra"),
                    "cannot be combined with cloud/region/zone (infra: cloud/region/zone replaces them)",
                ));
            }
            parse_infra(infra).map_err(|m| TaskError::new(format!("{path}.infra"), m))?;
        }
        if let Some(c) = self.max_hourly_cost {
            if !(c.is_finite() && c > 0.0) {
                return Err(TaskError::new(format!("{path}.max_hourly_cost"), "must be a positive number"));
            }
        }
        if let Some(n) = &self.cloud {
            if n.trim().is_empty() {
                return Err(TaskError::new(format!("{path}.cloud"), "is empty"));
            }
        }
        Ok(())
    }
}

/// A parsed `infra:` value; `None` parts are wildcards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Infra {
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
}

/// `aws`, `aws/us-east-1`, `aws/us-east-1/us-east-1a`, `*/us-west-2`, `k8s/ctx`.
pub fn parse_infra(s: &str) -> Result<Infra, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("is empty".into());
    }
    let lower = t.to_ascii_lowercase();
    if lower == "k8s" || lower == "kubernetes" || lower.starts_with("k8s/") || lower.starts_with("kubernetes/") {
        let ctx = t.split_once('/').map(|(_, c)| c.to_string());
        return Ok(Infra { cloud: Some("kubernetes".into()), region: ctx, zone: None });
    }
    let parts: Vec<&str> = t.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("`{t}` is not cloud[/region[/zone]]"));
    }
    let part = |i: usize| parts.get(i).filter(|p| **p != "*").map(|p| p.trim().to_string());
    Ok(Infra {
        cloud: part(0).map(|c| c.to_ascii_lowercase()),
        region: part(1),
        zone: part(2),
    })
}


// ---------------------------------------------------------------------------------------------
// What skycat does with each SkyPilot field

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

    /// SkyPilot's env substitution: `${VAR}` and `$VAR` naming one of `vars` are replaced in
    /// `workdir` and in `file_mounts` (keys, values, and the strings inside storage objects:
    /// bucket names, sources). Other `$` text is left as written.
    pub fn fill_in_envs(&mut self, vars: &BTreeMap<String, String>) {
        if let Some(w) = &mut self.workdir {
            substitute_value(w, vars);
        }
        if let Some(fm) = self.file_mounts.take() {
            self.file_mounts = Some(
                fm.into_iter()
                    .map(|(k, mut v)| {
                        substitute_value(&mut v, vars);
                        (substitute_envs(&k, vars), v)
                    })
                    .collect(),
            );
        }
    }
}

fn substitute_value(v: &mut Value, vars: &BTreeMap<String, String>) {
    match v {
        Value::String(s) => *s = substitute_envs(s, vars),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute_value(x, vars)),
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                substitute_value(&mut x, vars);
                m.insert(substitute_envs(&k, vars), x);
            }
        }
        _ => {}
    }
}

/// Replaces `${NAME}` and `$NAME` where `NAME` is in `vars`; anything else, unknown names
/// included, is left unchanged. SkyPilot's pattern (`\$\{?\b(NAME)\b\}?`) makes both braces
/// optional, so `${NAME` and `$NAME}` are replaced whole too; so are they here.
pub fn substitute_envs(s: &str, vars: &BTreeMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i + 1 + (b.get(i + 1) == Some(&b'{')) as usize;
        let mut end = start;
        if end < b.len() && (b[end].is_ascii_alphabetic() || b[end] == b'_') {
            end += 1;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                end += 1;
            }
        }
        match vars.get(&s[start..end]) {
            Some(val) if end > start => {
                out.push_str(&s[copied..i]);
                out.push_str(val);
                i = end + (b.get(end) == Some(&b'}')) as usize;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&s[copied..]);
    out
}
