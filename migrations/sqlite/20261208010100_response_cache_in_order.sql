-- The response cache in the order its entries were stored, looked up by a 64-bit digest
-- of the request's key. It was a `WITHOUT ROWID` table keyed by the 64 hex characters of
-- the key, so each commit's new responses (one per case of a provider-backed run) landed
-- on as many random pages of the table and of its index by run, each page a 4 KiB frame
-- in the write-ahead log. Rows now append (INTEGER PRIMARY KEY); what is random is the
-- digest's index, ~12 bytes an entry, a few pages for a whole commit.
--
-- `digest` is the key's first 16 hex digits as a signed 64-bit integer (the key is the
-- SHA-256, in hex, of the request); a lookup compares the full key as well, so two keys
-- with one digest are a miss for the second, never a wrong response. Every stored key is
-- such a hash: rows whose key is not are dropped here.
CREATE TABLE response_cache_in_order (
    id         INTEGER PRIMARY KEY NOT NULL,
    digest     INTEGER NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- Who the response belongs to (NULL: stored before runs could be deleted; kept).
    run_id     TEXT
);
CREATE UNIQUE INDEX response_cache_by_digest ON response_cache_in_order (digest);
INSERT INTO response_cache_in_order (digest, key, value, created_at, run_id)
SELECT ((instr('0123456789abcdef', substr(key, 1, 1)) - 1) << 60) | ((instr('0123456789abcdef', substr(key, 2, 1)) - 1) << 56)
     | ((instr('0123456789abcdef', substr(key, 3, 1)) - 1) << 52) | ((instr('0123456789abcdef', substr(key, 4, 1)) - 1) << 48)
     | ((instr('0123456789abcdef', substr(key, 5, 1)) - 1) << 44) | ((instr('0123456789abcdef', substr(key, 6, 1)) - 1) << 40)
     | ((instr('0123456789abcdef', substr(key, 7, 1)) - 1) << 36) | ((instr('0123456789abcdef', substr(key, 8, 1)) - 1) << 32)
     | ((instr('0123456789abcdef', substr(key, 9, 1)) - 1) << 28) | ((instr('0123456789abcdef', substr(key, 10, 1)) - 1) << 24)
     | ((instr('0123456789abcdef', substr(key, 11, 1)) - 1) << 20) | ((instr('0123456789abcdef', substr(key, 12, 1)) - 1) << 16)
     | ((instr('0123456789abcdef', substr(key, 13, 1)) - 1) << 12) | ((instr('0123456789abcdef', substr(key, 14, 1)) - 1) << 8)
     | ((instr('0123456789abcdef', substr(key, 15, 1)) - 1) << 4) | ((instr('0123456789abcdef', substr(key, 16, 1)) - 1) << 0),
       key, value, created_at, run_id
FROM response_cache
WHERE length(key) >= 16 AND substr(key, 1, 16) NOT GLOB '*[^0-9a-f]*'
ORDER BY created_at
ON CONFLICT (digest) DO NOTHING;
DROP TABLE response_cache;
ALTER TABLE response_cache_in_order RENAME TO response_cache;
CREATE INDEX response_cache_by_run ON response_cache (run_id);

-- The other runs that used a response, by its digest.
CREATE TABLE response_cache_users_by_digest (
    digest INTEGER NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    PRIMARY KEY (digest, run_id)
) WITHOUT ROWID;
INSERT INTO response_cache_users_by_digest (digest, run_id)
SELECT ((instr('0123456789abcdef', substr(key, 1, 1)) - 1) << 60) | ((instr('0123456789abcdef', substr(key, 2, 1)) - 1) << 56)
     | ((instr('0123456789abcdef', substr(key, 3, 1)) - 1) << 52) | ((instr('0123456789abcdef', substr(key, 4, 1)) - 1) << 48)
     | ((instr('0123456789abcdef', substr(key, 5, 1)) - 1) << 44) | ((instr('0123456789abcdef', substr(key, 6, 1)) - 1) << 40)
     | ((instr('0123456789abcdef', substr(key, 7, 1)) - 1) << 36) | ((instr('0123456789abcdef', substr(key, 8, 1)) - 1) << 32)
     | ((instr('0123456789abcdef', substr(key, 9, 1)) - 1) << 28) | ((instr('0123456789abcdef', substr(key, 10, 1)) - 1) << 24)
     | ((instr('0123456789abcdef', substr(key, 11, 1)) - 1) << 20) | ((instr('0123456789abcdef', substr(key, 12, 1)) - 1) << 16)
     | ((instr('0123456789abcdef', substr(key, 13, 1)) - 1) << 12) | ((instr('0123456789abcdef', substr(key, 14, 1)) - 1) << 8)
     | ((instr('0123456789abcdef', substr(key, 15, 1)) - 1) << 4) | ((instr('0123456789abcdef', substr(key, 16, 1)) - 1) << 0),
       run_id
FROM response_cache_users
WHERE length(key) >= 16 AND substr(key, 1, 16) NOT GLOB '*[^0-9a-f]*'
ON CONFLICT (digest, run_id) DO NOTHING;
DROP TABLE response_cache_users;
ALTER TABLE response_cache_users_by_digest RENAME TO response_cache_users;
CREATE INDEX response_cache_users_by_run ON response_cache_users (run_id);
