//! Erasure and retention in ClickHouse: deleting a person's rows from every table, and dropping
//! the monthly partitions older than a table's retention.
//!
//! Deletion is `ALTER TABLE … DELETE WHERE …`, a mutation, on ClickHouse 18.16 and on current
//! ClickHouse alike. 18.16 has nothing else; current ClickHouse also has the lightweight
//! `DELETE FROM`, which only masks the rows until a later merge rewrites their parts, while a
//! mutation rewrites the parts and the rows are gone from disk once it is done, which is what
//! an erasure must be able to say. The mutation runs on the tables that hold the rows: the
//! single server's tables, or on a cluster each shard's `*_local` table, on one replica (a
//! replicated table hands the mutation to its other replicas through ZooKeeper).
//!
//! Retention drops whole partitions (`ALTER TABLE … DROP PARTITION`): every table is
//! partitioned by month (`toYYYYMM` of its time column), and 18.16 has no TTL.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use touchstream_model::forget::Scope;

use crate::sharded::ShardedWriter;
use crate::{WarehouseConfig, WarehouseError, client, misconfigured};

/// The tables that hold people's rows, each with its time column (the partition key's).
pub const TABLES: &[(&str, &str)] = &[
    ("events", "event_time"),
    ("conversion_credits", "conversion_time"),
];

/// A string literal for ClickHouse SQL.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn on_site(site: &Option<String>, condition: String) -> String {
    match site {
        Some(s) => format!("(site_id = {} AND ({condition}))", quote(s)),
        None => format!("({condition})"),
    }
}

/// The condition that selects the rows of `scope` in `table` (`None`: nothing to delete).
/// A user's rows are those of its person (`identity_id`; on `events` also every row that carried
/// its `user_id`); a device's those it sent (`anonymous_id`).
pub fn condition(table: &str, scope: &Scope) -> Option<String> {
    let mut parts = Vec::new();
    for (site, user) in &scope.users {
        let u = quote(user);
        let c = if table == "events" {
            format!("identity_id = {u} OR user_id = {u}")
        } else {
            format!("identity_id = {u}")
        };
        parts.push(on_site(site, c));
    }
    for (site, device) in &scope.devices {
        parts.push(on_site(site, format!("anonymous_id = {}", quote(device))));
    }
    (!parts.is_empty()).then(|| parts.join(" OR "))
}

/// Rows per table.
pub type Counts = BTreeMap<String, u64>;

/// The servers whose tables hold the rows, and the suffix of those tables' names: the one
/// server (`""`), or one replica of every shard (`"_local"`).
async fn holders(
    cfg: &WarehouseConfig,
) -> Result<Vec<(clickhouse::Client, &'static str)>, WarehouseError> {
    match &cfg.cluster {
        None => Ok(vec![(client(cfg), "")]),
        Some(cluster) => {
            let shards = ShardedWriter::new(cfg, cluster).shards().await?;
            let mut out = Vec::with_capacity(shards.len());
            for replicas in shards {
                let Some(url) = replicas.first() else {
                    return Err(misconfigured(
                        format!("the shards of cluster {cluster}"),
                        "a shard without replicas".into(),
                    ));
                };
                let at = WarehouseConfig {
                    url: url.clone(),
                    ..cfg.clone()
                };
                out.push((client(&at), "_local"));
            }
            Ok(out)
        }
    }
}

/// Rows of `scope` per table (read through the Distributed tables on a cluster).
pub async fn count(cfg: &WarehouseConfig, scope: &Scope) -> Result<Counts, WarehouseError> {
    let c = client(cfg);
    let mut counts = Counts::new();
    for (table, _) in TABLES {
        let n = match condition(table, scope) {
            None => 0,
            Some(cond) => {
                let sql = format!("SELECT count() FROM {table} WHERE {cond}");
                c.query(&sql).fetch_one::<u64>().await.map_err(|e| {
                    WarehouseError::classify(format!("counting the rows to forget in {table}"), e)
                })?
            }
        };
        counts.insert((*table).to_owned(), n);
    }
    Ok(counts)
}

