-- The experiment variant that served an impression (A/B buckets).
ALTER TABLE events ADD COLUMN variant TEXT;
