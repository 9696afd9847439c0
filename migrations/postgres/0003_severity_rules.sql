-- Severity rules in force, shared by every node on this metastore (severity/store.rs).
-- `rule` is the rule as weft stores it; rule IDs come from the sequence, so two nodes never
-- give out the same one.
CREATE SEQUENCE weft_severity_rule_numbers;
CREATE TABLE weft_severity_rules (
    id                TEXT PRIMARY KEY,
    expires_unix_nano BIGINT NOT NULL,
    rule              JSONB  NOT NULL
);
-- Every creation, deletion and expiry of a rule, oldest first. A rule and its audit entry are
-- written in one transaction.
CREATE TABLE weft_severity_audit (
    seq   BIGSERIAL PRIMARY KEY,
    entry JSONB NOT NULL
);