/// `scope` with the devices its users' rows name (`events`): every device that ever carried
/// the user id, also those the enricher no longer knows.
pub async fn with_devices_of_users(
    cfg: &WarehouseConfig,
    scope: &Scope,
) -> Result<Scope, WarehouseError> {
    let mut out = scope.clone();
    if scope.users.is_empty() {
        return Ok(out);
    }
    let users = Scope {
        users: scope.users.clone(),
        devices: Vec::new(),
    };
    let Some(cond) = condition("events", &users) else {
        return Ok(out);
    };
    let devices = client(cfg)
        .query(&format!(
            "SELECT DISTINCT site_id, anonymous_id FROM events WHERE {cond}"
        ))
        .fetch_all::<(String, String)>()
        .await
        .map_err(|e| {
            WarehouseError::classify("finding the devices of forgotten users".into(), e)
        })?;
    for (site, device) in devices {
        let d = (Some(site), device);
        if !out.devices.contains(&d) {
            out.devices.push(d);
        }
    }
    Ok(out)
}

/// Deletes the rows of `scope` (and of every device its users' rows name) from every table:
/// counts them, then starts one mutation per table that has any (on every shard). Returns the
/// counts; the mutations finish in the background (see [`unfinished_mutations`]).
pub async fn delete(cfg: &WarehouseConfig, scope: &Scope) -> Result<Counts, WarehouseError> {
    let scope = &with_devices_of_users(cfg, scope).await?;
    let counts = count(cfg, scope).await?;
    let holders = holders(cfg).await?;
    for (table, _) in TABLES {
        if counts.get(*table).copied().unwrap_or(0) == 0 {
            continue;
        }
        let Some(cond) = condition(table, scope) else {
            continue;
        };
        for (server, suffix) in &holders {
            let sql = format!("ALTER TABLE {table}{suffix} DELETE WHERE {cond}");
            server.query(&sql).execute().await.map_err(|e| {
                WarehouseError::classify(format!("deleting forgotten rows from {table}{suffix}"), e)
            })?;
        }
    }
    Ok(counts)
}

/// Mutations not done yet on the touchstream tables (on a cluster: on every replica of every
/// shard, each of which runs a replicated mutation itself).
pub async fn unfinished_mutations(cfg: &WarehouseConfig) -> Result<u64, WarehouseError> {
    let servers = match &cfg.cluster {
        None => vec![client(cfg)],
        Some(cluster) => ShardedWriter::new(cfg, cluster)
            .shards()
            .await?
            .into_iter()
            .flatten()
            .map(|url| client(&WarehouseConfig { url, ..cfg.clone() }))
            .collect(),
    };
    let mut n = 0;
    for server in servers {
        n += server
            .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
            .bind(&cfg.database)
            .fetch_one::<u64>()
            .await
            .map_err(|e| WarehouseError::classify("reading system.mutations".into(), e))?;
    }
    Ok(n)
}

/// How long each table keeps its rows, in months (`[sink.retention]`); a table not named
/// keeps them for ever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Table name → months, e.g. `events = 25`.
    pub retention_months: BTreeMap<String, u32>,
    /// How often the sink applies it, in hours (0: never; `touchstream retention apply` still
    /// does). One day by default.
    pub every_hours: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retention_months: BTreeMap::new(),
            every_hours: 24,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (table, months) in &self.retention_months {
            if !TABLES.iter().any(|(t, _)| t == table) {
                let known: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
                return Err(format!(
                    "retention.retention_months.{table}: no such table (the tables are {})",
                    known.join(", ")
                ));
            }
            if *months == 0 {
                return Err(format!(
                    "retention.retention_months.{table}: must be at least 1 month"
                ));
            }
        }
        Ok(())
    }
}

/// The first month (`YYYYMM`) a table with `months` of retention keeps, in the month `now`
/// (`YYYYMM`): partitions of earlier months hold only rows older than `months` months.
pub fn first_kept_month(now: u32, months: u32) -> u32 {
    let index = (now / 100) * 12 + (now % 100 - 1);
    let kept = index.saturating_sub(months);
    (kept / 12) * 100 + kept % 12 + 1
}

