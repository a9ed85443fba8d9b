//! Just enough GraphQL for the RunPod emulator: one operation per document (no fragments, no
//! directives), variable definitions, arguments with literal or variable values, nested
//! selection sets; then validation against [`super::schema`] and projection of a JSON result
//! onto a selection set.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Name(String),
    Punct(char),
    Str(String),
    Int(i64),
    Float(f64),
    Spread,
}

pub fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() || ch == ',' || ch == '\u{feff}' {
            i += 1;
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '.' {
            if c.get(i + 1) == Some(&'.') && c.get(i + 2) == Some(&'.') {
                out.push(Tok::Spread);
                i += 3;
            } else {
                return Err("Syntax Error: Unexpected \".\".".into());
            }
        } else if "{}():$![]=@".contains(ch) {
            out.push(Tok::Punct(ch));
            i += 1;
        } else if ch == '"' {
            if c.get(i + 1) == Some(&'"') && c.get(i + 2) == Some(&'"') {
                return Err("Syntax Error: block strings are not supported by this emulator.".into());
            }
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&d) = c.get(i) else { return Err("Syntax Error: Unterminated string.".into()) };
                i += 1;
                match d {
                    '"' => break,
                    '\\' => {
                        let Some(&e) = c.get(i) else { return Err("Syntax Error: Unterminated string.".into()) };
                        i += 1;
                        match e {
                            '"' => s.push('"'),
                            '\\' => s.push('\\'),
                            '/' => s.push('/'),
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'b' => s.push('\u{8}'),
                            'f' => s.push('\u{c}'),
                            'u' => {
                                let hex: String = c.get(i..i + 4).map(|h| h.iter().collect()).unwrap_or_default();
                                let code = u32::from_str_radix(&hex, 16).map_err(|_| "Syntax Error: Invalid Unicode escape sequence.")?;
                                s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                i += 4;
                            }
                            other => return Err(format!("Syntax Error: Invalid character escape sequence: \"\\{other}\".")),
                        }
                    }
                    '\n' => return Err("Syntax Error: Unterminated string.".into()),
                    d => s.push(d),
                }
            }
            out.push(Tok::Str(s));
        } else if ch == '-' || ch.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_ascii_digit() || ".eE+-".contains(c[i])) {
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            if text.contains(['.', 'e', 'E']) {
                out.push(Tok::Float(text.parse().map_err(|_| format!("Syntax Error: Invalid number \"{text}\"."))?));
            } else {
                out.push(Tok::Int(text.parse().map_err(|_| format!("Syntax Error: Invalid number \"{text}\"."))?));
            }
        } else if ch == '_' || ch.is_ascii_alphabetic() {
            let start = i;
            while i < c.len() && (c[i] == '_' || c[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            out.push(Tok::Name(c[start..i].iter().collect()));
        } else {
            return Err(format!("Syntax Error: Unexpected character: \"{ch}\"."));
        }
    }
    Ok(out)
}

/// A type reference: `Name`, `[T]`, with `!`.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeRef {
    Named(String, bool),
    List(Box<TypeRef>, bool),
}

impl TypeRef {
    pub fn non_null(&self) -> bool {
        match self {
            TypeRef::Named(_, n) | TypeRef::List(_, n) => *n,
        }
    }

