-- Event batches posted with an Idempotency-Key, kept for a day: a retry of one is answered as the
-- first post was and writes nothing, even for events without event_id. `digest` tells a retry
-- from a different batch reusing the key.
CREATE TABLE ingest_batches (
    batch_key     TEXT PRIMARY KEY,
    digest        TEXT NOT NULL,
    at            BIGINT NOT NULL,
    inserted      BIGINT NOT NULL,
    duplicates    BIGINT NOT NULL,
    users_created BIGINT NOT NULL
);
CREATE INDEX ingest_batches_at ON ingest_batches (at);