/// The month (`YYYYMM`, UTC) of an epoch-millisecond time.
pub fn month_of(epoch_ms: i64) -> u32 {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.year().max(0) as u32 * 100 + u32::from(u8::from(t.month()))
}

/// What one table's retention did: the partitions (`YYYYMM`) dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub table: String,
    pub first_kept: u32,
    pub partitions: Vec<u32>,
    pub rows: u64,
}

/// Drops, in every table with a retention, the monthly partitions before its first kept month
/// (`now`: the current month, `YYYYMM`, UTC).
pub async fn apply_retention(
    cfg: &WarehouseConfig,
    retention: &RetentionConfig,
    now: u32,
) -> Result<Vec<Dropped>, WarehouseError> {
    let holders = holders(cfg).await?;
    let mut out = Vec::new();
    for (table, months) in &retention.retention_months {
        let first_kept = first_kept_month(now, *months);
        let mut dropped = Dropped {
            table: table.clone(),
            first_kept,
            ..Dropped::default()
        };
        for (server, suffix) in &holders {
            let local = format!("{table}{suffix}");
            let parts = server
                .query(
                    "SELECT partition, sum(rows) FROM system.parts \
                     WHERE database = ? AND table = ? AND active GROUP BY partition",
                )
                .bind(&cfg.database)
                .bind(&local)
                .fetch_all::<(String, u64)>()
                .await
                .map_err(|e| {
                    WarehouseError::classify(format!("listing the partitions of {local}"), e)
                })?;
            for (partition, rows) in parts {
                // A monthly partition's id is its YYYYMM; anything else is not ours to drop.
                let Ok(month) = partition.trim_matches('\'').parse::<u32>() else {
                    continue;
                };
                if month >= first_kept {
                    continue;
                }
                server
                    .query(&format!("ALTER TABLE {local} DROP PARTITION {month}"))
                    .execute()
                    .await
                    .map_err(|e| {
                        WarehouseError::classify(
                            format!("dropping partition {month} of {local}"),
                            e,
                        )
                    })?;
                if !dropped.partitions.contains(&month) {
                    dropped.partitions.push(month);
                }
                dropped.rows += rows;
            }
        }
        dropped.partitions.sort_unstable();
        out.push(dropped);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn conditions_quote_and_cover_people_and_devices() {
        let scope = Scope {
            users: vec![(Some("s".into()), "o'neil".into())],
            devices: vec![(None, "a\\b".into())],
        };
        assert_eq!(
            condition("events", &scope).as_deref(),
            Some(
                "(site_id = 's' AND (identity_id = 'o\\'neil' OR user_id = 'o\\'neil')) OR (anonymous_id = 'a\\\\b')"
            )
        );
        assert_eq!(
            condition("conversion_credits", &scope).as_deref(),
            Some("(site_id = 's' AND (identity_id = 'o\\'neil')) OR (anonymous_id = 'a\\\\b')")
        );
        assert_eq!(condition("events", &Scope::default()), None);
    }

    #[test]
    fn retention_keeps_whole_months() {
        assert_eq!(first_kept_month(202612, 3), 202609);
        assert_eq!(first_kept_month(202602, 3), 202511);
        assert_eq!(first_kept_month(202601, 1), 202512);
        assert_eq!(first_kept_month(202601, 12), 202501);
        assert_eq!(first_kept_month(202601, 13), 202412);
        assert_eq!(month_of(1_764_547_200_000), 202512);
    }

    #[test]
    fn retention_names_only_known_tables() {
        let mut r = RetentionConfig::default();
        r.retention_months.insert("events".into(), 3);
        assert!(r.validate().is_ok());
        r.retention_months.insert("nope".into(), 3);
        assert!(r.validate().unwrap_err().contains("no such table"));
        r.retention_months.remove("nope");
        r.retention_months.insert("events".into(), 0);
        assert!(r.validate().is_err());
    }
}
