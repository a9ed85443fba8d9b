-- Heartbeats find their cluster by the hash of its token (issue 15: thousands per second over
-- replicas): an index, not a scan of every cluster ever launched.
CREATE INDEX IF NOT EXISTS clusters_token_hash ON clusters(token_hash);
