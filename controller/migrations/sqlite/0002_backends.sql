-- Clusters on cloud backends: the planned instance type and opened ports per cluster, and the
-- provider's instance id and zone per node.
ALTER TABLE clusters ADD COLUMN instance_type TEXT;
ALTER TABLE clusters ADD COLUMN ports TEXT;
ALTER TABLE nodes ADD COLUMN instance_id TEXT;
ALTER TABLE nodes ADD COLUMN zone TEXT;
