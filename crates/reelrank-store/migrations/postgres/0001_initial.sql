-- Integers are BIGINT throughout: sqlx's Any driver decodes one integer width on both backends.
-- Catalog: upserted by item_id.
CREATE TABLE items (
    item_id         TEXT PRIMARY KEY,
    title           TEXT NOT NULL,
    category        TEXT NOT NULL,
    tags            TEXT NOT NULL,      -- JSON array of strings
    creator_id      TEXT,
    duration_s      DOUBLE PRECISION,
    language        TEXT,
    regions         TEXT NOT NULL,      -- JSON array of ISO 3166 codes; [] = everywhere
    available_from  BIGINT,             -- Unix ms
    available_until BIGINT,
    published_at    BIGINT,
    series_id       TEXT,
    episode         BIGINT,
    age_rating      BIGINT,
    status          TEXT NOT NULL,
    flags           TEXT NOT NULL,      -- JSON array
    updated_at      BIGINT NOT NULL
);

-- Users: upserted by user_id, also created by their first event.
CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    attributes      TEXT NOT NULL,      -- JSON object
    region          TEXT,
    language        TEXT,
    birth_year      BIGINT,
    personalization BIGINT,             -- 1 on, 0 off, NULL never set (on)
    updated_at      BIGINT NOT NULL
);

-- Behaviour log: append-only; seq orders it for replay.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT UNIQUE,
    user_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    kind        BIGINT NOT NULL,       -- EventKind::code
    value       DOUBLE PRECISION,
    ts          BIGINT NOT NULL,       -- Unix ms
    request_id  TEXT,
    device      TEXT,
    page        TEXT,
    hour        BIGINT,
    received_at BIGINT NOT NULL
);
