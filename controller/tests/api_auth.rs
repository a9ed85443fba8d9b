//! Authentication and ownership over every route the service documents, as `skycat serve`
//! assembles it (read routes, managed jobs, heartbeats), on a non-public server:
//! * every route in `/openapi.json` but `/healthz`: 401 without a token (with
//!   `WWW-Authenticate: Bearer`), 401 with a revoked or made-up one;
//! * a job's routes with another user's token: 404 (as if absent), and the job list hides it;
//! * with the owner's token (or an admin's) every route works;
//! * a heartbeat with another cluster's agent token: 403;
//! * the document names its security schemes and every `/v1/*` route.
//!
//! No network namespaces: jobs are submitted to a controller with no pools (they end
//! FAILED_NO_RESOURCE), which is enough to own, list, read and cancel them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skycat_controller::api_tokens::Role;
use skycat_controller::home::Home;
use skycat_controller::managed::{Managed, ManagedOptions};
use skycat_controller::Controller;
use skycat_server::{AppBuilder, Auth, CatalogData, ServerConfig};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value, Option<String>) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "get" => self.http.get(&url),
            "post" => self.http.post(&url),
            other => panic!("method {other} is not used by the API"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let www = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)), www)
    }
}

fn embedded_catalog() -> Vec<skycat_catalog::Offer> {
    let empty = tempfile::tempdir().unwrap();
    skycat_catalog::Catalog::load(&skycat_catalog::SkycatHome::new(empty.path())).expect("embedded catalog").catalog.into_offers()
}

