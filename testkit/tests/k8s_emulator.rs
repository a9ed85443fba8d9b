//! The Kubernetes API-server emulation (skycat_testkit::k8s) on the wire: raw HTTPS and WebSocket
//! clients for the protocol (auth, discovery, pods, services, watches, exec v4/v5, faults), and the
//! real kubectl (tests in kubectl.rs's section below) as the judge of faithfulness.

mod k8s_support;

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_support::*;
use serde_json::{json, Value};
use skycat_testkit::k8s::{KubeEmulator, KubeNode, Taint};

fn node(name: &str, resources: &[(&str, &str)], labels: &[(&str, &str)], taints: Vec<Taint>) -> KubeNode {
    KubeNode {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        allocatable: resources.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        taints,
    }
}

fn gpu_node(name: &str, gpus: &str) -> KubeNode {
    node(
        name,
        &[("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", gpus), ("pods", "110")],
        &[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")],
        vec![],
    )
}

#[tokio::test]
async fn unauthorized_requests_get_a_401_status() {
    let emulator = KubeEmulator::start(TOKEN).await;
    for path in ["/version", "/api/v1/pods", "/api/v1/namespaces/default/pods/x/exec?command=true&stdout=true"] {
        let reply = Client::new(&emulator, "wrong-token").get(path).await;
        assert_eq!(reply.status, 401, "{path}");
        let status = reply.json();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str(), status["code"].as_u64()),
            (Some("Status"), Some("Unauthorized"), Some(401))
        );
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["status"], "Failure");
    }
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());
}

#[tokio::test]
async fn discovery_describes_the_core_group() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    assert_eq!(client.get("/version").await.json()["major"], "1");
    assert_eq!(client.get("/api").await.json()["versions"], json!(["v1"]));
    assert_eq!(client.get("/apis").await.json()["kind"], "APIGroupList");
    let resources = client.get("/api/v1").await.json();
    let find = |name: &str| {
        resources["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!((find("pods")["namespaced"].as_bool(), find("pods")["kind"].as_str()), (Some(true), Some("Pod")));
    assert_eq!(find("pods")["shortNames"], json!(["po"]));
    assert_eq!((find("nodes")["namespaced"].as_bool(), find("nodes")["kind"].as_str()), (Some(false), Some("Node")));
    assert!(find("nodes")["verbs"].as_array().unwrap().contains(&json!("watch")));
    assert_eq!(find("pods/exec")["kind"], "PodExecOptions");
    assert_eq!(find("services")["shortNames"], json!(["svc"]));
    let ns = client.get("/api/v1/namespaces/default").await.json();
    assert_eq!((ns["kind"].as_str(), ns["status"]["phase"].as_str()), (Some("Namespace"), Some("Active")));
    assert_eq!(client.get("/api/v1/namespaces/nope").await.status, 404);

    // The kubeconfig: one cluster (server + CA data), user (token), context with namespace.
    let config: serde_yaml::Value = serde_yaml::from_str(&emulator.kubeconfig_yaml("lab-1", "skycat")).expect("kubeconfig YAML");
    assert_eq!(config["current-context"].as_str(), Some("lab-1"));
    assert_eq!(config["clusters"][0]["cluster"]["server"].as_str(), Some(emulator.server().as_str()));
    use base64::Engine as _;
    let ca = config["clusters"][0]["cluster"]["certificate-authority-data"].as_str().expect("CA data");
    assert_eq!(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca).unwrap()).unwrap(), emulator.ca_pem());
    assert_eq!(config["users"][0]["user"]["token"].as_str(), Some(TOKEN));
    assert_eq!(config["contexts"][0]["context"]["namespace"].as_str(), Some("skycat"));
    assert_eq!(config["contexts"][0]["context"]["cluster"], config["clusters"][0]["name"]);
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());
}

