//! YAML compatibility: SkyPilot-shaped tasks parse; bad ones fail naming the field and line.

use skycat_optimizer::{parse_task_yaml, OptimizeRequest, TaskError};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn llama2_chatbot_parses_with_envs_setup_and_run() {
    let t = parse_task_yaml(&fixture("llama2_chatbot.yaml")).expect("parses");
    let r = t.resources.as_ref().expect("resources");
    let acc = r.accelerators.as_ref().expect("accelerators");
    assert_eq!(acc.choices.len(), 1);
    assert_eq!(acc.choices[0].name, "V100");
    assert_eq!(acc.choices[0].count, 1.0);
    assert_eq!(r.disk_size.map(|d| d.0), Some(1024.0));
    let envs = t.envs.as_ref().expect("envs");
    // An integer YAML value is kept as its string; an empty value means "supply at launch".
    assert_eq!(envs["MODEL_SIZE"].0.as_deref(), Some("7"));
    assert_eq!(envs["HF_TOKEN"].0, None);
    assert!(t.setup.as_deref().unwrap().contains("pip install"));
    assert!(t.run.as_deref().unwrap().contains("SKYPILOT_NUM_GPUS_PER_NODE"));
}

#[test]
fn published_shapes_parse() {
    for f in [
        "minimal.yaml",
        "quickstart.yaml",
        "multinode.yaml",
        "any_of.yaml",
        "ordered.yaml",
        "accel_set.yaml",
        "accel_list.yaml",
        "accel_map.yaml",
        "full_spec.yaml",
    ] {
        if let Err(e) = parse_task_yaml(&fixture(f)) {
            panic!("{f}: {e}");
        }
    }
}

#[test]
fn accelerator_forms() {
    let set = parse_task_yaml(&fixture("accel_set.yaml")).unwrap();
    let a = set.resources.unwrap().accelerators.unwrap();
    assert!(!a.ordered);
    let names: Vec<(String, f64)> = a.choices.iter().map(|c| (c.name.clone(), c.count)).collect();
    assert_eq!(names, vec![("A100".into(), 1.0), ("V100".into(), 1.0)]);

    let list = parse_task_yaml(&fixture("accel_list.yaml")).unwrap();
    let a = list.resources.unwrap().accelerators.unwrap();
    assert!(a.ordered);
    assert_eq!(a.choices[0].name, "V100");

    let map = parse_task_yaml(&fixture("accel_map.yaml")).unwrap();
    let r = map.resources.unwrap();
    assert_eq!(r.accelerators.unwrap().choices[0].count, 8.0);
    assert_eq!(r.use_spot, Some(true));

    // The string forms SkyPilot also accepts.
    for (y, n) in [
        ("resources:\n  accelerators: \"{A100:1, V100:2}\"\n", 2),
        ("resources:\n  accelerators: \"[A100:1, V100:2]\"\n", 2),
        ("resources:\n  accelerators: tpu-v5litepod-8\n", 1),
        ("resources:\n  accelerators: A10:0.5\n", 1),
    ] {
        let t = parse_task_yaml(y).unwrap_or_else(|e| panic!("{y}: {e}"));
        assert_eq!(t.resources.unwrap().accelerators.unwrap().choices.len(), n, "{y}");
    }
}

#[test]
fn cpus_and_memory_forms() {
    let t = parse_task_yaml("resources:\n  cpus: 4+\n  memory: 32\n").unwrap();
    let r = t.resources.unwrap();
    let c = r.cpus.unwrap();
    assert!(c.at_least && c.value == 4.0);
    let m = r.memory.unwrap();
    assert!(!m.at_least && m.value == 32.0);
    let t = parse_task_yaml("resources:\n  cpus: 2\n  memory: 64GB+\n").unwrap();
    let r = t.resources.unwrap();
    assert_eq!(r.memory.unwrap().value, 64.0);
    assert!(r.memory.unwrap().at_least);
    assert!(!r.cpus.unwrap().at_least);
}

#[test]
fn multinode_and_workdir() {
    let t = parse_task_yaml(&fixture("multinode.yaml")).unwrap();
    assert_eq!(t.num_nodes, Some(2));
    assert_eq!(t.name.as_deref(), Some("minGPT-ddp"));
    let q = parse_task_yaml(&fixture("quickstart.yaml")).unwrap();
    assert_eq!(q.workdir, Some(serde_json::json!(".")));
}

#[test]
fn empty_and_comment_only_documents_are_default_tasks() {
    assert_eq!(parse_task_yaml("").unwrap(), Default::default());
    assert_eq!(parse_task_yaml("# nothing\n").unwrap(), Default::default());
}

fn err(yaml: &str) -> TaskError {
    match parse_task_yaml(yaml) {
        Ok(t) => panic!("accepted: {yaml}\n{t:?}"),
        Err(e) => e,
    }
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let e = err("name: x\nresourcez:\n  cpus: 4\n");
    assert_eq!(e.field, "resourcez");
    assert_eq!(e.line, Some(2));
    // (`gpus` is SkyPilot's alias of `accelerators`; `gpu` is not.)
    let e = err("name: x\nresources:\n  cpus: 4\n  gpu: A100\n");
    assert_eq!(e.field, "resources.gpu");
    assert_eq!(e.line, Some(4));
    assert!(e.to_string().contains("resources.gpu"), "{e}");
    assert!(e.to_string().contains("line 4"), "{e}");
}

