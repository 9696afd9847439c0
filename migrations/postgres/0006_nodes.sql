-- The cluster's members (src/cluster.rs): every node on this metastore writes its row each
-- second. A node whose heartbeat is older than a few seconds is taken for gone.
CREATE TABLE weft_nodes (
    id                  TEXT PRIMARY KEY,
    role                TEXT   NOT NULL,
    advertise           TEXT   NOT NULL,
    started_unix_nano   BIGINT NOT NULL,
    heartbeat_unix_nano BIGINT NOT NULL
);