/// A body that makes each documented operation succeed for its owner.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("post", "/optimize") => Some(json!({"kind": "task", "resources": {"cpus": "2+"}})),
        ("post", "/v1/jobs") => Some(json!({"name": "mine", "task": {"run": "echo hi"}})),
        ("post", "/v1/agents/heartbeat") => Some(json!({})),
        ("post", _) => Some(json!({})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_needs_a_token_and_jobs_belong_to_their_owner() {
    let home = tempfile::tempdir().unwrap();
    let ctl = Controller::open(Home::at(home.path())).await.expect("controller");
    let store = ctl.store.clone();
    let alice = store.create_api_token("alice", Role::User).await.unwrap();
    let bob = store.create_api_token("bob", Role::User).await.unwrap();
    let root = store.create_api_token("root", Role::Admin).await.unwrap();
    let gone = store.create_api_token("gone", Role::Admin).await.unwrap();
    store.revoke_api_token("gone").await.unwrap();

    let opts = ManagedOptions {
        server_url: None,
        heartbeat_secs: 1.0,
        deadline: Duration::from_secs(3),
        poll: Duration::from_millis(200),
        metadata_url: None,
        metadata_poll_secs: 0.5,
        termination_grace_secs: 1.0,
        launch_retry_for: Duration::from_millis(300),
        ssh_connect_timeout: Duration::from_secs(1),
    };
    let managed = Managed::new(ctl, opts, Arc::new(Vec::new)).await.expect("managed");
    let auth = Auth { verifier: Arc::new(store.clone()) };
    let config = ServerConfig { auth: Some(auth.clone()), public_read: false, ..ServerConfig::default() };
    let app = AppBuilder::new(CatalogData::from_offers(embedded_catalog()))
        .config(config)
        .merge(skycat_server::routes::heartbeat::router(store.clone()))
        .merge(skycat_server::routes::jobs::router(managed.clone(), auth.clone()))
        .merge_streaming(skycat_server::routes::uploads::router(managed.clone(), auth, 64 * 1024))
        .build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let api = Api { base: format!("http://{}", listener.local_addr().unwrap()), http: reqwest::Client::new() };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));

    // Alice owns a job.
    let (code, job, _) = api.call("post", "/v1/jobs", Some(&alice), body_for("post", "/v1/jobs")).await;
    assert_eq!(code, 201, "{job}");
    assert_eq!(job["owner"], "alice");
    let id = job["id"].as_i64().expect("id");

    let (code, doc, _) = api.call("get", "/openapi.json", Some(&bob), None).await;
    assert_eq!(code, 200, "{doc}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_token"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["cluster_token"]["scheme"], "bearer", "{schemes}");
    let paths = doc["paths"].as_object().expect("paths");
    for p in ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/logs", "/v1/jobs/{id}/cancel", "/v1/agents/heartbeat", "/v1/uploads"] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }

    let mut checked = 0;
    for (template, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            let path = template.replace("{id}", &id.to_string());
            let body = body_for(method, template);
            let open = op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty())));
            if template == "/healthz" {
                assert!(open, "/healthz must be documented without security");
                assert_eq!(api.call(method, &path, None, None).await.0, 200);
                continue;
            }
            assert!(!open, "{method} {template} is documented as open");
            // No token, a made-up one, a revoked one: 401, saying how to authenticate.
            for t in [None, Some("skycat_0123456789"), Some(gone.as_str())] {
                let (code, err, www) = api.call(method, &path, t, body.clone()).await;
                assert_eq!(code, 401, "{method} {path} with {t:?}: {err}");
                assert_eq!(www.as_deref(), Some("Bearer"), "{method} {path}");
                assert_eq!(err["kind"], "unauthorized", "{err}");
            }
            if template == "/v1/agents/heartbeat" {
                // API tokens are not agent tokens.
                assert_eq!(api.call(method, &path, Some(&root), body.clone()).await.0, 401);
                checked += 1;
                continue;
            }
            if template.contains("{id}") {
                // Bob cannot see or touch Alice's job: it does not exist for him.
                let (code, err, _) = api.call(method, &path, Some(&bob), body.clone()).await;
                assert_eq!(code, 404, "{method} {path} as bob: {err}");
            }
            for owner in [&alice, &root] {
                let (code, v, _) = api.call(method, &path, Some(owner), body.clone()).await;
                assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations checked");

    // Workdirs come from the client as uploads, never from a path on the server.
    let (code, err, _) =
        api.call("post", "/v1/jobs", Some(&alice), Some(json!({"task": {"run": "ls", "workdir": "/etc"}}))).await;
    assert_eq!((code, err["field"].as_str()), (422, Some("task.workdir")), "{err}");
    let tar = {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("data.txt"), "hello").unwrap();
        let mut buf = Vec::new();
        skycat_archive::pack(src.path(), 1 << 20, &mut buf).unwrap();
        buf
    };
    let up = |token: String, body: Vec<u8>| {
        let http = api.http.clone();
        let url = format!("{}/v1/uploads", api.base);
        async move {
            let r = http.post(url).bearer_auth(token).body(body).send().await.expect("upload");
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (code, v) = up(alice.clone(), tar.clone()).await;
    assert_eq!(code, 201, "{v}");
    let upload = v["id"].as_str().expect("upload id").to_string();
    assert_eq!(v["bytes"].as_u64(), Some(tar.len() as u64));
    let stored: Vec<_> = walk(&home.path().join("uploads/alice"));
    assert!(stored.iter().any(|p| p.ends_with(format!("{upload}.tar"))), "{stored:?}");
    let with_upload = json!({"task": {"run": "cat data.txt"}, "workdir_upload": upload});
    let (code, v, _) = api.call("post", "/v1/jobs", Some(&alice), Some(with_upload.clone())).await;
    assert_eq!(code, 201, "{v}");
    // Bob cannot name Alice's upload.
    let (code, v, _) = api.call("post", "/v1/jobs", Some(&bob), Some(with_upload)).await;
    assert_eq!((code, v["field"].as_str()), (422, Some("workdir_upload")), "{v}");
    // File mounts likewise: a local path is refused, an upload names its destination, and only
    // the caller's own upload can be named.
    let local_mount = json!({"task": {"run": "ls", "file_mounts": [{"dst": "/data", "source": {"kind": "local", "path": "/etc"}}]}});
    let (code, err, _) = api.call("post", "/v1/jobs", Some(&alice), Some(local_mount)).await;
    assert_eq!((code, err["field"].as_str()), (422, Some("task.file_mounts./data")), "{err}");
    let (code, v) = up(alice.clone(), tar.clone()).await;
    assert_eq!(code, 201, "{v}");
    let mount_upload = v["id"].as_str().expect("upload id").to_string();
    let with_mount = json!({"task": {"run": "ls /data"}, "file_mount_uploads": {"/data": {"id": mount_upload}}});
    let (code, v, _) = api.call("post", "/v1/jobs", Some(&bob), Some(with_mount.clone())).await;
    assert_eq!((code, v["field"].as_str()), (422, Some("file_mount_uploads./data.id")), "{v}");
    let (code, v, _) = api.call("post", "/v1/jobs", Some(&alice), Some(with_mount)).await;
    assert_eq!(code, 201, "{v}");
    // Both of Alice's jobs end (no node pool here), and their uploads go with them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let used = [format!("{upload}.tar"), format!("{mount_upload}.tar")];
    while walk(&home.path().join("uploads/alice")).iter().any(|p| used.iter().any(|u| p.ends_with(u))) {
        if std::time::Instant::now() > deadline {
            let jobs = api.call("get", "/v1/jobs", Some(&alice), None).await.1;
            panic!("uploads kept after their jobs ended: {:?}; jobs {jobs}", walk(&home.path().join("uploads/alice")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Over the server's upload limit: 413, and nothing is kept.
    let (code, v) = up(bob.clone(), vec![0u8; 100 * 1024]).await;
    assert_eq!(code, 413, "{v}");
    assert!(walk(&home.path().join("uploads/bob")).iter().all(|p| !p.to_string_lossy().ends_with(".part")));

    // The list shows each user their own jobs; the admin all.
    let (_, bobs, _) = api.call("post", "/v1/jobs", Some(&bob), body_for("post", "/v1/jobs")).await;
    let list = |v: Value| v.as_array().unwrap().iter().map(|j| j["owner"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let mine = list(api.call("get", "/v1/jobs", Some(&bob), None).await.1);
    assert!(!mine.is_empty() && mine.iter().all(|o| o == "bob"), "{mine:?}");
    let all = list(api.call("get", "/v1/jobs", Some(&root), None).await.1);
    assert!(all.contains(&"alice".to_string()) && all.contains(&"bob".to_string()), "{all:?}");
    assert!(bobs["id"].as_i64().is_some());

    // A valid agent token of cluster A posting for cluster B: 403.
    let mut a = test_cluster("clu-a", "ida");
    store.insert_cluster(&a, &skycat_controller::store::hash_token("agent-token-a")).await.unwrap();
    a.name = "clu-b".into();
    a.id = "idb".into();
    store.insert_cluster(&a, &skycat_controller::store::hash_token("agent-token-b")).await.unwrap();
    let t = "2026-12-01T00:00:00Z";
    let hb = json!({"protocol_version": skycat_protocol::PROTOCOL_VERSION, "agent_version": "t", "cluster": "clu-b",
        "node_id": "n0", "node_rank": 0, "seq": 1, "created_at": t, "reason": "periodic", "agent_started_at": t,
        "facts": {"hostname": "h", "cpus": 1, "memory_total_bytes": 1, "memory_available_bytes": 1, "gpus_for_jobs": 0.0},
        "jobs": [], "setup": {"state": "NONE", "log_path": "x"},
        "cost": {"price_per_hour": 1.0, "pinned_at": t, "metered_seconds": 0.0, "accrued_usd": 0.0}, "idle_seconds": 0.0});
    let (code, _, _) = api.call("post", "/v1/agents/heartbeat", Some("agent-token-b"), Some(hb.clone())).await;
    assert_eq!(code, 200, "the body is a valid heartbeat of B");
    let (code, err, _) = api.call("post", "/v1/agents/heartbeat", Some("agent-token-a"), Some(hb)).await;
    assert_eq!(code, 403, "{err}");
    assert_eq!(err["kind"], "forbidden");

    let _ = tx.send(());
    let _ = server.await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
}

fn test_cluster(name: &str, id: &str) -> skycat_controller::store::ClusterRow {
    skycat_controller::store::ClusterRow {
        id: id.into(),
        name: name.into(),
        status: "UP".into(),
        infra: "ssh/p".into(),
        pool: "p".into(),
        num_nodes: 1,
        price_per_hour: 1.0,
        spot: false,
        idle_minutes: None,
        down_on_idle: false,
        server_url: None,
        agent_version: None,
        task_json: None,
        autostopped_at: None,
        created_at: "2026-12-01T00:00:00Z".into(),
        updated_at: "2026-12-01T00:00:00Z".into(),
        terminated_at: None,
        instance_type: None,
        ports: None,
    }
}
