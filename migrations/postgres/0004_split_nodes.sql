-- The node that published each split (src/node.rs): at start a node takes in only its own,
-- so several nodes can share this metastore. NULL for splits published before nodes were
-- named; a node takes those in as its own.
ALTER TABLE weft_splits ADD COLUMN node TEXT;
CREATE INDEX weft_splits_by_node ON weft_splits (node);