#[tokio::test]
async fn pods_are_created_listed_and_deleted_with_api_errors() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    let created = client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("p1", &[("cpu", "1")]))).await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let pod = created.json();
    assert_eq!((pod["metadata"]["namespace"].as_str(), pod["status"]["phase"].as_str()), (Some("default"), Some("Pending")));
    assert!(pod["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(pod["spec"]["restartPolicy"], "Always");

    let duplicate = client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("p1", &[]))).await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.json()["reason"], "AlreadyExists");
    let missing = client.get("/api/v1/namespaces/default/pods/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        (missing.json()["reason"].as_str(), missing.json()["message"].as_str()),
        (Some("NotFound"), Some("pods \"nope\" not found"))
    );

    let mut generated = pod_body("", &[]);
    generated["metadata"] = json!({"generateName": "skycat-"});
    let made = client.request("POST", "/api/v1/namespaces/default/pods", Some(&generated)).await.json();
    assert!(made["metadata"]["name"].as_str().unwrap().starts_with("skycat-"));
    assert_eq!(made["metadata"]["name"].as_str().unwrap().len(), "skycat-".len() + 5);

    let list = client.get("/api/v1/namespaces/default/pods").await.json();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());
    let selected = client.get("/api/v1/pods?labelSelector=app%3Dskycat-test,app!%3Dother&fieldSelector=metadata.name%3Dp1").await.json();
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);
    let paged = client.get("/api/v1/namespaces/default/pods?limit=1").await.json();
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);
    let token = paged["metadata"]["continue"].as_str().expect("a continue token");
    emulator.add_node(gpu_node("between-pages", "1")); // a change between the pages
    let rest = client.get(&format!("/api/v1/namespaces/default/pods?limit=1&continue={token}")).await.json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest["items"][0]["metadata"]["name"], paged["items"][0]["metadata"]["name"]);
    // Every page reports the first page's resourceVersion (a watch from it misses nothing).
    assert_eq!(rest["metadata"]["resourceVersion"], paged["metadata"]["resourceVersion"]);
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());

    // Malformed bodies: 400 (strict decoding) or 422 (validation), each kept as a rejection.
    let mut unknown = pod_body("p2", &[]);
    unknown["spec"]["containers"][0]["resource"] = json!({});
    let reply = client.request("POST", "/api/v1/namespaces/default/pods", Some(&unknown)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["message"].as_str().unwrap().contains("unknown field \"spec.containers[0].resource\""));
    let mut top = pod_body("p2", &[]);
    top["bogus"] = json!(1);
    assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&top)).await.status, 400);
    let bad_name = client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("Bad_Name", &[]))).await;
    assert_eq!((bad_name.status, bad_name.json()["reason"].as_str()), (422, Some("Invalid")));
    let mut no_containers = pod_body("p3", &[]);
    no_containers["spec"]["containers"] = json!([]);
    assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&no_containers)).await.status, 422);
    assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("p4", &[("cpu", "lots")]))).await.status, 400);
    assert_eq!(emulator.rejections().len(), 5, "{:?}", emulator.rejections());

    // Paths and verbs the emulation does not serve: 404/405 Status, recorded.
    let unknown = client.get("/apis/apps/v1/namespaces/default/deployments").await;
    assert_eq!((unknown.status, unknown.json()["reason"].as_str()), (404, Some("NotFound")));
    let not_allowed = client.request("PUT", "/api/v1/namespaces/default/pods/p1", Some(&pod_body("p1", &[]))).await;
    assert_eq!((not_allowed.status, not_allowed.json()["reason"].as_str()), (405, Some("MethodNotAllowed")));
    assert_eq!(client.get("/api/v1/pods?labelSelector=a%20b%3Dc").await.status, 400);
    assert_eq!(emulator.rejections().len(), 8, "{:?}", emulator.rejections());

    let deleted = client
        .request(
            "DELETE",
            "/api/v1/namespaces/default/pods/p1",
            Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json()["metadata"]["name"], "p1");
    assert_eq!(client.get("/api/v1/namespaces/default/pods/p1").await.status, 404);
    assert_eq!(client.request("DELETE", "/api/v1/namespaces/default/pods/p1", None).await.status, 404);
    assert!(emulator.requests().iter().any(|r| r == "DELETE /api/v1/namespaces/default/pods/p1"));
}

