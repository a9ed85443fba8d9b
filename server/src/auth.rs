//! Bearer-token authentication of the API.
//!
//! Who may call what:
//! * `/healthz`: anyone.
//! * `/v1/agents/heartbeat`: the agents, with their cluster's token (checked by that route).
//! * `/v1/*` (managed jobs): an API token, always ([`require_token`]); the caller becomes a
//!   [`Principal`] in the request's extensions.
//! * `/optimize`, `/catalog/*`, `/metrics`, `/openapi.json`: an API token unless the server is
//!   configured with `public_read` (the CLI makes that the default on loopback only).
//!
//! Tokens are checked by a [`TokenVerifier`] (the controller's state DB in `skycat serve`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    User,
}

/// The holder of a valid API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// Whether the caller may see and act on what `owner` owns.
    pub fn may_see(&self, owner: &str) -> bool {
        self.role == Role::Admin || self.name == owner
    }
}

/// Checks API tokens.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync {
    /// The token's holder; None for an unknown or revoked token. Err when the check itself
    /// failed (the store is unavailable).
    async fn verify(&self, token: &str) -> Result<Option<Principal>, String>;
}

/// The token checker the routes share.
#[derive(Clone)]
pub struct Auth {
    pub verifier: Arc<dyn TokenVerifier>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth")
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lets the request through with its [`Principal`] when it carries a live API token; 401
/// otherwise.
pub async fn require_token(State(auth): State<Auth>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = bearer(req.headers()).ok_or_else(|| {
        ApiError::unauthorized("this route needs an API token: send `Authorization: Bearer <token>` (the CLI reads SKYCAT_API_TOKEN or $SKYCAT_HOME/credentials; create one with `skycat serve token create`)")
    })?;
    let principal = auth
        .verifier
        .verify(token)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("cannot check the token: {e}")))?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(axum::http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(axum::http::header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(axum::http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(axum::http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        let p = Principal { name: "a".into(), role: Role::User };
        assert!(p.may_see("a") && !p.may_see("b"));
        assert!(Principal { name: "r".into(), role: Role::Admin }.may_see("b"));
    }
}