    /// Parses `String!`, `[EnvironmentVariableInput]` (the schema tables are written so).
    pub fn parse(s: &str) -> TypeRef {
        let toks = lex(s).expect("schema type");
        let mut p = Parser { toks, pos: 0 };
        p.type_ref().expect("schema type")
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Named(n, nn) => write!(f, "{n}{}", if *nn { "!" } else { "" }),
            TypeRef::List(t, nn) => write!(f, "[{t}]{}", if *nn { "!" } else { "" }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GValue {
    Var(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<GValue>),
    Object(Vec<(String, GValue)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: Vec<(String, GValue)>,
    pub selection: Option<Vec<Field>>,
}

impl Field {
    pub fn response_key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `query` or `mutation`.
    pub kind: String,
    pub name: Option<String>,
    pub variables: Vec<(String, TypeRef, Option<GValue>)>,
    pub selection: Vec<Field>,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, ch: char) -> bool {
        if self.peek() == Some(&Tok::Punct(ch)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, ch: char) -> Result<(), String> {
        if self.eat(ch) {
            Ok(())
        } else {
            Err(format!("Syntax Error: Expected \"{ch}\", found {}.", self.describe_next()))
        }
    }
    fn describe_next(&self) -> String {
        match self.peek() {
            None => "<EOF>".into(),
            Some(Tok::Name(n)) => format!("Name \"{n}\""),
            Some(Tok::Punct(p)) => format!("\"{p}\""),
            Some(Tok::Str(s)) => format!("String \"{s}\""),
            Some(Tok::Int(i)) => format!("Int \"{i}\""),
            Some(Tok::Float(x)) => format!("Float \"{x}\""),
            Some(Tok::Spread) => "\"...\"".into(),
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Name(n)) => Ok(n),
            _ => {
                self.pos -= 1;
                Err(format!("Syntax Error: Expected Name, found {}.", self.describe_next()))
            }
        }
    }

    fn type_ref(&mut self) -> Result<TypeRef, String> {
        let t = if self.eat('[') {
            let inner = self.type_ref()?;
            self.expect(']')?;
            TypeRef::List(Box::new(inner), false)
        } else {
            TypeRef::Named(self.name()?, false)
        };
        if self.eat('!') {
            Ok(match t {
                TypeRef::Named(n, _) => TypeRef::Named(n, true),
                TypeRef::List(i, _) => TypeRef::List(i, true),
            })
        } else {
            Ok(t)
        }
    }

    fn value(&mut self, constant: bool) -> Result<GValue, String> {
        match self.next() {
            Some(Tok::Punct('$')) if !constant => Ok(GValue::Var(self.name()?)),
            Some(Tok::Int(i)) => Ok(GValue::Int(i)),
            Some(Tok::Float(f)) => Ok(GValue::Float(f)),
            Some(Tok::Str(s)) => Ok(GValue::Str(s)),
            Some(Tok::Name(n)) => Ok(match n.as_str() {
                "true" => GValue::Bool(true),
                "false" => GValue::Bool(false),
                "null" => GValue::Null,
                _ => GValue::Enum(n),
            }),
            Some(Tok::Punct('[')) => {
                let mut v = Vec::new();
                while !self.eat(']') {
                    if self.peek().is_none() {
                        return Err("Syntax Error: Expected \"]\", found <EOF>.".into());
                    }
                    v.push(self.value(constant)?);
                }
                Ok(GValue::List(v))
            }
            Some(Tok::Punct('{')) => {
                let mut v = Vec::new();
                while !self.eat('}') {
                    let k = self.name()?;
                    self.expect(':')?;
                    v.push((k, self.value(constant)?));
                }
                Ok(GValue::Object(v))
            }
            _ => {
                self.pos -= 1;
                Err(format!("Syntax Error: Unexpected {}.", self.describe_next()))
            }
        }
    }

    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut out = Vec::new();
        while !self.eat('}') {
            if self.peek() == Some(&Tok::Spread) {
                return Err("Syntax Error: fragments are not supported by this emulator.".into());
            }
            if self.peek() == Some(&Tok::Punct('@')) {
                return Err("Syntax Error: directives are not supported by this emulator.".into());
            }
            let first = self.name()?;
            let (alias, name) = if self.eat(':') { (Some(first), self.name()?) } else { (None, first) };
            let mut args = Vec::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let k = self.name()?;
                    self.expect(':')?;
                    args.push((k, self.value(false)?));
                }
            }
            let selection = if self.peek() == Some(&Tok::Punct('{')) { Some(self.selection_set()?) } else { None };
            out.push(Field { alias, name, args, selection });
        }
        if out.is_empty() {
            return Err("Syntax Error: Expected Name, found \"}\".".into());
        }
        Ok(out)
    }
}

