-- Every moderation decision: who, when, what, why (GET /v1/moderation/audit).
CREATE TABLE moderation_audit (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,      -- Unix ms
    actor       TEXT NOT NULL,         -- the API key's name, or user-reports
    target      TEXT NOT NULL,         -- item or creator
    target_id   TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    flags       TEXT NOT NULL,         -- JSON array: the flags after the decision
    reason      TEXT NOT NULL
);
-- Users who reported an item since its last review.
CREATE TABLE item_reports (
    item_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (item_id, user_id)
);
-- Creators blocked by moderation: their items carry the creator_blocked flag.
CREATE TABLE creator_blocks (
    creator_id TEXT PRIMARY KEY,
    at         INTEGER NOT NULL
);
CREATE INDEX items_creator ON items (creator_id);
CREATE INDEX items_status ON items (status, updated_at);
