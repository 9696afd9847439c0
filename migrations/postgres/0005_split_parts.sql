-- Which part of its hour a split holds (index/src/partition.rs, PartitionKey): an hour
-- whose partition reaches the seal size continues in a new part, sealed as a split of its own.
ALTER TABLE weft_splits ADD COLUMN part INTEGER NOT NULL DEFAULT 0 CHECK (part >= 0);
