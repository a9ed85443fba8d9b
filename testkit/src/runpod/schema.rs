//! The part of RunPod's GraphQL schema (graphql-spec.runpod.io, as runpod-python, runpodctl,
//! SkyPilot and dstack use it) that the emulator serves, and graphql-js-style validation of an
//! operation and its variables against it. Messages follow graphql-js's wording.

use std::collections::BTreeMap;

use serde_json::Value;

use super::graphql::{Field, GValue, Operation, TypeRef};

/// (field, type, arguments as (name, type)).
type FieldDef = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const QUERY: &[FieldDef] = &[("pod", "Pod", &[("input", "PodFilter")]), ("myself", "User", &[])];

const MUTATION: &[FieldDef] = &[
    ("podFindAndDeployOnDemand", "Pod", &[("input", "PodFindAndDeployOnDemandInput")]),
    ("podRentInterruptable", "Pod", &[("input", "PodRentInterruptableInput!")]),
    ("podStop", "Pod", &[("input", "PodStopInput!")]),
    ("podResume", "Pod", &[("input", "PodResumeInput!")]),
    ("podBidResume", "Pod", &[("input", "PodBidResumeInput!")]),
    ("podTerminate", "Void", &[("input", "PodTerminateInput!")]),
];

const USER: &[FieldDef] = &[("id", "String", &[]), ("pods", "[Pod]", &[])];

const POD: &[FieldDef] = &[
    ("id", "String!", &[]),
    ("name", "String", &[]),
    ("desiredStatus", "PodStatus", &[]),
    ("lastStatusChange", "String", &[]),
    ("costPerHr", "Float", &[]),
    ("gpuCount", "Int", &[]),
    ("vcpuCount", "Float", &[]),
    ("memoryInGb", "Float", &[]),
    ("podType", "String", &[]),
    ("imageName", "String", &[]),
    ("machineId", "String", &[]),
    ("env", "[String]", &[]),
    ("machine", "PodMachineInfo", &[]),
    ("runtime", "PodRuntime", &[]),
];

const MACHINE: &[FieldDef] = &[("gpuDisplayName", "String", &[]), ("podHostId", "String", &[])];

const RUNTIME: &[FieldDef] = &[
    ("uptimeInSeconds", "Int", &[]),
    ("ports", "[PodRuntimePorts]", &[]),
    ("gpus", "[PodRuntimeGpus]", &[]),
    ("container", "PodRuntimeContainer", &[]),
];

const PORTS: &[FieldDef] = &[
    ("ip", "String", &[]),
    ("isIpPublic", "Boolean", &[]),
    ("privatePort", "Int", &[]),
    ("publicPort", "Int", &[]),
    ("type", "String", &[]),
];

const GPUS: &[FieldDef] = &[("id", "String", &[]), ("gpuUtilPercent", "Int", &[]), ("memoryUtilPercent", "Int", &[])];
const CONTAINER: &[FieldDef] = &[("cpuPercent", "Int", &[]), ("memoryPercent", "Int", &[])];

/// Fields of `PodFindAndDeployOnDemandInput` (runpod-python, runpodctl, dstack, SkyPilot).
const DEPLOY_FIELDS: &[(&str, &str)] = &[
    ("cloudType", "CloudTypeEnum"),
    ("gpuCount", "Int"),
    ("gpuTypeId", "String"),
    ("name", "String"),
    ("imageName", "String"),
    ("containerDiskInGb", "Int"),
    ("volumeInGb", "Int"),
    ("volumeMountPath", "String"),
    ("minVcpuCount", "Int"),
    ("minMemoryInGb", "Int"),
    ("ports", "String"),
    ("dockerArgs", "String"),
    ("env", "[EnvironmentVariableInput]"),
    ("dataCenterId", "String"),
    ("countryCode", "String"),
    ("supportPublicIp", "Boolean"),
    ("startSsh", "Boolean"),
    ("startJupyter", "Boolean"),
    ("templateId", "String"),
    ("networkVolumeId", "String"),
    ("allowedCudaVersions", "[String]"),
    ("minCudaVersion", "String"),
    ("minDownload", "Int"),
    ("minUpload", "Int"),
    ("containerRegistryAuthId", "String"),
    ("cudaVersion", "String"),
    ("volumeKey", "String"),
    ("deployCost", "Float"),
    ("stopAfter", "String"),
    ("terminateAfter", "String"),
];

