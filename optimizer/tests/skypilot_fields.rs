//! The SkyPilot field table (issue 11 item 1): a task using each field of SkyPilot 0.14.1's task
//! schema gets the documented behaviour, a refused or unknown field's message names the field,
//! and docs/skypilot-fields.md publishes the same table.

use std::collections::BTreeMap;
use std::path::Path;

use skycat_optimizer::spec::{substitute_envs, Autostop, FieldStatus, FIELDS};
use skycat_optimizer::{parse_task_yaml, TaskSpec};

/// The last path component a field row names (`resources.disk_tier: best` → `disk_tier`).
fn leaf(field: &str) -> &str {
    let head = field.split([':', ' ', ',', '/']).next().unwrap_or(field);
    head.rsplit('.').next().unwrap_or(head)
}

#[test]
fn every_row_gets_its_documented_behaviour() {
    for row in FIELDS {
        let parsed = parse_task_yaml(row.example);
        let leafname = leaf(row.field);
        match row.status {
            FieldStatus::Implemented | FieldStatus::Warned => {
                let task = parsed.unwrap_or_else(|e| panic!("{}: example does not parse: {e}", row.field));
                let report = task.field_report();
                assert!(report.refused.is_empty(), "{}: refused: {:?}", row.field, report.refused);
                if row.status == FieldStatus::Warned {
                    assert_eq!(report.warnings.len(), 1, "{}: {:?}", row.field, report.warnings);
                    assert!(report.warnings[0].field.ends_with(leafname), "{}: {:?}", row.field, report.warnings[0]);
                } else {
                    assert!(report.warnings.is_empty(), "{}: warned: {:?}", row.field, report.warnings);
                }
            }
            FieldStatus::Refused => {
                // Refused at parse time (unknown to the schema) or by the launch-time report;
                // either way one line that names the field.
                let err = match parsed {
                    Err(e) => e,
                    Ok(task) => {
                        let report = task.field_report();
                        assert_eq!(report.refused.len(), 1, "{}: {:?}", row.field, report.refused);
                        report.refused[0].clone()
                    }
                };
                let line = err.to_string();
                assert!(!line.contains('\n'), "{}: {line}", row.field);
                let named = if row.field == "any other field" { "resource" } else { leafname };
                assert!(err.field.contains(named), "{}: field `{}` in {line}", row.field, err.field);
                // What to do instead.
                assert!(
                    ["use", "remove", "write", "give", "pass", "clone", "install", "serve", "launch", "choose", "raise", "run"]
                        .iter()
                        .any(|w| err.message.contains(w)),
                    "{}: no alternative in {line}",
                    row.field
                );
            }
        }
    }
}

#[test]
fn the_table_covers_skypilots_schema() {
    // Top-level and resources fields of SkyPilot 0.14.1's schema (sky/utils/schemas.py).
    let task_fields = [
        "name", "workdir", "event_callback", "num_nodes", "resources", "file_mounts", "service", "pool", "setup", "run", "envs",
        "secrets", "managed_secrets", "inputs", "outputs", "file_mounts_mapping", "config", "volumes", "volume_mounts",
        "api_server_access", "_metadata",
    ];
    let resources_fields = [
        "cloud", "region", "zone", "infra", "cpus", "memory", "accelerators", "instance_type", "use_spot", "job_recovery",
        "volumes", "disk_size", "ephemeral_storage", "disk_tier", "network_tier", "local_disk", "max_hourly_cost", "ports",
        "labels", "accelerator_args", "_no_missing_accel_warnings", "image_id", "autostop", "priority", "priority_class",
        "_docker_login_config", "_is_image_managed", "_requires_fuse", "_cluster_config_overrides", "any_of", "ordered",
        "gpus",
    ];
    let rows: Vec<&str> = FIELDS.iter().map(|r| r.field).collect();
    for f in task_fields {
        assert!(rows.iter().any(|r| r.split([':', ' ']).next() == Some(f)), "task field {f} has no row");
    }
    for f in resources_fields {
        assert!(rows.iter().any(|r| r.starts_with("resources.") && r.contains(f)), "resources.{f} has no row");
    }
}

