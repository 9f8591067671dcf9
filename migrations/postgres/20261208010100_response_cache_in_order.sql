-- The response cache looked up by a 64-bit digest of the request's key, its rows in the
-- order they were stored. Its primary key was the 64 hex characters of the key, so each
-- commit's new responses (one per case of a provider-backed run) landed on as many
-- random pages of that index and of the index by run; the digest's index holds 8-byte
-- entries.
--
-- `digest` is the key's first 16 hex digits as a signed 64-bit integer (the key is the
-- SHA-256, in hex, of the request); a lookup compares the full key as well, so two keys
-- with one digest are a miss for the second, never a wrong response. Every stored key is
-- such a hash: rows whose key is not are dropped here.
CREATE TABLE response_cache_in_order (
    digest     BIGINT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Who the response belongs to (NULL: stored before runs could be deleted; kept).
    run_id     TEXT
);
CREATE UNIQUE INDEX response_cache_by_digest ON response_cache_in_order (digest);
INSERT INTO response_cache_in_order (digest, key, value, created_at, run_id)
SELECT ('x' || substr(key, 1, 16))::bit(64)::bigint, key, value, created_at, run_id
FROM response_cache
WHERE key ~ '^[0-9a-f]{16}'
ORDER BY created_at
ON CONFLICT (digest) DO NOTHING;
DROP TABLE response_cache;
ALTER TABLE response_cache_in_order RENAME TO response_cache;
CREATE INDEX response_cache_by_run ON response_cache (run_id);

-- The other runs that used a response, by its digest.
CREATE TABLE response_cache_users_by_digest (
    digest BIGINT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    PRIMARY KEY (digest, run_id)
);
INSERT INTO response_cache_users_by_digest (digest, run_id)
SELECT ('x' || substr(key, 1, 16))::bit(64)::bigint, run_id
FROM response_cache_users
WHERE key ~ '^[0-9a-f]{16}'
ON CONFLICT (digest, run_id) DO NOTHING;
DROP TABLE response_cache_users;
ALTER TABLE response_cache_users_by_digest RENAME TO response_cache_users;
CREATE INDEX response_cache_users_by_run ON response_cache_users (run_id);
