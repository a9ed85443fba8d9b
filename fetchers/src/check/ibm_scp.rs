//! The IBM and SCP checks: where the fetcher's credentials were found, verified with the
//! fetcher's own first call (IBM: IAM token exchange + VPC `GET v1/regions`; SCP: the signed
//! `GET project/v3/projects/{id}/zones`), so a check passes exactly when a fetch would start.

use super::{bounded, home_path, one_line, skipped, CloudCheck, Found, Verification, ERROR_CHARS, NO_CREDENTIALS};
use crate::error::FetchError;
use crate::provider::{FetchContext, Provider};
use crate::providers::{ibm::Ibm, scp::Scp};

/// Where `env_vars` (all set) or else the file `rel` under HOME supply the credentials.
fn found(cx: &FetchContext, env_vars: &[&str], rel: &str) -> Option<Found> {
    if env_vars.iter().all(|v| cx.env(v).is_some()) {
        return Some(Found::Env { vars: env_vars.iter().map(|v| v.to_string()).collect() });
    }
    let path = home_path(cx, rel).filter(|p| p.is_file())?;
    Some(Found::File { path, detail: None })
}

fn verdict(call: &str, res: Result<Vec<String>, FetchError>) -> Verification {
    match res {
        Ok(_) => Verification::Verified { call: call.into() },
        Err(e @ FetchError::Auth { .. }) => Verification::Rejected { call: call.into(), error: one_line(&e.to_string(), ERROR_CHARS) },
        Err(e) => Verification::Failed { call: call.into(), error: one_line(&e.to_string(), ERROR_CHARS) },
    }
}

pub(super) async fn check_ibm(cx: &FetchContext) -> CloudCheck {
    let Some(f) = found(cx, &["IBM_API_KEY"], ".ibm/credentials.yaml") else {
        return skipped("ibm", Vec::new(), NO_CREDENTIALS);
    };
    let call = "IAM token + VPC GET v1/regions";
    let verification = bounded(call, async { verdict(call, Ibm.regions(cx).await) }).await;
    CloudCheck { cloud: "ibm".into(), credentials: vec![f], verification, prices_only: None }
}

pub(super) async fn check_scp(cx: &FetchContext) -> CloudCheck {
    let Some(f) = found(cx, &["SCP_ACCESS_KEY", "SCP_SECRET_KEY", "SCP_PROJECT_ID"], ".scp/scp_credential") else {
        return skipped("scp", Vec::new(), NO_CREDENTIALS);
    };
    let call = "GET project/v3/projects/{id}/zones (signed)";
    let verification = bounded(call, async { verdict(call, Scp.regions(cx).await) }).await;
    CloudCheck { cloud: "scp".into(), credentials: vec![f], verification, prices_only: None }
}
