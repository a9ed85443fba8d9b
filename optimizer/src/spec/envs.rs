//! SkyPilot's `${VAR}` substitution in `workdir` and `file_mounts`.

use super::*;

impl TaskSpec {
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
