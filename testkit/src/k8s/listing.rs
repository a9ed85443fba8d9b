//! List plumbing shared by nodes, pods and services: label selectors (the `labels.Parse` grammar:
//! `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma = AND), field selectors
//! (`=`, `==`, `!=` on the fields the real server supports per kind), and `limit`/`continue`
//! paging over objects kept pre-serialized.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use super::state::{Resource, Stored};

#[derive(Debug, Clone)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn valid_label_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                LabelRequirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelRequirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelRequirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                LabelRequirement::NotExists(k.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(k.trim().into(), set_values(rest).ok_or_else(|| format!("unable to parse requirement: {part}"))?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                LabelRequirement::In(k.trim().into(), set_values(rest).ok_or_else(|| format!("unable to parse requirement: {part}"))?)
            } else {
                LabelRequirement::Exists(part.trim().into())
            };
            let key = match &requirement {
                LabelRequirement::Equals(k, _)
                | LabelRequirement::NotEquals(k, _)
                | LabelRequirement::Exists(k)
                | LabelRequirement::NotExists(k)
                | LabelRequirement::In(k, _)
                | LabelRequirement::NotIn(k, _) => k,
            };
            if !valid_label_key(key) {
                return Err(format!("unable to parse requirement: found '{part}', expected: identifier"));
            }
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => labels[k].as_str() == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => labels[k].as_str() != Some(v.as_str()),
            LabelRequirement::Exists(k) => labels.get(k).is_some(),
            LabelRequirement::NotExists(k) => labels.get(k).is_none(),
            LabelRequirement::In(k, vs) => labels[k].as_str().is_some_and(|v| vs.iter().any(|x| x == v)),
            LabelRequirement::NotIn(k, vs) => labels[k].as_str().is_none_or(|v| !vs.iter().any(|x| x == v)),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>); // (field, equal?, value)

fn supported_fields(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::Pod => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Resource::Node => &["metadata.name", "spec.unschedulable"],
        Resource::Service => &["metadata.name", "metadata.namespace"],
    }
}

fn field_value(object: &Value, field: &str) -> String {
    let mut v = object;
    for part in field.split('.') {
        v = &v[part];
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => {
            if field == "spec.unschedulable" || field == "spec.hostNetwork" {
                "false".into()
            } else {
                String::new()
            }
        }
        other => other.to_string(),
    }
}

impl FieldSelector {
    pub fn parse(text: &str, resource: Resource) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in split_top_level(text) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            let field = field.trim();
            if !supported_fields(resource).contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| (field_value(object, field) == *value) == *equal)
    }
}

/// Label and field selectors together.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_query(query: &[(String, String)], resource: Resource) -> Result<Selectors, String> {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        Ok(Selectors { labels: LabelSelector::parse(get("labelSelector"))?, fields: FieldSelector::parse(get("fieldSelector"), resource)? })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(object)) && (self.fields.is_empty() || self.fields.matches(object))
    }
}

/// One page of a list: the items (sorted by key), the continue token and the remaining count.
pub struct Page<'a> {
    pub items: Vec<&'a Arc<Stored>>,
    pub continue_token: Option<String>,
    pub remaining: usize,
    /// The first page's resourceVersion, carried by the continue token: every page of a list
    /// reports it, so a watch from the list's version replays what changed since the first page
    /// (pages here are read from the latest state, not from a snapshot).
    pub resource_version: u64,
}

/// An object's place in a list: (namespace, name); "" for cluster-scoped kinds. Borrowed, so a
/// list of 10,000 pods allocates no keys.
pub type ListKey<'a> = (&'a str, &'a str);

/// Pages `items` (sorted by key) after the continue token's key, `limit` at a time (0 = all).
pub fn page<'a>(items: Vec<(ListKey<'a>, &'a Arc<Stored>)>, limit: usize, continue_token: &str, latest: u64) -> Result<Page<'a>, String> {
    let mut resource_version = latest;
    let start = if continue_token.is_empty() {
        0
    } else {
        let invalid = || "continue key is not valid".to_string();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(continue_token).map_err(|_| invalid())?;
        let token: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
        let after = (token["start"][0].as_str().ok_or_else(invalid)?, token["start"][1].as_str().ok_or_else(invalid)?);
        resource_version = token["rv"].as_u64().ok_or_else(invalid)?;
        items.partition_point(|(k, _)| *k <= after)
    };
    let rest = &items[start..];
    let take = if limit == 0 { rest.len() } else { limit.min(rest.len()) };
    let remaining = rest.len() - take;
    let continue_token = (remaining > 0).then(|| {
        let (ns, name) = rest[take - 1].0;
        let token = serde_json::json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": [ns, name]});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
    });
    Ok(Page { items: rest[..take].iter().map(|(_, s)| *s).collect(), continue_token, remaining, resource_version })
}

/// `{"kind":"<kind>List","apiVersion":"v1","metadata":{…},"items":[…]}` from stored bytes.
pub fn list_body(kind: &str, page: &Page) -> Vec<u8> {
    let mut meta = serde_json::json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = &page.continue_token {
        meta["continue"] = token.clone().into();
        meta["remainingItemCount"] = page.remaining.into();
    }
    let size: usize = page.items.iter().map(|s| s.bytes.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 128);
    body.extend_from_slice(format!("{{\"kind\":\"{kind}List\",\"apiVersion\":\"v1\",\"metadata\":{meta},\"items\":[").as_bytes());
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item.bytes);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_follow_the_grammar() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "gpu"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app", true),
            ("!app", false),
            ("missing", false),
            ("!missing", true),
            ("app=web,tier=gpu", true),
            ("app=web,tier=cpu", false),
            ("tier in (gpu, tpu)", true),
            ("tier notin (gpu,tpu)", false),
            ("app in (web),tier", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&obj), want, "{sel}");
        }
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors_know_their_fields() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded", Resource::Pod).unwrap();
        assert!(sel.matches(&pod));
        assert!(!FieldSelector::parse("metadata.name==q", Resource::Pod).unwrap().matches(&pod));
        assert!(FieldSelector::parse("spec.foo=1", Resource::Pod).is_err());
        assert!(FieldSelector::parse("spec.nodeName=n1", Resource::Node).is_err());
    }
}