#[tokio::test]
async fn the_scheduler_respects_requests_selectors_and_taints() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    emulator.add_node(gpu_node("gpu-a", "8"));
    let taint = Taint { key: "nvidia.com/gpu".into(), value: Some("present".into()), effect: "NoSchedule".into() };
    emulator.add_node(node("gpu-tainted", &[("cpu", "16"), ("memory", "64Gi"), ("nvidia.com/gpu", "4")], &[], vec![taint]));
    emulator.add_node(node("cpu-only", &[("cpu", "4"), ("memory", "16Gi")], &[("pool", "cpu")], vec![]));
    let post = |body: Value| {
        let client = client.clone();
        async move { assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&body)).await.status, 201) }
    };
    // Eight GPUs fit only gpu-a; limits alone count as requests.
    let mut big = pod_body("big", &[]);
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "8", "cpu": "500m", "memory": "1Gi"}});
    post(big).await;
    let bound = wait_pod(&emulator, "big", "bound", |p| p["spec"]["nodeName"].is_string()).await;
    assert_eq!(bound["spec"]["nodeName"], "gpu-a");
    assert_eq!(bound["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"], "8");
    // No sandbox in the pool: bound but waiting.
    assert_eq!(bound["status"]["phase"], "Pending");
    assert_eq!(bound["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");

    // Another GPU: gpu-a is full, gpu-tainted is tainted, cpu-only has none.
    post(pod_body("one-more", &[("nvidia.com/gpu", "1")])).await;
    let pending = wait_pod(&emulator, "one-more", "unschedulable", |p| p["status"]["conditions"][0]["reason"] == "Unschedulable").await;
    assert_eq!(pending["status"]["conditions"][0]["type"], "PodScheduled");
    assert_eq!(pending["status"]["conditions"][0]["status"], "False");
    assert_eq!(
        pending["status"]["conditions"][0]["message"],
        "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 2 Insufficient nvidia.com/gpu."
    );

    // With the toleration it lands on the tainted node.
    let mut tolerant = pod_body("tolerant", &[("nvidia.com/gpu", "2")]);
    tolerant["spec"]["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    post(tolerant).await;
    assert_eq!(wait_pod(&emulator, "tolerant", "bound", |p| p["spec"]["nodeName"].is_string()).await["spec"]["nodeName"], "gpu-tainted");
    let mut equal = pod_body("equal", &[("nvidia.com/gpu", "1")]);
    equal["spec"]["tolerations"] = json!([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}]);
    post(equal).await;
    assert_eq!(wait_pod(&emulator, "equal", "bound", |p| p["spec"]["nodeName"].is_string()).await["spec"]["nodeName"], "gpu-tainted");

    // nodeSelector: only cpu-only carries pool=cpu; memory beyond it is unschedulable.
    let mut selected = pod_body("selected", &[("cpu", "2"), ("memory", "8Gi")]);
    selected["spec"]["nodeSelector"] = json!({"pool": "cpu"});
    post(selected).await;
    assert_eq!(wait_pod(&emulator, "selected", "bound", |p| p["spec"]["nodeName"].is_string()).await["spec"]["nodeName"], "cpu-only");
    let mut too_big = pod_body("too-big", &[("memory", "9Gi")]);
    too_big["spec"]["nodeSelector"] = json!({"pool": "cpu"});
    post(too_big).await;
    let refused = wait_pod(&emulator, "too-big", "unschedulable", |p| p["status"]["conditions"][0]["reason"] == "Unschedulable").await;
    assert_eq!(
        refused["status"]["conditions"][0]["message"],
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {nvidia.com/gpu: present}."
    );

    // Deleting the big pod frees gpu-a: the waiting GPU pod is bound there.
    assert_eq!(client.request("DELETE", "/api/v1/namespaces/default/pods/big", None).await.status, 200);
    assert_eq!(wait_pod(&emulator, "one-more", "bound", |p| p["spec"]["nodeName"].is_string()).await["spec"]["nodeName"], "gpu-a");
    // A NotReady node takes nothing new.
    emulator.set_node_ready("cpu-only", false);
    let mut later = pod_body("later", &[("cpu", "1")]);
    later["spec"]["nodeSelector"] = json!({"pool": "cpu"});
    post(later).await;
    let waiting = wait_pod(&emulator, "later", "unschedulable", |p| p["status"]["conditions"][0]["reason"] == "Unschedulable").await;
    assert!(
        waiting["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        "{waiting:#}"
    );
    let not_ready = client.get("/api/v1/nodes/cpu-only").await.json();
    let ready = not_ready["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "Unknown");
    emulator.set_node_ready("cpu-only", true);
    assert_eq!(wait_pod(&emulator, "later", "bound", |p| p["spec"]["nodeName"].is_string()).await["spec"]["nodeName"], "cpu-only");
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());
}

#[tokio::test]
async fn watches_deliver_changes_after_a_resource_version() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    emulator.add_node(gpu_node("n1", "8"));
    let nodes = client.get("/api/v1/nodes").await.json();
    let rv = nodes["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut node_watch = client.watch(&format!("/api/v1/nodes?watch=1&resourceVersion={rv}&labelSelector=nvidia.com/gpu.product")).await;
    let mut pod_watch = client.watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=60")).await;
    emulator.add_node(node("plain", &[("cpu", "1")], &[], vec![])); // filtered out by the selector
    emulator.add_node(gpu_node("n2", "8"));
    let added = node_watch.next().await;
    assert_eq!((added["type"].as_str(), added["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("n2")));
    assert!(added["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());
    emulator.set_node_ready("n2", false);
    assert_eq!(node_watch.next().await["type"], "MODIFIED");
    emulator.remove_node("n2");
    let gone = node_watch.next().await;
    assert_eq!((gone["type"].as_str(), gone["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("n2")));

    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("w1", &[("nvidia.com/gpu", "1")]))).await;
    let added = pod_watch.until("ADDED", "w1").await;
    assert_eq!(added["object"]["status"]["phase"], "Pending");
    let bound = pod_watch.until("MODIFIED", "w1").await;
    assert_eq!(bound["object"]["spec"]["nodeName"], "n1");
    client.request("DELETE", "/api/v1/namespaces/default/pods/w1", None).await;
    pod_watch.until("DELETED", "w1").await;

    // A selector on the phase: eviction (Running → Failed) is the pod leaving the watched set.
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("w2", &[("nvidia.com/gpu", "1")]))).await;
    wait_pod(&emulator, "w2", "bound", |p| p["spec"]["nodeName"].is_string()).await;
    let mut live = client.watch("/api/v1/pods?watch=1&fieldSelector=status.phase!%3DFailed").await;
    assert_eq!(live.next().await["object"]["metadata"]["name"], "w2");
    emulator.evict_pod("default", "w2");
    let left = live.next().await;
    assert_eq!((left["type"].as_str(), left["object"]["status"]["reason"].as_str()), (Some("DELETED"), Some("Evicted")));

    // Replays: a watch from the first list's version sees the whole history again.
    let mut replay = client.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}")).await;
    assert_eq!(replay.next().await["type"], "ADDED");
    replay.until("DELETED", "w1").await;
    // Without a version: the current objects as ADDED.
    let mut fresh = client.watch("/api/v1/nodes?watch=1").await;
    let names: Vec<String> =
        [fresh.next().await, fresh.next().await].iter().map(|e| e["object"]["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["n1", "plain"]);
    // A streaming list: the current objects, then the initial-events-end BOOKMARK.
    let mut streaming =
        client.watch("/api/v1/nodes?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true").await;
    assert_eq!([streaming.next().await["type"].clone(), streaming.next().await["type"].clone()], ["ADDED", "ADDED"]);
    let bookmark = streaming.next().await;
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());
}

#[tokio::test]
async fn a_forbidden_pod_list_answers_403_but_single_pods_work() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("p", &[]))).await;
    emulator.forbid_pod_list(true);
    let cluster = client.get("/api/v1/pods").await;
    assert_eq!(cluster.status, 403);
    assert_eq!(cluster.json()["reason"], "Forbidden");
    assert_eq!(
        cluster.json()["message"],
        "pods is forbidden: User \"system:serviceaccount:skycat:skycat\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    let namespaced = client.get("/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName%3Dn1").await;
    assert_eq!(namespaced.status, 403);
    assert!(namespaced.json()["message"].as_str().unwrap().ends_with("in the namespace \"default\""));
    assert_eq!(client.get("/api/v1/namespaces/default/pods/p").await.status, 200);
    assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("q", &[]))).await.status, 201);
    assert_eq!(client.request("DELETE", "/api/v1/namespaces/default/pods/q", None).await.status, 200);
    emulator.forbid_pod_list(false);
    assert_eq!(client.get("/api/v1/pods").await.status, 200);
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());
}

