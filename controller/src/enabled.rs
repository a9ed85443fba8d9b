//! Which clouds `skycat check` enabled for launching: the cache in
//! `$SKYCAT_HOME/enabled_clouds.json`, written atomically by `skycat check` and read by
//! whatever picks placements.
//!
//! A cloud launches only when (1) `skycat check` verified its credentials with an authenticated
//! read-only call, and (2) skycat has a provisioning backend for it ([`LAUNCH_BACKENDS`]). Every
//! other cloud is "prices only": its catalog rows are still shown and planned over. SSH node
//! pools (`ssh`) are always enabled and need no check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::home::{write_atomic, Home};

/// Clouds with a provisioning backend (the backend registry's clouds).
pub const LAUNCH_BACKENDS: &[&str] = crate::backend::CLOUD_BACKENDS;

/// Infra that is enabled without a check.
pub const ALWAYS_ENABLED: &[&str] = &["ssh"];

/// The cache file's name under `$SKYCAT_HOME`.
pub const FILE_NAME: &str = "enabled_clouds.json";

/// The status text of a cloud that may launch.
pub const ENABLED: &str = "enabled (launch)";

/// The cached result of `skycat check`, per cloud.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnabledClouds {
    #[serde(default)]
    pub clouds: BTreeMap<String, CloudState>,
    /// Why the file could not be used, when it was corrupt or unreadable (it is then treated as
    /// empty). Never written.
    #[serde(skip)]
    pub warning: Option<String>,
}

/// One cloud as `skycat check` last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudState {
    /// Whether the cloud may launch: credentials verified and a backend exists.
    pub launch: bool,
    /// `enabled (launch)` or `prices only (…)`.
    pub status: String,
    /// Where credentials were found (variable names, file paths), or `none found`.
    pub credentials: String,
    /// Whether the authenticated read-only call succeeded.
    pub verified: bool,
    /// The call made, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// The call's one-line error, or why no call was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// `$SKYCAT_HOME/enabled_clouds.json`.
pub fn path(home: &Home) -> PathBuf {
    home.root.join(FILE_NAME)
}

/// The cache; empty when the file is missing, and empty with [`EnabledClouds::warning`] set
/// when it cannot be read or parsed.
pub fn load(home: &Home) -> EnabledClouds {
    let p = path(home);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return EnabledClouds::default(),
        Err(e) => return corrupt(&p, &e.to_string()),
    };
    match serde_json::from_str::<EnabledClouds>(&text) {
        Ok(c) => c,
        Err(e) => corrupt(&p, &e.to_string()),
    }
}

fn corrupt(p: &std::path::Path, why: &str) -> EnabledClouds {
    EnabledClouds {
        clouds: BTreeMap::new(),
        warning: Some(format!(
            "{}: unreadable ({why}); treating every cloud as unchecked, run `skycat check` to rewrite it",
            p.display()
        )),
    }
}

/// Write the cache atomically (temp file in `$SKYCAT_HOME`, then rename).
pub fn save(home: &Home, clouds: &EnabledClouds) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(clouds).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(&path(home), &bytes)
}

/// The infra that may launch now: cached clouds checked as launchable that still have a
/// backend, plus [`ALWAYS_ENABLED`]. A corrupt cache counts as empty (logged as a warning).
pub fn enabled_clouds(home: &Home) -> BTreeSet<String> {
    let cache = load(home);
    if let Some(w) = &cache.warning {
        tracing::warn!("{w}");
    }
    let mut out: BTreeSet<String> = cache
        .clouds
        .iter()
        .filter(|(name, state)| state.launch && has_launch_backend(name))
        .map(|(name, _)| name.clone())
        .collect();
    out.extend(ALWAYS_ENABLED.iter().map(|s| s.to_string()));
    out
}

/// Whether skycat can provision on `cloud`.
pub fn has_launch_backend(cloud: &str) -> bool {
    LAUNCH_BACKENDS.contains(&cloud) || ALWAYS_ENABLED.contains(&cloud)
}

/// Whether `cloud` may launch, and its status text, from what `skycat check` found:
/// `verified` (the read-only call succeeded), `has_credentials` (anything was found) and
/// `prices_only` (why what was found can only read prices, e.g. a GCP API key).
pub fn launch_status(cloud: &str, verified: bool, has_credentials: bool, prices_only: Option<&str>) -> (bool, String) {
    if let Some(why) = prices_only {
        return (false, format!("prices only ({why})"));
    }
    match (verified, has_launch_backend(cloud)) {
        (true, true) => (true, ENABLED.to_string()),
        (true, false) => (false, "prices only (no launch backend yet)".to_string()),
        (false, _) if has_credentials => (false, "prices only (credentials not verified)".to_string()),
        (false, _) => (false, "prices only".to_string()),
    }
}

