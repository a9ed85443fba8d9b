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
    /// SkyPilot's experimental data location: `{s3://bucket/path: size_gb}`. Used by DAG plans.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
                message = format!("unknown field `{name}`");
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