fn input_fields(name: &str) -> Option<Vec<(&'static str, &'static str)>> {
    Some(match name {
        "PodFindAndDeployOnDemandInput" => DEPLOY_FIELDS.to_vec(),
        "PodRentInterruptableInput" => {
            let mut v = DEPLOY_FIELDS.to_vec();
            v.push(("bidPerGpu", "Float!"));
            v
        }
        "PodFilter" => vec![("podId", "String!")],
        "PodStopInput" => vec![("podId", "String!"), ("incrementVersion", "Boolean")],
        "PodResumeInput" => vec![("podId", "String!"), ("gpuCount", "Int!"), ("syncMachine", "Boolean")],
        "PodBidResumeInput" => vec![("podId", "String!"), ("bidPerGpu", "Float!"), ("gpuCount", "Int!")],
        "PodTerminateInput" => vec![("podId", "String!")],
        "EnvironmentVariableInput" => vec![("key", "String!"), ("value", "String!")],
        _ => return None,
    })
}

fn object_fields(name: &str) -> Option<&'static [FieldDef]> {
    Some(match name {
        "Query" => QUERY,
        "Mutation" => MUTATION,
        "User" => USER,
        "Pod" => POD,
        "PodMachineInfo" => MACHINE,
        "PodRuntime" => RUNTIME,
        "PodRuntimePorts" => PORTS,
        "PodRuntimeGpus" => GPUS,
        "PodRuntimeContainer" => CONTAINER,
        _ => return None,
    })
}

fn enum_values(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "CloudTypeEnum" => &["SECURE", "COMMUNITY", "ALL"],
        "PodStatus" => &["CREATED", "RUNNING", "RESTARTING", "EXITED", "PAUSED", "DEAD", "TERMINATED"],
        _ => return None,
    })
}

fn is_scalar(name: &str) -> bool {
    matches!(name, "String" | "Int" | "Float" | "Boolean" | "ID" | "Void") || enum_values(name).is_some()
}

fn base_name(t: &TypeRef) -> &str {
    match t {
        TypeRef::Named(n, _) => n,
        TypeRef::List(i, _) => base_name(i),
    }
}

/// A validation failure: graphql-js's message and Apollo's error code.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub message: String,
    pub code: &'static str,
}

fn invalid(message: String) -> Invalid {
    Invalid { message, code: "GRAPHQL_VALIDATION_FAILED" }
}

/// Checks `op` against the schema and `variables` against `op`'s variable definitions.
pub fn validate(op: &Operation, variables: &BTreeMap<String, Value>) -> Result<(), Invalid> {
    let root = if op.kind == "mutation" { "Mutation" } else { "Query" };
    let mut declared = BTreeMap::new();
    for (name, ty, _) in &op.variables {
        let base = base_name(ty);
        if !is_scalar(base) && input_fields(base).is_none() {
            return Err(invalid(format!("Unknown type \"{base}\".")));
        }
        declared.insert(name.clone(), ty.clone());
    }
    for (name, ty, default) in &op.variables {
        let value = variables.get(name);
        match value {
            None | Some(Value::Null) if ty.non_null() && default.is_none() => {
                return Err(Invalid {
                    message: format!("Variable \"${name}\" of required type \"{ty}\" was not provided."),
                    code: "BAD_USER_INPUT",
                });
            }
            Some(v) => check_json(v, ty).map_err(|why| Invalid {
                message: format!("Variable \"${name}\" got invalid value {v}; {why}"),
                code: "BAD_USER_INPUT",
            })?,
            None => {}
        }
    }
    // Extra variables are ignored, as graphql-js does.
    check_selection(root, &op.selection, &declared)
}

