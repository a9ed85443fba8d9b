//! API tokens of `skycat serve`: created with a name and a role, shown once, kept only as their
//! SHA-256 in the state DB, listed and revoked by name (`skycat serve token …`). The server checks
//! every control-plane request's bearer token here; a user sees only their own managed jobs, an
//! admin sees all.

use chrono::Utc;
use serde::Serialize;
use sqlx::Row;

use crate::store::{hash_token, random_hex, Store, StoreError};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and cancels every job.
    Admin,
    /// Sees and cancels its own jobs.
    User,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// A token as listed (never its value).
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token name {0:?}: use 1 to 63 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error("a token named {0:?} exists; revoke it first or pick another name")]
    Exists(String),
    #[error("no token named {0:?}")]
    NoToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn db_err(store: &Store, e: sqlx::Error) -> TokenError {
    TokenError::Store(store.err(e))
}

/// The prefix of every API token, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "skycat_";

impl Store {
    /// Creates a token and returns its value: the only time it is seen. A revoked token's name
    /// may be reused.
    pub async fn create_api_token(&self, name: &str, role: Role) -> Result<String, TokenError> {
        let ok = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(TokenError::BadName(name.to_string()));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
        let r = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(name) DO UPDATE SET role = excluded.role, token_hash = excluded.token_hash,
               created_at = excluded.created_at, last_used_at = NULL, revoked_at = NULL
             WHERE api_tokens.revoked_at IS NOT NULL",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(hash_token(&token))
        .bind(Utc::now().to_rfc3339())
        .execute(self.db())
        .await
        .map_err(|e| db_err(self, e))?;
        if r.rows_affected() == 0 {
            return Err(TokenError::Exists(name.to_string()));
        }
        Ok(token)
    }

    /// Every token, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, TokenError> {
        let rows = sqlx::query("SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at, name")
            .fetch_all(self.db())
            .await
            .map_err(|e| db_err(self, e))?;
        Ok(rows
            .iter()
            .map(|r| ApiToken {
                name: r.get("name"),
                role: Role::parse(r.get::<String, _>("role").as_str()).unwrap_or(Role::User),
                created_at: r.get("created_at"),
                last_used_at: r.get("last_used_at"),
                revoked_at: r.get("revoked_at"),
            })
            .collect())
    }

    /// Whether any token that is not revoked exists.
    pub async fn has_live_api_token(&self) -> Result<bool, TokenError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL")
            .fetch_one(self.db())
            .await
            .map_err(|e| db_err(self, e))?;
        Ok(n > 0)
    }

    /// Revokes the token `name`; it stops working at once here, and within a second in a running server (its verified-token cache).
    pub async fn revoke_api_token(&self, name: &str) -> Result<(), TokenError> {
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(Utc::now().to_rfc3339())
            .bind(name)
            .execute(self.db())
            .await
            .map_err(|e| db_err(self, e))?;
        if r.rows_affected() == 0 {
            return Err(TokenError::NoToken(name.to_string()));
        }
        Ok(())
    }

    /// The holder of `token` (its name and role), if it is a live API token. Records the use (at
    /// most once a minute, so that a busy client does not write on every request: the UPDATE,
    /// which takes SQLite's write lock even when it changes nothing, runs only when the recorded
    /// use is older than that).
    pub async fn verify_api_token(&self, token: &str) -> Result<Option<(String, Role)>, TokenError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(token);
        let row = sqlx::query("SELECT name, role, last_used_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&hash)
            .fetch_optional(self.db())
            .await
            .map_err(|e| db_err(self, e))?;
        let Some(row) = row else { return Ok(None) };
        let holder = (row.get("name"), Role::parse(row.get::<String, _>("role").as_str()).unwrap_or(Role::User));
        let now = Utc::now();
        let stale = (now - chrono::Duration::seconds(60)).to_rfc3339();
        // RFC 3339 in UTC, as written below: the text order is the time order.
        if row.get::<Option<String>, _>("last_used_at").is_some_and(|t| t >= stale) {
            return Ok(Some(holder));
        }
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(now.to_rfc3339())
            .bind(&hash)
            .bind(stale)
            .execute(self.db())
            .await
            .map_err(|e| db_err(self, e))?;
        Ok(Some(holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_verify_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).await.unwrap();
        assert!(!s.has_live_api_token().await.unwrap());
        let alice = s.create_api_token("alice", Role::User).await.unwrap();
        let root = s.create_api_token("root", Role::Admin).await.unwrap();
        assert!(alice.starts_with(TOKEN_PREFIX) && alice.len() == TOKEN_PREFIX.len() + 64 && alice != root);
        assert!(matches!(s.create_api_token("alice", Role::Admin).await, Err(TokenError::Exists(_))));
        assert!(matches!(s.create_api_token("a b", Role::User).await, Err(TokenError::BadName(_))));
        assert_eq!(s.verify_api_token(&alice).await.unwrap(), Some(("alice".to_string(), Role::User)));
        assert_eq!(s.verify_api_token(&root).await.unwrap(), Some(("root".to_string(), Role::Admin)));
        assert!(s.verify_api_token("skycat_0000").await.unwrap().is_none());
        assert!(s.verify_api_token("nope").await.unwrap().is_none());
        // Only hashes are stored.
        let db = std::fs::read(dir.path().join("state.db")).unwrap();
        assert!(!String::from_utf8_lossy(&db).contains(&alice[TOKEN_PREFIX.len()..]));
        let listed = s.api_tokens().await.unwrap();
        assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["alice", "root"]);
        assert!(listed[0].last_used_at.is_some());
        // Another use within the minute is not written again.
        assert!(s.verify_api_token(&alice).await.unwrap().is_some());
        assert_eq!(s.api_tokens().await.unwrap()[0].last_used_at, listed[0].last_used_at);
        s.revoke_api_token("alice").await.unwrap();
        assert!(s.verify_api_token(&alice).await.unwrap().is_none());
        assert!(matches!(s.revoke_api_token("alice").await, Err(TokenError::NoToken(_))));
        // A revoked name can be issued again, with a new value.
        let again = s.create_api_token("alice", Role::User).await.unwrap();
        assert!(again != alice && s.verify_api_token(&again).await.unwrap().is_some());
    }
}
