//! The configuration the object-storage commands read: the process environment, overlaid with
//! `KEY=VALUE` lines from stdin (`--env-stdin`), held in this process only (never exported to
//! a child, never written to disk), and a [`Redactor`] that removes the secret values from any
//! message before it is printed.

use std::collections::BTreeMap;

use crate::Error;

/// Environment variables by name; empty values count as unset.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Env { vars }
    }

    /// An environment from pairs only, not the process's.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env { vars: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// An environment from a map only, not the process's.
    pub fn from_map(vars: std::collections::BTreeMap<String, String>) -> Env {
        Env { vars }
    }

    /// This environment with `key` set to `value`.
    pub fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    /// Overlays `KEY=VALUE` lines: blank lines and `#` comments are skipped, an `export `
    /// prefix is allowed, the value is taken literally up to the end of the line (a trailing
    /// `\r` is dropped). A bad line is an error naming its number, never its content.
    pub fn read_lines(&mut self, text: &str) -> Result<(), Error> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let line = trimmed.strip_prefix("export ").map(str::trim_start).unwrap_or(trimmed);
            let Some((key, value)) = line.split_once('=') else {
                return Err(Error::EnvStdin(format!("line {} is not KEY=VALUE", i + 1)));
            };
            let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::EnvStdin(format!("line {}: the name is not a variable name", i + 1)));
            }
            self.vars.insert(key.to_string(), value.to_string());
        }
        Ok(())
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The first of `keys` that is set.
    pub fn first(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// Whether `key` is set to a true value (`1`, `true`, `yes`, `on`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
    }

    /// Every set variable whose name starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A redactor for the values of every variable whose name looks secret.
    pub fn redactor(&self) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for (k, v) in &self.vars {
            if !is_secret_name(k) || v.len() < 6 {
                continue;
            }
            secrets.push(v.clone());
            // A SAS token or a connection string also leaks piecewise: redact each part.
            for part in v.split(['&', ';', '?']) {
                let value = part.split_once('=').map_or(part, |(_, val)| val);
                if value.len() >= 8 {
                    secrets.push(value.to_string());
                }
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }
}

/// Names whose values are credentials.
/// Names whose values are credentials: the agent's usual rule ([`skycat_protocol::is_secret_env`])
/// plus connection strings, SAS tokens and credential files' contents.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    skycat_protocol::is_secret_env(name)
        || ["CONNECTION_STRING", "SAS", "CREDENTIAL"].iter().any(|w| n.contains(w))
}

/// Replaces secret values in messages with [`skycat_protocol::REDACTED`].
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn apply(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), skycat_protocol::REDACTED);
            }
        }
        drop_url_queries(&out)
    }
}

/// Removes the query string of every URL in `msg` (a presigned or SAS URL carries its
/// signature there).
fn drop_url_queries(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '>' || c == ')').unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(url.split_once('?').map_or(url, |(u, _)| u));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_overlay_and_bad_lines_name_only_the_line() {
        let mut env = Env::from_pairs(&[("AWS_REGION", "us-east-1")]);
        env.read_lines("# creds\n\nexport AWS_REGION=eu-west-1\r\nAWS_SECRET_ACCESS_KEY=a=b c\n").unwrap();
        assert_eq!(env.get("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), Some("a=b c"));
        let err = env.read_lines("OK=1\nhunter2-secret\n").unwrap_err().to_string();
        assert_eq!(err, "--env-stdin: line 2 is not KEY=VALUE");
        assert!(env.read_lines("1BAD=x").is_err());
        assert!(env.read_lines("A-B=x").is_err());
    }

    #[test]
    fn redacts_secret_values_and_url_queries() {
        let env = Env::from_pairs(&[
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AZURE_STORAGE_SAS_TOKEN", "sv=2022&sig=abcdefgh12345"),
            ("AWS_REGION", "us-east-1"),
        ]);
        let r = env.redactor();
        let msg = r.apply("bad key wJalrXUtnFEMI for AKIAEXAMPLE at https://a.blob.core.windows.net/c/x?sv=1&sig=zz (sig abcdefgh12345) in us-east-1");
        assert_eq!(
            msg,
            "bad key <redacted> for <redacted> at https://a.blob.core.windows.net/c/x (sig <redacted>) in us-east-1"
        );
    }

    #[test]
    fn prefix_iteration() {
        let env = Env::from_pairs(&[("AWS_A", "1"), ("AWS_B", ""), ("AZURE_C", "2"), ("AWSX", "3")]);
        let v: Vec<_> = env.with_prefix("AWS_").collect();
        assert_eq!(v, vec![("AWS_A", "1")]);
        assert!(Env::from_pairs(&[("X", "TRUE")]).flag("X"));
    }
}
