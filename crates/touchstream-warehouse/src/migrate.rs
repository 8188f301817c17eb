//! Versioned migrations: `schemas/clickhouse/NNNN_name.sql`, compiled in, applied in order and
//! recorded in `schema_migrations`.
//!
//! ClickHouse has no transactional DDL, so instead of a lock every statement is idempotent
//! (`IF NOT EXISTS`) and the record is a ReplacingMergeTree row keyed by name: two processes
//! migrating at once both run the statements, the second run of each is a no-op, and both
//! records collapse into one.

use clickhouse::sql::Identifier;
use serde::{Deserialize, Serialize};

use crate::{WarehouseConfig, WarehouseError, client, server_client, sql};

/// One migration file.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// File name without `.sql`, e.g. `0001_events`.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($($name:literal),+ $(,)?) => {
        &[$(Migration {
            name: $name,
            sql: include_str!(concat!("../../../schemas/clickhouse/", $name, ".sql")),
        }),+]
    };
}

/// Every migration, in the order it is applied. A new file in `schemas/clickhouse/` goes at
/// the end of this list (a unit test checks the two agree).
pub const MIGRATIONS: &[Migration] = migrations!["0001_events", "0002_conversion_credits"];

/// The runner's own table; not a numbered migration because it must exist before them.
const MIGRATIONS_TABLE: &str = include_str!("../../../schemas/clickhouse/schema_migrations.sql");

/// ClickHouse exception codes that a concurrent `CREATE … IF NOT EXISTS` can still raise when
/// another process created the object between the check and the creation.
const ALREADY_EXISTS: &[u32] = &[
    57, // TABLE_ALREADY_EXISTS
    82, // DATABASE_ALREADY_EXISTS
];

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct Applied {
    name: String,
    checksum: String,
}

/// Creates `cfg.database` if missing and applies the migrations it has not recorded yet.
/// Returns the names of those this call applied (when two processes race, both may list one).
pub async fn migrate(cfg: &WarehouseConfig) -> Result<Vec<String>, WarehouseError> {
    execute(
        server_client(cfg)
            .query("CREATE DATABASE IF NOT EXISTS ?")
            .bind(Identifier(&cfg.database)),
        || format!("creating database {}", cfg.database),
    )
    .await?;
    let client = client(cfg);
    execute(client.query_raw(MIGRATIONS_TABLE), || {
        format!("creating {}.schema_migrations", cfg.database)
    })
    .await?;

    let applied = client
        .query("SELECT name, any(checksum) FROM schema_migrations GROUP BY name")
        .fetch_all::<Applied>()
        .await
        .map_err(|e| WarehouseError::classify("reading schema_migrations".into(), e))?;

    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS {
        let checksum = checksum(migration.sql);
        if let Some(done) = applied.iter().find(|a| a.name == migration.name) {
            if done.checksum != checksum {
                tracing::warn!(
                    migration = migration.name,
                    database = %cfg.database,
                    "migration changed after it was applied; the database keeps the old version \
                     (add a new migration instead of editing an applied one)"
                );
            }
            continue;
        }
        for statement in sql::statements(migration.sql) {
            execute(client.query_raw(statement), || {
                format!("migration {} on database {}", migration.name, cfg.database)
            })
            .await?;
        }
        execute(
            client
                .query("INSERT INTO schema_migrations (name, checksum, applied_at) VALUES (?, ?, now())")
                .bind(migration.name)
                .bind(&checksum),
            || format!("recording migration {}", migration.name),
        )
        .await?;
        tracing::info!(migration = migration.name, database = %cfg.database, "migration applied");
        newly_applied.push(migration.name.to_string());
    }
    Ok(newly_applied)
}

async fn execute(
    query: clickhouse::query::Query,
    what: impl FnOnce() -> String,
) -> Result<(), WarehouseError> {
    match query.execute().await {
        Ok(()) => Ok(()),
        Err(e) => {
            let error = WarehouseError::classify(what(), e);
            match error.server_code() {
                Some(code) if ALREADY_EXISTS.contains(&code) => Ok(()),
                _ => Err(error),
            }
        }
    }
}

/// FNV-1a, 64 bits, as hex: enough to notice an edited migration.
fn checksum(sql: &str) -> String {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
            .filter(|name| name.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, name) in listed.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "{name} is out of sequence"
            );
        }
    }

    #[test]
    fn every_statement_is_idempotent() {
        let runner = Migration {
            name: "schema_migrations",
            sql: MIGRATIONS_TABLE,
        };
        for migration in MIGRATIONS.iter().chain([&runner]) {
            for statement in sql::statements(migration.sql) {
                assert!(
                    statement.contains("IF NOT EXISTS"),
                    "{}: every statement must be safe to run twice:\n{statement}",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
