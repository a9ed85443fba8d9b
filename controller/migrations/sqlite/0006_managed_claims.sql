-- Several `skycat serve` replicas on one database (issue 15): the leader term that drives each
-- managed job ("<replica>:<term>"); NULL until a leader claims it. A new leader re-claims every
-- unfinished job whose claim is not its own, and resumes it.
ALTER TABLE managed_jobs ADD COLUMN claimed_by TEXT;
