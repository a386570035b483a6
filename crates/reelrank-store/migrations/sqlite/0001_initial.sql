-- Catalog: upserted by item_id.
CREATE TABLE items (
    item_id         TEXT PRIMARY KEY,
    title           TEXT NOT NULL,
    category        TEXT NOT NULL,
    tags            TEXT NOT NULL,      -- JSON array of strings
    creator_id      TEXT,
    duration_s      REAL,
    language        TEXT,
    regions         TEXT NOT NULL,      -- JSON array of ISO 3166 codes; [] = everywhere
    available_from  INTEGER,            -- Unix ms
    available_until INTEGER,
    published_at    INTEGER,
    series_id       TEXT,
    episode         INTEGER,
    age_rating      INTEGER,
    status          TEXT NOT NULL,
    flags           TEXT NOT NULL,      -- JSON array
    updated_at      INTEGER NOT NULL
);

-- Users: upserted by user_id, also created by their first event.
CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    attributes      TEXT NOT NULL,      -- JSON object
    region          TEXT,
    language        TEXT,
    birth_year      INTEGER,
    personalization INTEGER,            -- 1 on, 0 off, NULL never set (on)
    updated_at      INTEGER NOT NULL
);

-- Behaviour log: append-only; seq orders it for replay.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT UNIQUE,
    user_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    kind        INTEGER NOT NULL,      -- EventKind::code
    value       REAL,
    ts          INTEGER NOT NULL,      -- Unix ms
    request_id  TEXT,
    device      TEXT,
    page        TEXT,
    hour        INTEGER,
    received_at INTEGER NOT NULL
);
