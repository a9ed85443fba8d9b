//! The AWS check: credentials from the environment or a profile file (never the instance
//! metadata service, never a container or web-identity endpoint), verified with EC2
//! `DescribeRegions` through aws-sdk-ec2 at the endpoint the fetcher uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sdk_ec2::error::ProvideErrorMetadata;

use super::{bounded, expand_home, home_path, one_line, skipped, CloudCheck, Found, Verification, ERROR_CHARS, NO_CREDENTIALS};
use crate::provider::FetchContext;
use crate::providers::aws::ec2::ec2_client;

const CALL: &str = "ec2:DescribeRegions";

/// Error codes that mean "these credentials are not accepted" (rather than "the call failed").
const REJECTED_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "RequestExpired",
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
];

/// Keys that make a profile section a source of credentials (not just settings like `region`).
const CREDENTIAL_KEYS: &[&str] = &[
    "aws_access_key_id",
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
    "credential_source",
    "login_session",
];

enum Discovery {
    /// Static keys from the environment.
    Env { vars: Vec<String>, creds: Credentials },
    /// A profile with credentials in one or both files.
    Profile { found: Vec<Found>, profile: String, files: Vec<(bool, PathBuf)> },
    /// Something was found but cannot be used; say why.
    Unusable { found: Vec<Found>, reason: String },
    Nothing,
}

pub(super) async fn check(cx: &FetchContext) -> CloudCheck {
    let region = cx.env("AWS_REGION").or_else(|| cx.env("AWS_DEFAULT_REGION")).unwrap_or("us-east-1").to_string();
    match discover(cx) {
        Discovery::Nothing => skipped("aws", Vec::new(), NO_CREDENTIALS),
        Discovery::Unusable { found, reason } => skipped("aws", found, reason),
        Discovery::Env { vars, creds } => {
            let verification = bounded(CALL, describe_regions(cx, &region, creds, "environment")).await;
            CloudCheck { cloud: "aws".into(), credentials: vec![Found::Env { vars }], verification, prices_only: None }
        }
        Discovery::Profile { found, profile, files } => {
            let provider = profile_provider(&profile, &files);
            let source = format!("profile {profile}");
            let verification = bounded(CALL, describe_regions(cx, &region, provider, &source)).await;
            CloudCheck { cloud: "aws".into(), credentials: found, verification, prices_only: None }
        }
    }
}

fn discover(cx: &FetchContext) -> Discovery {
    match (cx.env("AWS_ACCESS_KEY_ID"), cx.env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            let mut vars = vec!["AWS_ACCESS_KEY_ID".to_string(), "AWS_SECRET_ACCESS_KEY".to_string()];
            let token = cx.env("AWS_SESSION_TOKEN");
            if token.is_some() {
                vars.push("AWS_SESSION_TOKEN".into());
            }
            let creds = Credentials::new(id, secret, token.map(String::from), None, "skycat-check-env");
            return Discovery::Env { vars, creds };
        }
        (Some(_), None) | (None, Some(_)) => {
            let (set, unset) = if cx.env("AWS_ACCESS_KEY_ID").is_some() {
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            } else {
                ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            };
            return Discovery::Unusable {
                found: vec![Found::Env { vars: vec![set.into()] }],
                reason: format!("{set} is set but {unset} is not"),
            };
        }
        (None, None) => {}
    }
    let profile_var = cx.env("AWS_PROFILE");
    let profile = profile_var.unwrap_or("default").to_string();
    let creds_file = match cx.env("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => Some(expand_home(cx, p)),
        None => home_path(cx, ".aws/credentials"),
    };
    let config_file = match cx.env("AWS_CONFIG_FILE") {
        Some(p) => Some(expand_home(cx, p)),
        None => home_path(cx, ".aws/config"),
    };
    let mut found = Vec::new();
    let mut files = Vec::new();
    for (is_config, path) in [(false, creds_file), (true, config_file)] {
        let Some(path) = path else { continue };
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let sections = parse_ini(&text, is_config);
        if let Some(keys) = sections.get(&profile) {
            if CREDENTIAL_KEYS.iter().any(|k| keys.contains(*k)) {
                found.push(Found::File { path: path.clone(), detail: Some(format!("profile {profile}")) });
                files.push((is_config, path));
            }
        }
    }
    if !files.is_empty() {
        return Discovery::Profile { found, profile, files };
    }
    match profile_var {
        Some(p) => Discovery::Unusable {
            found: vec![Found::Env { vars: vec!["AWS_PROFILE".into()] }],
            reason: format!("AWS_PROFILE={p}: no profile `{p}` with credentials in the shared credentials or config file"),
        },
        None => Discovery::Nothing,
    }
}

