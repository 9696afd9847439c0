-- The services with rows in each split: a query for other services skips it without opening
-- it (storage/metastore.rs, SplitRecord::services). NULL for splits published before this.
ALTER TABLE weft_splits ADD COLUMN services TEXT[];