#[tokio::test]
async fn services_get_cluster_ips_node_ports_and_load_balancers() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    emulator.set_load_balancer_ips(vec!["10.97.9.9".into()]);
    let svc = |name: &str, kind: &str, ports: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"type": kind, "selector": {"app": "x"}, "ports": ports}});
    let post = |body: Value| {
        let client = client.clone();
        async move { client.request("POST", "/api/v1/namespaces/default/services", Some(&body)).await }
    };
    let cluster = post(svc("c", "ClusterIP", json!([{"port": 80}]))).await;
    assert_eq!(cluster.status, 201);
    let cluster = cluster.json();
    assert!(cluster["spec"]["clusterIP"].as_str().unwrap().starts_with("10.96."));
    assert_eq!(cluster["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    let node_port = post(svc(
        "np",
        "NodePort",
        json!([{"name": "http", "port": 8080, "targetPort": "http"}, {"name": "ssh", "port": 22, "nodePort": 30022}]),
    ))
    .await
    .json();
    let port = node_port["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));
    assert_eq!(node_port["spec"]["ports"][1]["nodePort"], 30022);
    let lb = post(svc("lb", "LoadBalancer", json!([{"port": 443, "targetPort": 8443}]))).await.json();
    assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ip"], "10.97.9.9");
    assert!(lb["spec"]["ports"][0]["nodePort"].as_u64().is_some());
    assert_eq!(post(svc("c", "ClusterIP", json!([{"port": 80}]))).await.status, 409);
    assert_eq!(emulator.services().len(), 3);
    assert_eq!(client.get("/api/v1/namespaces/default/services").await.json()["items"].as_array().unwrap().len(), 3);
    assert_eq!(client.get("/api/v1/namespaces/default/services/lb").await.json()["spec"]["type"], "LoadBalancer");
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());

    // Invalid ports are refused and recorded.
    assert_eq!(post(svc("bad1", "NodePort", json!([{"port": 22, "nodePort": 30022}]))).await.status, 422);
    assert_eq!(post(svc("bad2", "ClusterIP", json!([{"port": 70000}]))).await.status, 422);
    assert_eq!(post(svc("bad3", "ClusterIP", json!([{"port": 1}, {"port": 2}]))).await.status, 422);
    assert_eq!(post(svc("bad4", "ClusterIP", json!([{"port": 1, "protocol": "HTTP"}]))).await.status, 422);
    assert_eq!(post(svc("bad5", "ClusterIP", json!([{"port": 1, "targetport": 2}]))).await.status, 400);
    assert_eq!(emulator.rejections().len(), 5);

    assert_eq!(client.request("DELETE", "/api/v1/namespaces/default/services/np", None).await.status, 200);
    assert_eq!(client.get("/api/v1/namespaces/default/services/np").await.status, 404);
    // Its node port is free again.
    assert_eq!(post(svc("again", "NodePort", json!([{"port": 22, "nodePort": 30022}]))).await.status, 201);
}

