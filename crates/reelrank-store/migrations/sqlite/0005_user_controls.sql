-- Minor mode (users.minor: 1 minor, 0 not, NULL unknown) and users' own feed controls (JSON:
-- hidden tags, blocked creators, when they last reset their profile).
ALTER TABLE users ADD COLUMN minor INTEGER;
ALTER TABLE users ADD COLUMN controls TEXT;
