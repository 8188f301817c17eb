//! Versioned migrations: `schemas/clickhouse/NNNN_name.sql`, compiled in, applied in order and
//! recorded in `schema_migrations`.
//!
//! ClickHouse has no transactional DDL, so instead of a lock every statement is idempotent and
//! the record is a ReplacingMergeTree row keyed by name: two processes migrating at once both
//! run the statements, the second run of each is a no-op, and both records collapse into one.
//! Idempotent means one of: `CREATE … IF NOT EXISTS`; `RENAME TABLE a TO b`, which is done once
//! `b` exists (ClickHouse refuses to rename onto an existing table, so a second run fails with
//! "already exists" and is taken as done); `INSERT INTO t … SELECT` into a ReplacingMergeTree
//! table, where a second copy of a row has the same key and version and reads as one; and any
//! statement behind a guard that makes its second run a no-op.
//!
//! Guards are comment lines right before a statement, checked against the database just before
//! it runs ([`Guard`]):
//! - `-- @unless-column-exists table.column`: skipped once the column exists (a rename of an
//!   old table is skipped once the new table stands in its place);
//! - `-- @if-table-exists table`: skipped when the table does not exist, also when it vanishes
//!   while the statement runs (a concurrent migrator dropped it);
//! - `-- @if-table-empty table`: skipped unless the table exists and has no rows.
//!
//! With `cluster` set in the config, every statement runs in its cluster form instead
//! ([`crate::cluster`]: replicated local tables and Distributed tables, `ON CLUSTER`), and the
//! guards read the Distributed tables, which have the columns and see the rows of all shards.

use clickhouse::sql::Identifier;
use serde::{Deserialize, Serialize};

use crate::cluster::{self, Layout, Step};
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
pub const MIGRATIONS: &[Migration] = migrations![
    "0001_events",
    "0002_conversion_credits",
    "0003_sites_and_revisions"
];

/// The runner's own table; not a numbered migration because it must exist before them.
pub(crate) const MIGRATIONS_TABLE: &str =
    include_str!("../../../schemas/clickhouse/schema_migrations.sql");

/// ClickHouse exception codes that a concurrent `CREATE … IF NOT EXISTS` can still raise when
/// another process created the object between the check and the creation, and that a `RENAME`
/// onto an existing table raises.
const ALREADY_EXISTS: &[u32] = &[
    57, // TABLE_ALREADY_EXISTS
    82, // DATABASE_ALREADY_EXISTS
];

/// What a statement on a table that a concurrent migrator drops gets: UNKNOWN_TABLE once the
/// table is gone, TABLE_IS_DROPPED while the drop is under way.
const VANISHED: &[u32] = &[
    60,  // UNKNOWN_TABLE
    218, // TABLE_IS_DROPPED
];

fn vanished(e: &WarehouseError) -> bool {
    e.server_code().is_some_and(|code| VANISHED.contains(&code))
}

/// A condition a migration statement runs under (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Guard {
    UnlessColumnExists { table: String, column: String },
    IfTableExists(String),
    IfTableEmpty(String),
}

impl Guard {
    /// The guards in the comment lines of `statement`.
    fn parse_all(statement: &str) -> Result<Vec<Guard>, String> {
        let mut guards = Vec::new();
        for line in statement.lines() {
            let Some(directive) = line.trim().strip_prefix("-- @") else {
                continue;
            };
            let (name, arg) = directive.split_once(' ').unwrap_or((directive, ""));
            let arg = arg.trim();
            let guard = match name {
                "unless-column-exists" => {
                    let (table, column) = arg.split_once('.').ok_or_else(|| {
                        format!("@unless-column-exists needs table.column: {arg:?}")
                    })?;
                    Guard::UnlessColumnExists {
                        table: table.into(),
                        column: column.into(),
                    }
                }
                "if-table-exists" => Guard::IfTableExists(arg.into()),
                "if-table-empty" => Guard::IfTableEmpty(arg.into()),
                other => return Err(format!("unknown migration guard @{other}")),
            };
            guards.push(guard);
        }
        Ok(guards)
    }
}