fn check_selection(ty: &str, selection: &[Field], vars: &BTreeMap<String, TypeRef>) -> Result<(), Invalid> {
    let fields = object_fields(ty).ok_or_else(|| invalid(format!("Unknown type \"{ty}\".")))?;
    for f in selection {
        let Some((_, fty, args)) = fields.iter().find(|(n, _, _)| *n == f.name) else {
            return Err(invalid(format!("Cannot query field \"{}\" on type \"{ty}\".", f.name)));
        };
        let fty = TypeRef::parse(fty);
        for (an, av) in &f.args {
            let Some((_, aty)) = args.iter().find(|(n, _)| n == an) else {
                return Err(invalid(format!("Unknown argument \"{an}\" on field \"{ty}.{}\".", f.name)));
            };
            check_literal(av, &TypeRef::parse(aty), vars)?;
        }
        for (an, aty) in args.iter() {
            let aty = TypeRef::parse(aty);
            if aty.non_null() && !f.args.iter().any(|(n, _)| n == an) {
                return Err(invalid(format!(
                    "Field \"{}\" argument \"{an}\" of type \"{aty}\" is required, but it was not provided.",
                    f.name
                )));
            }
        }
        let base = base_name(&fty);
        match (&f.selection, is_scalar(base)) {
            (Some(_), true) => {
                return Err(invalid(format!(
                    "Field \"{}\" must not have a selection since type \"{fty}\" has no subfields.",
                    f.name
                )))
            }
            (None, false) => {
                return Err(invalid(format!(
                    "Field \"{}\" of type \"{fty}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                    f.name, f.name
                )))
            }
            (Some(sel), false) => check_selection(base, sel, vars)?,
            (None, true) => {}
        }
    }
    Ok(())
}

/// An argument value written in the document (a literal, or a variable used where its declared
/// type fits).
fn check_literal(v: &GValue, ty: &TypeRef, vars: &BTreeMap<String, TypeRef>) -> Result<(), Invalid> {
    if let GValue::Var(name) = v {
        let Some(declared) = vars.get(name) else {
            return Err(invalid(format!("Variable \"${name}\" is not defined.")));
        };
        if !fits(declared, ty) {
            return Err(invalid(format!(
                "Variable \"${name}\" of type \"{declared}\" used in position expecting type \"{ty}\"."
            )));
        }
        return Ok(());
    }
    match (v, ty) {
        (GValue::Null, t) if t.non_null() => Err(invalid(format!("Expected value of type \"{t}\", found null."))),
        (GValue::Null, _) => Ok(()),
        (GValue::List(items), TypeRef::List(inner, _)) => items.iter().try_for_each(|i| check_literal(i, inner, vars)),
        (other, TypeRef::List(inner, _)) => check_literal(other, inner, vars),
        (v, TypeRef::Named(name, _)) => {
            if let Some(fields) = input_fields(name) {
                let GValue::Object(given) = v else {
                    return Err(invalid(format!("Expected value of type \"{ty}\", found {}.", show(v))));
                };
                for (k, x) in given {
                    let Some((_, fty)) = fields.iter().find(|(n, _)| n == k) else {
                        return Err(invalid(format!("Field \"{k}\" is not defined by type \"{name}\".")));
                    };
                    check_literal(x, &TypeRef::parse(fty), vars)?;
                }
                for (k, fty) in &fields {
                    let fty = TypeRef::parse(fty);
                    if fty.non_null() && !given.iter().any(|(n, _)| n == k) {
                        return Err(invalid(format!(
                            "Field \"{name}.{k}\" of required type \"{fty}\" was not provided."
                        )));
                    }
                }
                return Ok(());
            }
            let ok = match (name.as_str(), v) {
                ("String" | "ID", GValue::Str(_)) => true,
                ("ID", GValue::Int(_)) => true,
                ("Int", GValue::Int(i)) => i32::try_from(*i).is_ok(),
                ("Float", GValue::Int(_) | GValue::Float(_)) => true,
                ("Boolean", GValue::Bool(_)) => true,
                (e, GValue::Enum(x)) => enum_values(e).is_some_and(|vals| vals.contains(&x.as_str())),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(invalid(format!("{name} cannot represent value: {}", show(v))))
            }
        }
    }
}

/// graphql-js's "variables in allowed position": same type, or non-null where nullable is
/// expected.
fn fits(declared: &TypeRef, expected: &TypeRef) -> bool {
    match (declared, expected) {
        (_, e) if e.non_null() && !declared.non_null() => false,
        (TypeRef::Named(a, _), TypeRef::Named(b, _)) => a == b,
        (TypeRef::List(a, _), TypeRef::List(b, _)) => fits(a, b),
        _ => false,
    }
}

fn show(v: &GValue) -> String {
    match v {
        GValue::Str(s) => format!("\"{s}\""),
        GValue::Enum(e) => e.clone(),
        GValue::Int(i) => i.to_string(),
        GValue::Float(f) => f.to_string(),
        GValue::Bool(b) => b.to_string(),
        GValue::Null => "null".into(),
        GValue::Var(n) => format!("${n}"),
        GValue::List(_) => "a list".into(),
        GValue::Object(_) => "an object".into(),
    }
}