#[test]
fn ill_typed_fields_are_named_with_their_line() {
    let e = err("name: x\nnum_nodes: two\n");
    assert_eq!(e.field, "num_nodes");
    assert_eq!(e.line, Some(2));

    let e = err("resources:\n  accelerators: A100:lots\n");
    assert_eq!(e.field, "resources.accelerators");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("lots"), "{e}");

    let e = err("resources:\n  use_spot: maybe\n");
    assert_eq!(e.field, "resources.use_spot");
    assert_eq!(e.line, Some(2));

    let e = err("run: echo\nresources:\n  memory: plenty+\n");
    assert_eq!(e.field, "resources.memory");
    assert_eq!(e.line, Some(3));

    let e = err("resources:\n  ports: [8080, http]\n");
    assert_eq!(e.field, "resources.ports[1]");

    let e = err("resources:\n  labels:\n    team: [a, b]\n");
    assert!(e.field.starts_with("resources.labels"), "{e:?}");
    assert_eq!(e.line, Some(3));

    let e = err("resources:\n  any_of:\n    - infra: aws\n      acclerators: A100\n");
    assert_eq!(e.field, "resources.any_of[0].acclerators");
    assert_eq!(e.line, Some(4));
}

#[test]
fn semantic_errors_name_the_field() {
    let e = err("num_nodes: 0\n");
    assert_eq!(e.field, "num_nodes");
    assert_eq!(e.line, Some(1));

    let e = err("resources:\n  cloud: aws\n  infra: gcp\n");
    assert_eq!(e.field, "resources.infra");
    assert_eq!(e.line, Some(3));

    let e = err("resources:\n  infra: aws/us-east-1/a/b\n");
    assert_eq!(e.field, "resources.infra");

    let e = err("resources:\n  accelerators: A100:0\n");
    assert_eq!(e.field, "resources.accelerators");

    let e = err("envs:\n  1BAD: x\n");
    assert_eq!(e.field, "envs.1BAD");
    assert_eq!(e.line, Some(2));

    let e = err("resources:\n  any_of:\n    - infra: aws\n  ordered:\n    - infra: gcp\n");
    assert_eq!(e.field, "resources.ordered");
}

#[test]
fn not_a_mapping_is_rejected() {
    let e = err("- a\n- b\n");
    assert_eq!(e.line, Some(1));
    let e = err("just a string\n");
    assert!(e.line.is_some());
}

#[test]
fn request_from_yaml_detects_kind() {
    match OptimizeRequest::from_yaml(&fixture("llama2_chatbot.yaml")).unwrap() {
        OptimizeRequest::Task(t) => assert!(t.resources.is_some()),
        other => panic!("{other:?}"),
    }
    match OptimizeRequest::from_yaml(&fixture("chain_dag.yaml")).unwrap() {
        OptimizeRequest::Dag(d) => {
            assert_eq!(d.name.as_deref(), Some("dag-name"));
            let names: Vec<&str> = d.tasks.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["simple-1", "simple-2"]);
            assert_eq!(d.edges.len(), 1);
            assert_eq!(d.edges[0].from, "simple-1");
        }
        other => panic!("{other:?}"),
    }
    let fleet = "kind: fleet\ntarget:\n  accelerators: 16\naccelerators: [H100]\nmax_share_per_pool: 0.5\n";
    match OptimizeRequest::from_yaml(fleet).unwrap() {
        OptimizeRequest::Fleet(f) => {
            assert_eq!(f.target.accelerators, Some(16.0));
            assert_eq!(f.max_share_per_pool, Some(0.5));
        }
        other => panic!("{other:?}"),
    }
    let e = OptimizeRequest::from_yaml("kind: fleet\ntarget:\n  gpus: 16\n").unwrap_err();
    assert!(e.to_string().contains("gpus"), "{e}");
    // A pipeline error points at the line in the whole file.
    let bad = "name: p\n---\nname: a\nrun: x\n---\nname: b\nresources:\n  cpus: many\n";
    let e = OptimizeRequest::from_yaml(bad).unwrap_err();
    assert_eq!(e.field, "resources.cpus");
    assert_eq!(e.line, Some(8));
}

#[test]
fn json_round_trip_of_a_task() {
    let t = parse_task_yaml(&fixture("full_spec.yaml")).unwrap();
    let req = OptimizeRequest::Task(t.clone());
    let json = serde_json::to_string(&req).unwrap();
    assert!(json.contains("\"kind\":\"task\""), "{json}");
    let back: OptimizeRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, req);
    // JSON bodies are checked as strictly as YAML.
    let bad = r#"{"kind":"task","resources":{"accelerator":"A100:8"}}"#;
    let e = serde_json::from_str::<OptimizeRequest>(bad).unwrap_err();
    assert!(e.to_string().contains("accelerator"), "{e}");
}
