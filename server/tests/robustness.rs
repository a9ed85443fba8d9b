//! User input never causes a 500: thousands of deterministic random mutations of valid bodies
//! and query strings, each answered with a JSON body and a status below 500.

mod common;

use common::{catalog_a, TestServer};
use skycat_server::{AppBuilder, CatalogData};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{", "}", "[", "]", ":", ",", "\"", "-1", "0", "1e309", "NaN", "null", "true", "\"A100:8\"", "\"H100:0.5\"",
    "\"kind\"", "\"task\"", "\"dag\"", "\"fleet\"", "\n", "  ", "- ", "resources", "accelerators", "cpus", "4+",
    "num_nodes", "any_of", "ordered", "\u{0}", "\u{ff}", "99999999999999999999", "tasks", "edges", "target",
];

fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut s: Vec<u8> = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let pos = if s.is_empty() { 0 } else { rng.below(s.len() + 1) };
        match rng.below(4) {
            0 if !s.is_empty() => {
                let end = (pos + 1 + rng.below(8)).min(s.len());
                s.drain(pos.min(s.len())..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.splice(pos..pos, t.iter().copied());
            }
            2 if !s.is_empty() => {
                let p = pos.min(s.len() - 1);
                s[p] = (rng.next() & 0xff) as u8;
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.extend_from_slice(t);
            }
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_and_queries_never_500() {
    let s = TestServer::start(AppBuilder::new(CatalogData::from_offers(catalog_a()))).await;
    let json_seeds = [
        r#"{"kind": "task", "resources": {"accelerators": "A100:8", "cpus": "4+"}, "num_nodes": 2}"#,
        r#"{"kind": "task", "resources": {"any_of": [{"accelerators": "V100:1"}, {"accelerators": {"A100": 1}}]}}"#,
        r#"{"kind": "dag", "tasks": [{"name": "a", "task": {}}, {"name": "b", "task": {"resources": {"accelerators": "A100:1"}}}], "edges": [{"from": "a", "to": "b", "data_gb": 10}]}"#,
        r#"{"kind": "fleet", "target": {"accelerators": 16}, "max_share_per_pool": 0.5, "min_on_demand_share": 0.25, "budget_per_hour": 100}"#,
    ];
    let yaml_seeds = [
        "resources:\n  accelerators: V100:1\n  disk_size: 1024\nenvs:\n  A: 1\nrun: echo\n",
        "num_nodes: 2\nresources:\n  cpus: 4+\n  memory: 32+\n  use_spot: true\n  infra: aws/us-east-1\n",
        "kind: fleet\ntarget:\n  vcpus: 64\nclouds: [aws, gcp]\n",
    ];
    let queries = ["accelerator=A100&count=8", "spot=true&limit=3&cloud=aws,gcp", "min_vcpus=8&min_memory=32&zone=us-central1-a"];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..1500 {
        let (path, ct, body): (String, &str, Vec<u8>) = match i % 3 {
            0 => {
                let seed = json_seeds[rng.below(json_seeds.len())];
                ("/optimize".into(), "application/json", mutate(&mut rng, seed))
            }
            1 => {
                let seed = yaml_seeds[rng.below(yaml_seeds.len())];
                ("/optimize".into(), "text/yaml", mutate(&mut rng, seed))
            }
            _ => {
                let seed = queries[rng.below(queries.len())];
                let q = mutate(&mut rng, seed);
                let q: String = q.iter().map(|b| format!("%{b:02X}")).collect::<String>();
                // Percent-encode everything, then let '&' and '=' through so pairs still form.
                let q = q.replace("%26", "&").replace("%3D", "=");
                (format!("/catalog/offers?{q}"), "", Vec::new())
            }
        };
        let req = if ct.is_empty() {
            s.client.get(s.url(&path))
        } else {
            s.client.post(s.url(&path)).header("content-type", ct).body(body.clone())
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        *statuses.entry(status).or_default() += 1;
        assert!(status < 500, "{status} for {path} {}: {text}", String::from_utf8_lossy(&body));
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}) for {path}: {text}"));
        if status >= 400 {
            assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
        }
    }
    // The mutations must exercise both outcomes, or the test proves nothing.
    assert!(statuses.get(&200).copied().unwrap_or(0) > 50, "{statuses:?}");
    assert!(statuses.iter().filter(|(k, _)| **k >= 400).map(|(_, v)| v).sum::<usize>() > 300, "{statuses:?}");
    s.stop().await;
}