#[tokio::test]
async fn a_thousand_nodes_and_ten_thousand_pods_list_in_one_response() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    let requests: BTreeMap<String, String> =
        [("cpu", "1"), ("nvidia.com/gpu", "1")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for i in 0..1000 {
        emulator.add_node(gpu_node(&format!("node-{i:04}"), "8"));
        emulator.add_pods_bulk("team", &format!("node-{i:04}"), 10, requests.clone());
    }
    // Warm the connection path, then time the lists (figures only; nothing asserts speed).
    client.get("/version").await;
    let started = Instant::now();
    let nodes_reply = client.get("/api/v1/nodes").await;
    let nodes_took = started.elapsed();
    let started = Instant::now();
    let pods = client.get("/api/v1/pods").await;
    let pods_took = started.elapsed();
    let (nodes, pods_body) = (nodes_reply.json(), pods.json());
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1000);
    assert_eq!(pods_body["items"].as_array().unwrap().len(), 10_000);
    assert_eq!(pods_body["items"][0]["status"]["phase"], "Running");
    eprintln!(
        "figures: list 1,000 nodes: first byte {:?}, all {:?} ({} bytes); 10,000 pods: first byte {:?}, all {:?} ({} bytes) (loopback TLS, this test's client)",
        nodes_reply.first_byte,
        nodes_took,
        nodes_reply.body.len(),
        pods.first_byte,
        pods_took,
        pods.body.len()
    );
    let on_one = client.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-0007,status.phase!%3DSucceeded").await.json();
    assert_eq!(on_one["items"].as_array().unwrap().len(), 10);
    // The nodes are full: a pod wanting all eight GPUs waits.
    client.request("POST", "/api/v1/namespaces/team/pods", Some(&pod_body("whole", &[("nvidia.com/gpu", "8")]))).await;
    let waiting = wait_pod(&emulator, "whole", "unschedulable", |p| p["status"]["conditions"][0]["reason"] == "Unschedulable").await;
    assert_eq!(waiting["status"]["conditions"][0]["message"], "0/1000 nodes are available: 1000 Insufficient nvidia.com/gpu.");
    // Exec into an accounting-only pod is refused before any upgrade.
    let refused = client.exec("/api/v1/namespaces/team/pods/bulk-0/exec?command=true&stdout=true", "v5.channel.k8s.io").await;
    assert!(refused.as_ref().is_err_and(|e| e.starts_with("400") && e.contains("no sandbox")), "{:?}", refused.map(|r| r.1));
}

