-- SkyPilot storage objects skycat made (`file_mounts` entries with `name:`): the bucket's URL,
-- whether `skycat down` of `cluster_name` deletes it, and the credentials that can, sealed.
CREATE TABLE storage (
        name TEXT PRIMARY KEY,
        store TEXT NOT NULL,
        url TEXT NOT NULL,
        region TEXT,
        sources TEXT NOT NULL,
        persistent INTEGER NOT NULL,
        cluster_name TEXT,
        env_sealed BLOB,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
