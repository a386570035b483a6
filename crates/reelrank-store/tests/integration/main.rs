//! Store integration tests, run against every available backend (SQLite always; PostgreSQL when
//! `REELRANK_TEST_POSTGRES` is set, required in CI).

mod controls;
mod moderation;
mod outage;
mod round_trip;
mod tail;