/// Section name → keys, the way the SDK names profiles: `[name]` in the credentials file,
/// `[profile name]` (or `[default]`) in the config file. Comments and values are ignored.
fn parse_ini(text: &str, is_config: bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            let name = name.trim();
            current = if is_config {
                match name.strip_prefix("profile") {
                    Some(rest) if rest.starts_with(char::is_whitespace) => Some(rest.trim().to_string()),
                    _ if name == "default" => Some(name.to_string()),
                    _ => None, // [sso-session x], [services x]…
                }
            } else {
                Some(name.to_string())
            };
            if let Some(c) = &current {
                out.entry(c.clone()).or_default();
            }
            continue;
        }
        if let (Some(section), Some((key, _))) = (&current, line.split_once('=')) {
            out.entry(section.clone()).or_default().insert(key.trim().to_ascii_lowercase());
        }
    }
    out
}

#[allow(deprecated)] // the aliases re-export aws-runtime's types, which is not a dependency here
fn profile_provider(profile: &str, files: &[(bool, PathBuf)]) -> aws_config::profile::ProfileFileCredentialsProvider {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    let mut b = ProfileFiles::builder();
    for (is_config, path) in files {
        let kind = if *is_config { ProfileFileKind::Config } else { ProfileFileKind::Credentials };
        b = b.with_file(kind, path.clone());
    }
    aws_config::profile::ProfileFileCredentialsProvider::builder().profile_name(profile).profile_files(b.build()).build()
}

async fn describe_regions(
    cx: &FetchContext,
    region: &str,
    provider: impl ProvideCredentials + 'static,
    source: &str,
) -> Verification {
    // Resolve first, so that a broken profile says so rather than failing inside the call.
    match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let error = one_line(&error_chain(&e), ERROR_CHARS);
            return Verification::Failed { call: format!("credentials from {source}"), error };
        }
        Err(_) => {
            let error = "timed out after 10 s".to_string();
            return Verification::Failed { call: format!("credentials from {source}"), error };
        }
    }
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(provider)
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(12))
                .build(),
        )
        .load()
        .await;
    let client = ec2_client(cx, &conf, region);
    let call = format!("{CALL} in {region}");
    match client.describe_regions().send().await {
        Ok(_) => Verification::Verified { call },
        Err(e) => {
            let code = e.code().map(str::to_string);
            let message = e.message().map(str::to_string);
            match code {
                Some(code) => {
                    let error = one_line(&format!("{code}: {}", message.unwrap_or_default()), ERROR_CHARS);
                    if REJECTED_CODES.contains(&code.as_str()) {
                        Verification::Rejected { call, error }
                    } else {
                        Verification::Failed { call, error }
                    }
                }
                None => Verification::Failed { call, error: one_line(&error_chain(&e), ERROR_CHARS) },
            }
        }
    }
}

/// An error and its sources, joined with `: `, skipping a source whose text its parent
/// already contains.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_follow_the_sdk_naming() {
        let creds = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n# c\n[work]\nregion=x\n";
        let s = parse_ini(creds, false);
        assert!(s["default"].contains("aws_access_key_id"));
        assert!(!s["work"].contains("aws_access_key_id"));
        let config = "[default]\nregion = us-east-1\n[profile dev]\nsso_session = s\n[sso-session s]\nsso_region=x\n";
        let s = parse_ini(config, true);
        assert!(s["dev"].contains("sso_session"));
        assert!(!s.contains_key("sso-session s"));
        assert!(s.contains_key("default"));
    }

    #[tokio::test]
    async fn profile_file_is_found_and_a_bare_region_is_not_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[default]\nregion = us-west-2\n").unwrap();
        let cx = FetchContext::for_tests(&[("HOME", home)]);
        assert!(matches!(discover(&cx), Discovery::Nothing));

        std::fs::write(dir.path().join(".aws/credentials"), "[default]\naws_access_key_id=A\naws_secret_access_key=B\n")
            .unwrap();
        match discover(&cx) {
            Discovery::Profile { found, profile, .. } => {
                assert_eq!(profile, "default");
                assert_eq!(found[0].to_string(), format!("file {home}/.aws/credentials (profile default)"));
            }
            _ => panic!("profile not found"),
        }

        let cx = FetchContext::for_tests(&[("HOME", home), ("AWS_PROFILE", "nope")]);
        match discover(&cx) {
            Discovery::Unusable { reason, .. } => assert!(reason.contains("AWS_PROFILE=nope"), "{reason}"),
            _ => panic!("a missing profile is reported"),
        }

        let cx = FetchContext::for_tests(&[("AWS_ACCESS_KEY_ID", "A")]);
        match discover(&cx) {
            Discovery::Unusable { reason, .. } => assert!(reason.contains("AWS_SECRET_ACCESS_KEY is not"), "{reason}"),
            _ => panic!("half a key pair is reported"),
        }
    }
}