/// Parses a document holding exactly one operation.
pub fn parse(src: &str) -> Result<Operation, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let op = if p.peek() == Some(&Tok::Punct('{')) {
        Operation { kind: "query".into(), name: None, variables: Vec::new(), selection: p.selection_set()? }
    } else {
        let kind = p.name()?;
        if kind != "query" && kind != "mutation" {
            return Err(format!("Syntax Error: Unexpected Name \"{kind}\"."));
        }
        let name = match p.peek() {
            Some(Tok::Name(_)) => Some(p.name()?),
            _ => None,
        };
        let mut variables = Vec::new();
        if p.eat('(') {
            while !p.eat(')') {
                p.expect('$')?;
                let v = p.name()?;
                p.expect(':')?;
                let t = p.type_ref()?;
                let default = if p.eat('=') { Some(p.value(true)?) } else { None };
                variables.push((v, t, default));
            }
        }
        Operation { kind, name, variables, selection: p.selection_set()? }
    };
    if p.peek().is_some() {
        return Err(format!(
            "This anonymous operation must be the only defined operation. (emulator: one operation per document; found {})",
            p.describe_next()
        ));
    }
    Ok(op)
}

/// A literal or a variable's JSON value, as JSON (enums become strings).
pub fn to_json(v: &GValue, vars: &BTreeMap<String, Value>) -> Value {
    match v {
        GValue::Var(n) => vars.get(n).cloned().unwrap_or(Value::Null),
        GValue::Int(i) => Value::from(*i),
        GValue::Float(f) => Value::from(*f),
        GValue::Str(s) | GValue::Enum(s) => Value::String(s.clone()),
        GValue::Bool(b) => Value::Bool(*b),
        GValue::Null => Value::Null,
        GValue::List(l) => Value::Array(l.iter().map(|x| to_json(x, vars)).collect()),
        GValue::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), to_json(x, vars))).collect()),
    }
}

/// The value's fields picked by `selection` (lists element-wise; null stays null).
pub fn project(value: &Value, selection: &[Field]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| project(v, selection)).collect()),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for f in selection {
                let v = map.get(&f.name).cloned().unwrap_or(Value::Null);
                let v = match &f.selection {
                    Some(sel) => project(&v, sel),
                    None => v,
                };
                out.insert(f.response_key().to_string(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_typed_and_inline_operations() {
        let op = parse("mutation m($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }").unwrap();
        assert_eq!(op.kind, "mutation");
        assert_eq!(op.variables[0].1, TypeRef::Named("PodStopInput".into(), true));
        assert_eq!(op.selection[0].args[0].1, GValue::Var("input".into()));
        let op = parse(r#"mutation { podFindAndDeployOnDemand(input: {cloudType: SECURE, gpuCount: 1, env: [{key: "K", value: "a \"q\""}], bidPerGpu: 0.35}) { id machine { podHostId } } }"#).unwrap();
        let GValue::Object(fields) = &op.selection[0].args[0].1 else { panic!() };
        assert_eq!(fields[0], ("cloudType".into(), GValue::Enum("SECURE".into())));
        assert_eq!(to_json(&fields[2].1, &BTreeMap::new()), serde_json::json!([{"key": "K", "value": "a \"q\""}]));
        assert!(parse("query { pod(input: {podId: \"x\"}) { id ").is_err());
        assert!(parse("query { ...F }").is_err());
        assert_eq!(parse("{ myself { id } }").unwrap().kind, "query");
    }

    #[test]
    fn projection_follows_the_selection() {
        let op = parse("{ pod { id runtime { ports { publicPort } } } }").unwrap();
        let v = serde_json::json!({"id": "p", "name": "n", "runtime": {"ports": [{"publicPort": 1, "ip": "x"}]}});
        let sel = op.selection[0].selection.as_ref().unwrap();
        assert_eq!(project(&v, sel), serde_json::json!({"id": "p", "runtime": {"ports": [{"publicPort": 1}]}}));
        let nulls = serde_json::json!({"id": "p", "runtime": null});
        assert_eq!(project(&nulls, sel), serde_json::json!({"id": "p", "runtime": null}));
    }
}
