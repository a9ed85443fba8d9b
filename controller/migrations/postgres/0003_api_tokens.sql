-- API tokens of `skycat serve` (only their SHA-256 is kept), and the owner of each managed job.
CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
ALTER TABLE managed_jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