#[tokio::test]
async fn exec_runs_in_the_pods_sandbox_over_v5_and_v4() {
    let hosts = TestHosts::up(1);
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    emulator.add_node(gpu_node("n1", "8"));
    // Before it runs, exec is refused before the upgrade.
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("p", &[("nvidia.com/gpu", "1")]))).await;
    wait_pod(&emulator, "p", "bound", |p| p["spec"]["nodeName"].is_string()).await;
    let early = client.exec(&exec_path("p", &["true"], false, false), "v5.channel.k8s.io").await;
    assert!(early.as_ref().is_err_and(|e| e.starts_with("400") && e.contains("is not running")), "{:?}", early.map(|r| r.1));

    emulator.add_sandboxes(hosts.sandboxes());
    let running = wait_running(&emulator, "p").await;
    let sandbox = &hosts.sandboxes()[0];
    assert_eq!(running["status"]["podIP"], sandbox.pod_ip.as_str());
    assert_eq!(running["status"]["hostIP"], sandbox.host_ip.as_str());
    assert!(running["status"]["conditions"].as_array().unwrap().iter().all(|c| c["status"] == "True"));
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);

    // v5 preferred; stdout, stderr and the exit code on channel 3.
    let (ws, protocol) = client
        .exec(&exec_path("p", &["sh", "-c", "echo hi; echo err >&2; exit 3"], false, false), "v4.channel.k8s.io,v5.channel.k8s.io")
        .await
        .unwrap();
    assert_eq!(protocol, "v5.channel.k8s.io");
    let out = run_exec(ws, None, false).await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("hi\n", "err\n"));
    assert_eq!(out.status["status"], "Failure");
    assert_eq!(out.status["reason"], "NonZeroExitCode");
    assert_eq!(out.status["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));

    // The environment and place of a container: its env (fieldRef too), HOME, HOSTNAME, cwd, netns.
    let script = "echo $HOSTNAME $MY_POD_IP $GREETING $HOME; pwd; ip -4 -o addr show | grep -c 10.231";
    let (ws, _) = client.exec(&exec_path("p", &["sh", "-c", script], false, false), "v5.channel.k8s.io").await.unwrap();
    let out = run_exec(ws, None, false).await;
    let home = sandbox.home.display().to_string();
    assert_eq!(out.stdout, format!("p {} hello {home}\n{home}\n1\n", sandbox.pod_ip));
    assert_eq!(out.status, json!({"metadata": {}, "status": "Success"}));

    // v5 stdin: data, then the close signal gives the process EOF.
    let (ws, _) = client.exec(&exec_path("p", &["cat"], true, false), "v5.channel.k8s.io").await.unwrap();
    let out = run_exec(ws, Some(b"through stdin\n"), true).await;
    assert_eq!((out.stdout.as_str(), out.status["status"].as_str()), ("through stdin\n", Some("Success")));

    let wrong_container = client.exec(&format!("{}&container=sidecar", exec_path("p", &["true"], false, false)), "v5.channel.k8s.io").await;
    assert!(
        wrong_container.as_ref().is_err_and(|e| e.contains("container sidecar is not valid for pod p")),
        "{:?}",
        wrong_container.map(|r| r.1)
    );

    // A command that is not there: the runtime's error on channel 3, no output.
    let (ws, _) = client.exec(&exec_path("p", &["no-such-command", "x"], false, false), "v5.channel.k8s.io").await.unwrap();
    let out = run_exec(ws, None, false).await;
    assert_eq!((out.status["status"].as_str(), out.status["reason"].as_str()), (Some("Failure"), Some("InternalError")));
    assert!(out.status["message"].as_str().unwrap().contains("exec: \"no-such-command\": executable file not found in $PATH"), "{out:?}");

    // v4 when v5 is not offered.
    let (ws, protocol) = client.exec(&exec_path("p", &["sh", "-c", "exit 7"], false, false), "v4.channel.k8s.io").await.unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    assert_eq!(run_exec(ws, None, false).await.status["details"]["causes"][0]["message"], "7");
    let unsupported = client.exec(&exec_path("p", &["true"], false, false), "v3.channel.k8s.io").await;
    assert!(unsupported.as_ref().is_err_and(|e| e.starts_with("400")), "{:?}", unsupported.map(|r| r.1));
    assert_eq!(emulator.rejections().len(), 1, "{:?}", emulator.rejections());

    // A TTY: the terminal carries the output.
    let (ws, _) =
        client.exec(&exec_path("p", &["sh", "-c", "tty >/dev/null && echo on-a-tty"], false, true), "v5.channel.k8s.io").await.unwrap();
    let out = run_exec(ws, None, false).await;
    assert!(out.stdout.contains("on-a-tty"), "{out:?}");

    // An interactive shell on a TTY (what `skycat ssh` does): input in, echo and output back, its exit code.
    let (ws, _) = client.exec(&exec_path("p", &["sh"], true, true), "v5.channel.k8s.io").await.unwrap();
    let out = run_exec(ws, Some(b"echo $((6*7))\nexit 5\n"), false).await;
    assert!(out.stdout.contains("42\r\n"), "{out:?}");
    assert_eq!(out.status["details"]["causes"][0]["message"], "5");

    // A daemon started with setsid outlives its exec session, and the file it writes stays.
    let (ws, _) = client
        .exec(
            &exec_path("p", &["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo state > marker"], false, false),
            "v5.channel.k8s.io",
        )
        .await
        .unwrap();
    assert_eq!(run_exec(ws, None, false).await.status["status"], "Success");
    // (The shell may exit before its background child has exec'd sleep.)
    wait_until("the daemon runs", || hosts.process_names(1).contains(&"sleep".to_string())).await;
    assert!(sandbox.home.join("marker").exists());

    // Eviction: Failed/Evicted, processes gone (the host's sshd stays), home emptied, exec refused.
    emulator.evict_pod("default", "p");
    let evicted = emulator.pods().into_iter().find(|p| p["metadata"]["name"] == "p").unwrap();
    assert_eq!((evicted["status"]["phase"].as_str(), evicted["status"]["reason"].as_str()), (Some("Failed"), Some("Evicted")));
    assert_eq!(hosts.process_names(1), ["sshd"]);
    assert!(!sandbox.home.join("marker").exists());
    let after = client.exec(&exec_path("p", &["true"], false, false), "v5.channel.k8s.io").await;
    assert!(after.as_ref().is_err_and(|e| e.starts_with("400")), "{:?}", after.map(|r| r.1));

    // Its sandbox serves the next pod.
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("next", &[("nvidia.com/gpu", "1")]))).await;
    assert_eq!(wait_running(&emulator, "next").await["status"]["podIP"], sandbox.pod_ip.as_str());
}

#[tokio::test]
async fn node_loss_ends_its_pods_and_frees_their_sandboxes() {
    let hosts = TestHosts::up(1);
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    emulator.add_sandboxes(hosts.sandboxes());
    emulator.add_node(gpu_node("spot", "8"));
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("on-spot", &[("nvidia.com/gpu", "4")]))).await;
    wait_running(&emulator, "on-spot").await;
    let rv = client.get("/api/v1/pods").await.json()["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watch = client.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}&fieldSelector=spec.nodeName%3Dspot")).await;
    let (ws, _) = client
        .exec(&exec_path("on-spot", &["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"], false, false), "v5.channel.k8s.io")
        .await
        .unwrap();
    run_exec(ws, None, false).await;

    // NotReady: pods not Ready, exec cannot reach the kubelet.
    emulator.set_node_ready("spot", false);
    let not_ready = watch.until("MODIFIED", "on-spot").await;
    let ready = not_ready["object"]["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "False");
    let refused = client.exec(&exec_path("on-spot", &["true"], false, false), "v5.channel.k8s.io").await;
    assert!(refused.as_ref().is_err_and(|e| e.starts_with("500")), "{:?}", refused.map(|r| r.1));

    emulator.remove_node("spot");
    watch.until("DELETED", "on-spot").await;
    assert!(emulator.pods().is_empty());
    assert_eq!(hosts.process_names(1), ["sshd"]);
    assert_eq!(client.get("/api/v1/nodes/spot").await.status, 404);
    emulator.add_node(gpu_node("replacement", "8"));
    client.request("POST", "/api/v1/namespaces/default/pods", Some(&pod_body("recovered", &[("nvidia.com/gpu", "4")]))).await;
    assert_eq!(wait_running(&emulator, "recovered").await["spec"]["nodeName"], "replacement");
}

