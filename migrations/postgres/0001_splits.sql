-- Splits of sealed partitions in object storage, and their state (storage/metastore.rs).
CREATE TABLE weft_splits (
    id                TEXT PRIMARY KEY,
    signal            TEXT   NOT NULL CHECK (signal IN ('logs', 'spans')),
    start_unix_nano   BIGINT NOT NULL,
    end_unix_nano     BIGINT NOT NULL,
    committed_lsn     BIGINT NOT NULL,
    docs              BIGINT NOT NULL,
    bytes             BIGINT NOT NULL,
    state             TEXT   NOT NULL CHECK (state IN ('staged', 'published', 'marked_for_deletion')),
    updated_unix_nano BIGINT NOT NULL
);

-- Queries prune splits by signal and time before opening any.
CREATE INDEX weft_splits_by_time ON weft_splits (signal, start_unix_nano);
