-- Secrets at rest (issue 10 item 4): each managed job's whole request (secret envs included) as
-- sealed by controller/src/secret_box.rs (ChaCha20-Poly1305, associated data "managed_job:<id>"),
-- so a restarted `skycat serve` can resume the job. NULL for jobs submitted before this migration.
ALTER TABLE managed_jobs ADD COLUMN request_sealed BLOB;