/// One line on how to enable launching on `cloud`.
pub fn how_to_enable(cloud: &str) -> String {
    let what = match cloud {
        "aws" => "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
        "gcp" => "set GOOGLE_OAUTH_ACCESS_TOKEN (`gcloud auth print-access-token`) and GOOGLE_CLOUD_PROJECT",
        "azure" => "set AZURE_SUBSCRIPTION_ID and AZURE_ACCESS_TOKEN (or AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET)",
        "kubernetes" => "point KUBECONFIG (or kubernetes.kubeconfig in $SKYCAT_HOME/config.yaml) at a kubeconfig whose contexts may list nodes",
        "lambda" => "set LAMBDA_API_KEY (or SKYCAT_LAMBDA_API_KEY)",
        "runpod" => "set RUNPOD_API_KEY (or SKYCAT_RUNPOD_API_KEY)",
        "vast" => "set VAST_API_KEY (or SKYCAT_VAST_API_KEY)",
        "ibm" => "set IBM_API_KEY (or iam_api_key in ~/.ibm/credentials.yaml)",
        "scp" => "set SCP_ACCESS_KEY, SCP_SECRET_KEY and SCP_PROJECT_ID (or ~/.scp/scp_credential)",
        "oci" => return "oci: prices come from the public price list; launching on OCI is not supported yet".into(),
        "ssh" => return "ssh: always enabled; add pools to $SKYCAT_HOME/ssh_node_pools.yaml".into(),
        other => return format!("{other}: not a cloud skycat knows"),
    };
    if has_launch_backend(cloud) {
        format!("{what}, then run `skycat check {cloud}`")
    } else {
        format!("{what}, then run `skycat check {cloud}` (prices only: no launch backend yet)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(launch: bool) -> CloudState {
        let (l, status) = launch_status("aws", launch, launch, None);
        CloudState {
            launch: l,
            status,
            credentials: "env AWS_ACCESS_KEY_ID".into(),
            verified: launch,
            call: Some("ec2:DescribeRegions".into()),
            error: None,
            checked_at: Utc::now(),
        }
    }

    #[test]
    fn missing_file_is_empty_without_warning() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("nothing-here"));
        let c = load(&home);
        assert!(c.clouds.is_empty() && c.warning.is_none());
        assert_eq!(enabled_clouds(&home), BTreeSet::from(["ssh".to_string()]));
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut c = EnabledClouds::default();
        c.clouds.insert("aws".into(), state(true));
        c.clouds.insert("lambda".into(), CloudState { launch: false, ..state(false) });
        save(&home, &c).unwrap();
        assert_eq!(load(&home), c);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
        assert_eq!(enabled_clouds(&home), BTreeSet::from(["aws".to_string(), "ssh".to_string()]));
    }

    #[test]
    fn corrupt_file_is_empty_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::write(path(&home), "{\"clouds\": {\"aws\": {\"launch\": tr").unwrap();
        let c = load(&home);
        assert!(c.clouds.is_empty());
        let w = c.warning.expect("warning");
        assert!(w.contains(FILE_NAME) && !w.contains('\n'), "{w}");
        assert_eq!(enabled_clouds(&home), BTreeSet::from(["ssh".to_string()]));
        // Wrong shape (valid JSON) is corrupt too.
        std::fs::write(path(&home), "[1, 2]").unwrap();
        assert!(load(&home).warning.is_some());
    }

    #[test]
    fn a_cached_launch_without_a_backend_is_not_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut c = EnabledClouds::default();
        c.clouds.insert("vast".into(), CloudState { launch: true, ..state(true) });
        save(&home, &c).unwrap();
        assert_eq!(enabled_clouds(&home), BTreeSet::from(["ssh".to_string()]));
    }

    #[test]
    fn status_texts() {
        assert_eq!(launch_status("aws", true, true, None), (true, ENABLED.to_string()));
        assert_eq!(launch_status("vast", true, true, None).1, "prices only (no launch backend yet)");
        assert_eq!(launch_status("lambda", true, true, None), (true, ENABLED.to_string()));
        assert_eq!(launch_status("aws", false, false, None).1, "prices only");
        assert_eq!(launch_status("aws", false, true, None).1, "prices only (credentials not verified)");
        let gcp = launch_status("gcp", true, true, Some("API key reads prices; launching needs OAuth"));
        assert_eq!(gcp, (false, "prices only (API key reads prices; launching needs OAuth)".to_string()));
    }

    #[test]
    fn how_to_enable_is_one_line_per_cloud() {
        assert_eq!(
            how_to_enable("aws"),
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, then run `skycat check aws`"
        );
        for c in ["gcp", "azure", "ibm", "lambda", "runpod", "scp", "vast", "oci", "ssh", "nope"] {
            let h = how_to_enable(c);
            assert!(!h.is_empty() && !h.contains('\n'), "{c}: {h}");
        }
    }
}
