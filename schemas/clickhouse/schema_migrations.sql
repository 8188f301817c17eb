-- The migration runner's own table (not a numbered migration: it must exist before them).
-- One row per applied migration; two processes migrating at once both insert one, and the
-- ReplacingMergeTree key (name) collapses them. Readers use FINAL or GROUP BY name.
CREATE TABLE IF NOT EXISTS schema_migrations
(
    name String COMMENT 'migration file name without .sql',
    checksum String COMMENT 'FNV-1a 64 of the file as applied',
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY name