async fn guards_allow(
    client: &clickhouse::Client,
    database: &str,
    guards: &[Guard],
) -> Result<bool, WarehouseError> {
    for guard in guards {
        let what = || format!("checking migration guard {guard:?}");
        let allowed = match guard {
            Guard::UnlessColumnExists { table, column } => {
                let n: u64 = client
                    .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                    .bind(database)
                    .bind(table)
                    .bind(column)
                    .fetch_one()
                    .await
                    .map_err(|e| WarehouseError::classify(what(), e))?;
                n == 0
            }
            Guard::IfTableExists(table) | Guard::IfTableEmpty(table) => {
                let n: u64 = client
                    .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
                    .bind(database)
                    .bind(table)
                    .fetch_one()
                    .await
                    .map_err(|e| WarehouseError::classify(what(), e))?;
                if n == 0 {
                    false
                } else if matches!(guard, Guard::IfTableEmpty(_)) {
                    let rows = client
                        .query("SELECT count() FROM ?")
                        .bind(Identifier(table))
                        .fetch_one::<u64>()
                        .await;
                    match rows {
                        Ok(rows) => rows == 0,
                        Err(e) => {
                            let e = WarehouseError::classify(what(), e);
                            if vanished(&e) {
                                false
                            } else {
                                return Err(e);
                            }
                        }
                    }
                } else {
                    true
                }
            }
        };
        if !allowed {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A statement that starts (after comments) with `RENAME TABLE`.
#[cfg(test)]
fn is_rename(statement: &str) -> bool {
    first_words(statement).starts_with("RENAME TABLE")
}

/// The statement without its leading comments and whitespace, upper-cased words.
#[cfg(test)]
fn first_words(statement: &str) -> String {
    let code: Vec<&str> = statement
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    code.join(" ")
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase()
}

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct Applied {
    name: String,
    checksum: String,
}

/// Creates `cfg.database` if missing and applies the migrations it has not recorded yet.
/// Returns the names of those this call applied (when two processes race, both may list one).
pub async fn migrate(cfg: &WarehouseConfig) -> Result<Vec<String>, WarehouseError> {
    migrate_up_to(cfg, MIGRATIONS.len()).await
}

/// Applies only the first `count` migrations (what an older release would have left behind),
/// for tests of upgrades.
pub async fn migrate_up_to(
    cfg: &WarehouseConfig,
    count: usize,
) -> Result<Vec<String>, WarehouseError> {
    let cluster = match &cfg.cluster {
        Some(name) => Some(check_cluster(cfg, name).await?),
        None => None,
    };
    let wanted = &MIGRATIONS[..count.min(MIGRATIONS.len())];
    if let Some(applied) = already_applied(cfg, wanted).await {
        warn_if_changed(cfg, wanted, &applied);
        return Ok(Vec::new());
    }
    let on_cluster = cluster
        .as_ref()
        .map_or(String::new(), |c| format!(" ON CLUSTER {c}"));
    execute(
        server_client(cfg)
            .query(&format!("CREATE DATABASE IF NOT EXISTS ?{on_cluster}"))
            .bind(Identifier(&cfg.database)),
        || format!("creating database {}", cfg.database),
    )
    .await?;
    let client = client(cfg);
    let runner = Migration {
        name: "schema_migrations",
        sql: MIGRATIONS_TABLE,
    };
    for statement in sql::statements(MIGRATIONS_TABLE) {
        run_statement(
            &client,
            cfg,
            cluster.as_deref(),
            &runner,
            statement,
            &[],
            Layout::EveryServer,
        )
        .await?;
    }

    let applied = client
        .query("SELECT name, any(checksum) FROM schema_migrations GROUP BY name")
        .fetch_all::<Applied>()
        .await
        .map_err(|e| WarehouseError::classify("reading schema_migrations".into(), e))?;

    warn_if_changed(cfg, wanted, &applied);
    let mut newly_applied = Vec::new();
    for migration in wanted {
        let checksum = checksum(migration.sql);
        if applied.iter().any(|a| a.name == migration.name) {
            continue;
        }
        for statement in sql::statements(migration.sql) {
            let guards =
                Guard::parse_all(statement).map_err(|reason| WarehouseError::BadMigration {
                    migration: migration.name.into(),
                    reason,
                })?;
            if !guards_allow(&client, &cfg.database, &guards).await? {
                tracing::info!(migration = migration.name, "statement skipped by its guard");
                continue;
            }
            run_statement(
                &client,
                cfg,
                cluster.as_deref(),
                migration,
                statement,
                &guards,
                Layout::Sharded,
            )
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

/// The records of `schema_migrations` when it already lists every one of `wanted`: then there
/// is nothing to do, and no DDL is sent (on a cluster, `CREATE … ON CLUSTER` of what exists
/// waits for every server's DDL queue, many seconds on 18.16, which a restarted sink would
/// spend before consuming). None when it does not, or cannot be read (a fresh database): the
/// full path runs.
async fn already_applied(cfg: &WarehouseConfig, wanted: &[Migration]) -> Option<Vec<Applied>> {
    let applied = client(cfg)
        .query("SELECT name, any(checksum) FROM schema_migrations GROUP BY name")
        .fetch_all::<Applied>()
        .await
        .ok()?;
    wanted
        .iter()
        .all(|m| applied.iter().any(|a| a.name == m.name))
        .then_some(applied)
}

fn warn_if_changed(cfg: &WarehouseConfig, wanted: &[Migration], applied: &[Applied]) {
    for migration in wanted {
        if applied
            .iter()
            .any(|a| a.name == migration.name && a.checksum != checksum(migration.sql))
        {
            tracing::warn!(
                migration = migration.name,
                database = %cfg.database,
                "migration changed after it was applied; the database keeps the old version \
                 (add a new migration instead of editing an applied one)"
            );
        }
    }
}

/// Checks that the server knows `cluster` and that the names pasted into the cluster DDL are
/// plain identifiers; returns the cluster's name.
async fn check_cluster(cfg: &WarehouseConfig, cluster: &str) -> Result<String, WarehouseError> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    for (what, name) in [
        ("clickhouse.cluster", cluster),
        ("clickhouse.database", &cfg.database),
    ] {
        if !plain(name) {
            return Err(crate::misconfigured(
                format!("the cluster migrations of {}", cfg.database),
                format!(
                    "{what} must be a plain identifier (letters, digits, _) on a cluster: {name:?}"
                ),
            ));
        }
    }
    let servers: u64 = server_client(cfg)
        .query("SELECT count() FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await
        .map_err(|e| WarehouseError::classify(format!("reading cluster {cluster}"), e))?;
    if servers == 0 {
        return Err(crate::misconfigured(
            format!("the cluster migrations of {}", cfg.database),
            format!(
                "{} does not define cluster {cluster:?} (see its system.clusters / remote_servers)",
                cfg.url
            ),
        ));
    }
    Ok(cluster.to_string())
}

/// Runs one statement of `migration`: as it is on a single server, in its cluster form on a
/// cluster. "Already exists" is taken as done (a CREATE a concurrent migrator won, a RENAME
/// that happened before), and so is a guarded table that vanished meanwhile.
async fn run_statement(
    client: &clickhouse::Client,
    cfg: &WarehouseConfig,
    cluster: Option<&str>,
    migration: &Migration,
    statement: &str,
    guards: &[Guard],
    layout: Layout,
) -> Result<(), WarehouseError> {
    let what = || format!("migration {} on database {}", migration.name, cfg.database);
    let steps = match cluster {
        None => vec![Step::AsIs(statement.to_string())],
        Some(cluster) => cluster::steps(statement, &cfg.database, cluster, migration.name, layout)
            .map_err(|reason| WarehouseError::BadMigration {
                migration: migration.name.into(),
                reason,
            })?,
    };
    for step in steps {
        let result = match &step {
            Step::Ddl(sql) => execute(client.query_raw(sql), what).await,
            Step::AsIs(sql) => {
                // On a cluster: the INSERT returns once every shard has its rows, and a JOIN
                // whose left side is a Distributed table reads its right side once, whole,
                // on this server and sends it to the shards (GLOBAL JOIN).
                let client = if cluster.is_some() {
                    client
                        .clone()
                        .with_setting("insert_distributed_sync", "1")
                        .with_setting("distributed_product_mode", "global")
                } else {
                    client.clone()
                };
                execute(client.query_raw(sql), what).await
            }
            Step::PointDistributed { table } => {
                point_distributed(client, cfg, cluster.unwrap_or_default(), table).await
            }
        };
        match result {
            Err(e)
                if vanished(&e) && guards.iter().any(|g| matches!(g, Guard::IfTableExists(_))) =>
            {
                tracing::info!(
                    migration = migration.name,
                    "guarded table vanished; skipped"
                );
            }
            other => other?,
        }
    }
    Ok(())
}

/// The CREATE of a Distributed table `table` over `table_local` with its columns, sharded by
/// the device when `sharded`.
fn distributed_over_local(db: &str, cluster: &str, table: &str, sharded: bool) -> String {
    let key = if sharded {
        format!(", {}", cluster::SHARDING_KEY)
    } else {
        String::new()
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{table}_local \
         ENGINE = Distributed({cluster}, {db}, {table}_local{key})"
    )
}

/// Every statement the cluster form of the migrations may run for `database` on `cluster`, in
/// order, the runner's table first; where the runner points a Distributed table at a renamed
/// local table, the DROP and CREATE it may run. For checking them on other ClickHouse versions
/// (`tests/chdb/explain.py` parses them on current ClickHouse).
pub fn cluster_statements(database: &str, cluster: &str) -> Result<Vec<String>, WarehouseError> {
    let runner = Migration {
        name: "schema_migrations",
        sql: MIGRATIONS_TABLE,
    };
    let mut out = Vec::new();
    for (migration, layout) in std::iter::once((&runner, Layout::EveryServer))
        .chain(MIGRATIONS.iter().map(|m| (m, Layout::Sharded)))
    {
        for statement in sql::statements(migration.sql) {
            let steps = cluster::steps(statement, database, cluster, migration.name, layout)
                .map_err(|reason| WarehouseError::BadMigration {
                    migration: migration.name.into(),
                    reason,
                })?;
            for step in steps {
                match step {
                    Step::Ddl(sql) | Step::AsIs(sql) => out.push(sql),
                    Step::PointDistributed { table } => {
                        out.push(format!(
                            "DROP TABLE IF EXISTS {database}.{table} ON CLUSTER {cluster}"
                        ));
                        out.push(distributed_over_local(database, cluster, &table, true));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Makes the Distributed table `table` read `table_local` (see [`Step::PointDistributed`]).
///
/// Only a Distributed table that reads another table is dropped, so a correct one is never
/// removed for good: two migrators that both find it wrong both drop it and both create it (IF NOT
/// EXISTS). While they do, the table is briefly missing, which a guarded statement reading it
/// takes as vanished; the migrator that recreates it runs that statement itself afterwards.
async fn point_distributed(
    client: &clickhouse::Client,
    cfg: &WarehouseConfig,
    cluster: &str,
    table: &str,
) -> Result<(), WarehouseError> {
    let what = || format!("pointing {}.{table} at {table}_local", cfg.database);
    let db = &cfg.database;
    let local = format!("{table}_local");
    let engines = client
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind(table)
        .fetch_all::<String>()
        .await
        .map_err(|e| WarehouseError::classify(what(), e))?;
    match engines.first() {
        Some(engine) if cluster::distributed_target(engine) == Some(local.as_str()) => {
            return Ok(());
        }
        Some(_) => {
            execute(
                client.query_raw(&format!(
                    "DROP TABLE IF EXISTS {db}.{table} ON CLUSTER {cluster}"
                )),
                what,
            )
            .await?;
        }
        None => {}
    }
    let device_columns: u64 = client
        .query(
            "SELECT count() FROM system.columns WHERE database = ? AND table = ? \
             AND name IN ('site_id', 'anonymous_id')",
        )
        .bind(db)
        .bind(&local)
        .fetch_one()
        .await
        .map_err(|e| WarehouseError::classify(what(), e))?;
    execute(
        client.query_raw(&distributed_over_local(
            db,
            cluster,
            table,
            device_columns == 2,
        )),
        what,
    )
    .await
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
                let start = first_words(statement);
                let guarded = !Guard::parse_all(statement).unwrap().is_empty();
                let safe = (start.starts_with("CREATE") && statement.contains("IF NOT EXISTS"))
                    || is_rename(statement)
                    || (start.starts_with("INSERT INTO") && statement.contains("SELECT"))
                    || (guarded && start.starts_with("DROP TABLE IF EXISTS"));
                assert!(
                    safe,
                    "{}: every statement must be safe to run twice:\n{statement}",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn guards_are_read_from_the_comment_lines() {
        let statement = "-- copy\n-- @if-table-exists events_0002\n-- @unless-column-exists events.revision\nINSERT INTO events SELECT 1";
        assert_eq!(
            Guard::parse_all(statement).unwrap(),
            [
                Guard::IfTableExists("events_0002".into()),
                Guard::UnlessColumnExists {
                    table: "events".into(),
                    column: "revision".into()
                }
            ]
        );
        assert!(Guard::parse_all("-- @if-tabel-exists x\nSELECT 1").is_err());
        assert!(Guard::parse_all("-- @unless-column-exists events\nSELECT 1").is_err());
        for migration in MIGRATIONS {
            for statement in sql::statements(migration.sql) {
                Guard::parse_all(statement).unwrap();
            }
        }
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
