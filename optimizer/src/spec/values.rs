//! The value types of a task's fields, each parsed in every form SkyPilot accepts and written
//! back in its canonical form: accelerators, sizes, disk sizes, env values and ports.

use super::*;

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
fn parse_accel_item(raw: &str) -> Result<AcceleratorChoice, String> {
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