#[test]
fn the_published_table_matches() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/skypilot-fields.md")).expect("docs/skypilot-fields.md");
    for row in FIELDS {
        let line = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", row.field)))
            .unwrap_or_else(|| panic!("no row for `{}` in docs/skypilot-fields.md", row.field));
        assert!(line.contains(&format!("| {} |", row.status)), "{}: {line}", row.field);
    }
    for s in [FieldStatus::Implemented, FieldStatus::Refused, FieldStatus::Warned] {
        let n = FIELDS.iter().filter(|r| r.status == s).count();
        assert!(doc.contains(&format!("{n} {s}")), "the summary should say {n} {s}");
    }
}

#[test]
fn unknown_fields_are_named() {
    let e = parse_task_yaml("resources:\n  acelerators: A100:8\n").unwrap_err();
    assert_eq!(e.field, "resources.acelerators");
    assert!(e.message.contains("remove it"), "{e}");
    assert_eq!(e.line, Some(2));
    let e = parse_task_yaml("servce:\n  replicas: 2\n").unwrap_err();
    assert_eq!(e.field, "servce");
}

#[test]
fn gpus_is_an_alias_of_accelerators() {
    let t = parse_task_yaml("resources:\n  gpus: H100:8\n").unwrap();
    assert_eq!(t.resources.unwrap().accelerators.unwrap().choices[0].to_string(), "H100:8");
    let e = parse_task_yaml("resources:\n  gpus: H100:8\n  accelerators: A100:8\n").unwrap_err();
    assert!(e.to_string().contains("accelerators"), "{e}");
}

#[test]
fn refusals_inside_alternatives_name_the_entry() {
    let t = parse_task_yaml("resources:\n  any_of:\n    - accelerators: A100:1\n    - accelerators: V100:1\n      disk_tier: ultra\n").unwrap();
    let r = t.field_report();
    assert_eq!(r.refused[0].field, "resources.any_of[1].disk_tier");
}

#[test]
fn autostop_forms() {
    let a = |y: &str| parse_task_yaml(&format!("resources:\n  autostop: {y}\n")).unwrap().resources.unwrap().autostop_setting();
    assert_eq!(a("false").unwrap(), Some(Autostop { idle_minutes: None, down: false }));
    assert_eq!(a("true").unwrap(), Some(Autostop { idle_minutes: Some(5.0), down: false }));
    assert_eq!(a("10").unwrap(), Some(Autostop { idle_minutes: Some(10.0), down: false }));
    assert_eq!(a("2h").unwrap(), Some(Autostop { idle_minutes: Some(120.0), down: false }));
    assert_eq!(a("{idle_minutes: 3, down: true}").unwrap(), Some(Autostop { idle_minutes: Some(3.0), down: true }));
    let e = a("{idle_minutes: 3, hook: x}").unwrap_err();
    assert_eq!(e.field, "resources.autostop.hook");
    let e = a("soon").unwrap_err();
    assert_eq!(e.field, "resources.autostop");
}

#[test]
fn env_substitution_follows_skypilot() {
    let vars: BTreeMap<String, String> =
        [("SIZE", "7"), ("BUCKET", "my-bucket"), ("USER_", "ann")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(substitute_envs("/models/llama-${SIZE}b", &vars), "/models/llama-7b");
    assert_eq!(substitute_envs("s3://$BUCKET/$USER_/x", &vars), "s3://my-bucket/ann/x");
    // Unknown names and lone dollars stay as written; braces are optional, as in SkyPilot.
    assert_eq!(substitute_envs("$HOME/${NOPE}/$ and $5", &vars), "$HOME/${NOPE}/$ and $5");
    assert_eq!(substitute_envs("${SIZE and $SIZE}", &vars), "7 and 7");
    assert_eq!(substitute_envs("$SIZEX", &vars), "$SIZEX");
    let mut t: TaskSpec = parse_task_yaml(
        "workdir: ~/src/${USER_}\nenvs:\n  SIZE: 7\nfile_mounts:\n  /data/llama-${SIZE}b: s3://$BUCKET/llama-${SIZE}b\n  /out:\n    name: $BUCKET-out\n    source: ./out-${SIZE}\n    mode: MOUNT\n",
    )
    .unwrap();
    t.fill_in_envs(&vars);
    assert_eq!(t.workdir.as_ref().unwrap(), "~/src/ann");
    let fm = t.file_mounts.as_ref().unwrap();
    assert_eq!(fm["/data/llama-7b"], "s3://my-bucket/llama-7b");
    assert_eq!(fm["/out"]["name"], "my-bucket-out");
    assert_eq!(fm["/out"]["source"], "./out-7");
    assert_eq!(fm["/out"]["mode"], "MOUNT");
}