/// Runs the machine's kubectl against `kubeconfig` (its caches in `home`); (exit code, stdout, stderr).
fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    assert!(std::path::Path::new("/usr/bin/kubectl").exists(), "the kubectl faithfulness test needs the real kubectl at /usr/bin/kubectl");
    let mut child = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", home)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write kubectl stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    eprintln!("$ kubectl {}\n{stdout}{stderr}(exit {:?})", args.join(" "), out.status.code());
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_agrees_with_the_emulator() {
    let hosts = TestHosts::up(2);
    let emulator = KubeEmulator::start(TOKEN).await;
    emulator.add_sandboxes(hosts.sandboxes());
    emulator.add_node(gpu_node("gpu-a", "8"));
    emulator.add_node(node("cpu-b", &[("cpu", "4"), ("memory", "16Gi")], &[("node-role.kubernetes.io/worker", "")], vec![]));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, emulator.kubeconfig_yaml("emu", "default")).expect("write kubeconfig");
    let home = dir.path();
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let (config, home) = (config.clone(), home.to_path_buf());
        async move { tokio::task::spawn_blocking(move || kubectl(&config, &home, args, stdin)).await.expect("kubectl thread") }
    };

    let (code, stdout, stderr) = run(&["get", "nodes", "-L", "nvidia.com/gpu.product"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "GPU.PRODUCT"]);
    assert_eq!((lines[1][0], lines[1][1], lines[1][2], lines[1][4]), ("cpu-b", "Ready", "worker", "v1.32.4"));
    assert_eq!((lines[2][0], lines[2][5]), ("gpu-a", "NVIDIA-H100-80GB-HBM3"));
    let (code, stdout, stderr) = run(&["get", "nodes", "-o", "json"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let nodes: Value = serde_json::from_str(&stdout).expect("kubectl -o json");
    assert_eq!(nodes["items"][1]["status"]["allocatable"]["nvidia.com/gpu"], "8");

    let pod_yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kc\n  labels:\n    app: kc\nspec:\n  containers:\n  - name: main\n    image: ubuntu:22.04\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n";
    std::fs::write(dir.path().join("pod.yaml"), pod_yaml).expect("write pod.yaml");
    let pod_file: &'static str = Box::leak(dir.path().join("pod.yaml").display().to_string().into_boxed_str());
    let create_args: &'static [&'static str] = Box::leak(vec!["create", "-f", pod_file].into_boxed_slice());
    let (code, stdout, stderr) = run(create_args, None).await;
    assert_eq!((code, stdout.trim(), stderr.as_str()), (0, "pod/kc created", ""));
    wait_running(&emulator, "kc").await;

    let (code, stdout, stderr) = run(&["get", "pods"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(&lines[1][..4], ["kc", "1/1", "Running", "0"]);
    let (code, stdout, stderr) = run(&["get", "pods", "-o", "wide"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]);
    assert_eq!((lines[1][5], lines[1][6]), (hosts.sandboxes()[0].pod_ip.as_str(), "gpu-a"));
    let (code, stdout, stderr) = run(&["get", "pods", "-A", "-L", "app"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP"]);
    assert_eq!((lines[1][0], lines[1][1], lines[1][6]), ("default", "kc", "kc"));

    let (code, stdout, stderr) = run(&["describe", "pod", "kc"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.contains("Status:           Running") && stdout.contains("nvidia.com/gpu:  1"), "{stdout}");

    let (code, stdout, stderr) = run(&["exec", "kc", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"], None).await;
    assert_eq!((code, stdout.as_str()), (3, "hi\n"));
    assert_eq!(stderr, "err\ncommand terminated with exit code 3\n");
    let (code, stdout, stderr) = run(&["exec", "-i", "kc", "--", "cat"], Some("piped through\nstdin\n")).await;
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "piped through\nstdin\n", ""));
    let (code, stdout, stderr) = run(&["exec", "kc", "-c", "main", "--", "printenv", "HOSTNAME"], None).await;
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "kc\n", ""));

    let svc_yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: kc\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n    nodePort: 30080\n";
    std::fs::write(dir.path().join("svc.yaml"), svc_yaml).expect("write svc.yaml");
    let svc_file: &'static str = Box::leak(dir.path().join("svc.yaml").display().to_string().into_boxed_str());
    let create_args: &'static [&'static str] = Box::leak(vec!["create", "-f", svc_file].into_boxed_slice());
    let (code, stdout, stderr) = run(create_args, None).await;
    assert_eq!((code, stdout.trim(), stderr.as_str()), (0, "service/web created", ""));
    let (code, stdout, stderr) = run(&["get", "svc", "-o", "wide"], None).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
    assert_eq!((lines[1][0], lines[1][1], lines[1][3], lines[1][4], lines[1][6]), ("web", "NodePort", "<none>", "80:30080/TCP", "app=kc"));
    let (code, stdout, stderr) = run(&["delete", "svc", "web"], None).await;
    assert_eq!((code, stdout.trim(), stderr.as_str()), (0, "service \"web\" deleted", ""));

    let (code, stdout, stderr) = run(&["delete", "pod", "kc"], None).await;
    assert_eq!((code, stdout.trim(), stderr.as_str()), (0, "pod \"kc\" deleted", ""));
    assert!(emulator.pods().is_empty());
    let (code, _, stderr) = run(&["get", "pod", "kc"], None).await;
    assert_eq!((code, stderr.trim()), (1, "Error from server (NotFound): pods \"kc\" not found"));
    assert!(emulator.rejections().is_empty(), "{:?}", emulator.rejections());

    // A wrong token: kubectl says Unauthorized.
    let wrong = emulator.kubeconfig_yaml("emu", "default").replace(TOKEN, "not-the-token");
    std::fs::write(&config, wrong).expect("write kubeconfig");
    let (code, _, stderr) = run(&["get", "nodes"], None).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("error: You must be logged in to the server (Unauthorized)"), "{stderr}");
}

#[tokio::test]
async fn malformed_bodies_are_refused_without_harm() {
    let emulator = KubeEmulator::start(TOKEN).await;
    let client = Client::new(&emulator, TOKEN);
    let pod = |patch: &dyn Fn(&mut Value)| {
        let mut body = pod_body("m", &[("cpu", "1")]);
        patch(&mut body);
        body
    };
    let bodies: Vec<Value> = vec![
        json!([1, 2]),
        json!("pod"),
        json!({"apiVersion": "v1", "kind": "Pod"}),
        json!({"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "m"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"}}),
        pod(&|b| b["metadata"] = json!("m")),
        pod(&|b| b["metadata"]["namespace"] = json!("other")),
        pod(&|b| b["spec"] = json!("x")),
        pod(&|b| b["spec"]["containers"] = json!([1, "two"])),
        pod(&|b| b["spec"]["containers"] = json!({"name": "main"})),
        pod(&|b| b["spec"]["containers"][0]["resources"]["limits"] = json!({"memory": "1Qi"})),
        pod(&|b| b["spec"]["containers"][0]["resources"]["requests"] = json!({"cpu": -1})),
        pod(&|b| b["spec"]["containers"][0]["name"] = json!("Main_1")),
        pod(&|b| b["spec"]["containers"][0]["image"] = json!("")),
        pod(&|b| b["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists", "value": "v"}])),
        pod(&|b| b["spec"]["tolerations"] = json!([{"key": "k", "operator": "Maybe"}])),
        pod(&|b| b["spec"]["tolerations"] = json!([{"key": "k", "operator": "Equal", "tolerationseconds": 5}])),
        pod(&|b| b["spec"]["containers"][0]["env"] = json!([{"name": "A", "valuefrom": {}}])),
    ];
    for body in &bodies {
        let reply = client.request("POST", "/api/v1/namespaces/default/pods", Some(body)).await;
        assert!(matches!(reply.status, 400 | 422), "{body}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["kind"], "Status");
    }
    // Odd but valid shapes are accepted and defaulted without harm.
    let odd = pod(&|b| {
        b["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": 2}});
        b["spec"]["tolerations"] = json!([]);
    });
    assert_eq!(client.request("POST", "/api/v1/namespaces/default/pods", Some(&odd)).await.status, 201);
    for garbage in [&b"{not json"[..], b"", b"\xff\xfe"] {
        let reply = client.request_raw("POST", "/api/v1/namespaces/default/services", garbage).await;
        assert_eq!(reply.status, 400);
    }
    assert_eq!(client.request("DELETE", "/api/v1/namespaces/default/pods/m", Some(&json!([1]))).await.status, 400);
    assert_eq!(client.get("/api/v1/pods?continue=not-a-token&limit=1").await.status, 400);
    assert_eq!(client.get("/api/v1/pods?watch=1&resourceVersion=abc").await.status, 400);
    assert_eq!(client.get("/api/v1/nodes?fieldSelector=status.phase%3DRunning").await.status, 400);
    // Still serving, and every refusal recorded.
    assert_eq!(client.get("/api/v1/namespaces/default/pods/m").await.status, 200);
    assert_eq!(emulator.rejections().len(), bodies.len() + 3 + 4, "{:#?}", emulator.rejections());
}