/// A variable's JSON value against a type (graphql-js's input coercion rules).
fn check_json(v: &Value, ty: &TypeRef) -> Result<(), String> {
    match (v, ty) {
        (Value::Null, t) if t.non_null() => Err(format!("Expected non-nullable type \"{t}\" not to be null.")),
        (Value::Null, _) => Ok(()),
        (Value::Array(items), TypeRef::List(inner, _)) => {
            for (i, x) in items.iter().enumerate() {
                check_json(x, inner).map_err(|e| format!("at index {i}: {e}"))?;
            }
            Ok(())
        }
        (other, TypeRef::List(inner, _)) => check_json(other, inner),
        (v, TypeRef::Named(name, _)) => {
            if let Some(fields) = input_fields(name) {
                let Value::Object(given) = v else {
                    return Err(format!("Expected type \"{name}\" to be an object."));
                };
                for (k, x) in given {
                    let Some((_, fty)) = fields.iter().find(|(n, _)| n == k) else {
                        return Err(format!("Field \"{k}\" is not defined by type \"{name}\"."));
                    };
                    check_json(x, &TypeRef::parse(fty)).map_err(|e| format!("at \"{k}\": {e}"))?;
                }
                for (k, fty) in &fields {
                    let fty = TypeRef::parse(fty);
                    if fty.non_null() && given.get(*k).is_none_or(Value::is_null) {
                        return Err(format!("Field \"{k}\" of required type \"{fty}\" was not provided."));
                    }
                }
                return Ok(());
            }
            let ok = match (name.as_str(), v) {
                ("String" | "ID", Value::String(_)) => true,
                ("Int", Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                ("Float", Value::Number(_)) => true,
                ("Boolean", Value::Bool(_)) => true,
                (e, Value::String(s)) => enum_values(e).is_some_and(|vals| vals.contains(&s.as_str())),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("{name} cannot represent value: {v}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::graphql::parse;
    use super::*;

    fn check(q: &str, vars: Value) -> Result<(), Invalid> {
        let vars: BTreeMap<String, Value> = serde_json::from_value(vars).unwrap();
        validate(&parse(q).unwrap(), &vars)
    }

    #[test]
    fn wrong_fields_and_types_fail() {
        let stop = "mutation s($input: PodStopInput!) { podStop(input: $input) { id desiredStatus } }";
        assert!(check(stop, serde_json::json!({"input": {"podId": "p"}})).is_ok());
        let e = check(stop, serde_json::json!({"input": {"podID": "p"}})).unwrap_err();
        assert!(e.message.contains("\"podID\" is not defined by type \"PodStopInput\""), "{e:?}");
        assert!(check(stop, serde_json::json!({})).unwrap_err().message.contains("was not provided"));
        let e = check("{ pod(input: {podId: \"p\"}) { id status } }", serde_json::json!({})).unwrap_err();
        assert_eq!(e.message, "Cannot query field \"status\" on type \"Pod\".");
        assert!(check("{ pod(input: {podId: 3}) { id } }", serde_json::json!({})).is_err());
        assert!(check("{ pod(input: {podId: \"p\"}) { runtime } }", serde_json::json!({})).is_err());
        assert!(check("mutation { podTerminate(input: {podId: \"p\"}) { id } }", serde_json::json!({})).is_err());
        assert!(check("mutation { podTerminate(input: {podId: \"p\"}) }", serde_json::json!({})).is_ok());
        let spot = "mutation d($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id } }";
        let e = check(spot, serde_json::json!({"input": {"gpuTypeId": "NVIDIA L4", "cloudType": "SECURE"}})).unwrap_err();
        assert!(e.message.contains("bidPerGpu"), "{e:?}");
        let e = check(spot, serde_json::json!({"input": {"bidPerGpu": 0.2, "cloudType": "PRIVATE"}})).unwrap_err();
        assert!(e.message.contains("CloudTypeEnum"), "{e:?}");
        // A variable of the wrong input type.
        let e = check("mutation s($input: PodStopInput!) { podResume(input: $input) { id } }", serde_json::json!({"input": {"podId": "p"}}))
            .unwrap_err();
        assert!(e.message.contains("used in position expecting"), "{e:?}");
    }
}
