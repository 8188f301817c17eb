//! ClickHouse: the tables data engineers query, how attributed events become rows, and the
//! report queries `touchstream report` runs.
//!
//! - [`migrate`]: applies `schemas/clickhouse/NNNN_*.sql` (compiled in) and records them in
//!   `schema_migrations`; idempotent and safe to run from several processes at once.
//! - [`rows`]: [`EventRow`] and [`CreditRow`], one per event and one per conversion × model ×
//!   credited touch, built from an [`AttributedEvent`](touchstream_model::AttributedEvent) by
//!   [`rows_of`].
//! - [`insert`]: RowBinary inserts that return only once ClickHouse acknowledged them, into one
//!   server ([`clickhouse::Client`]) or, through a [`Warehouse`], into a cluster's shards.
//! - [`cluster`]: the cluster form of the migrations and the sharding key.
//! - [`privacy`]: erasure (`ALTER TABLE … DELETE`) and retention (`DROP PARTITION`).
//! - [`reports`]: the named report queries in `schemas/clickhouse/reports/`, run with bound
//!   parameters.
//! - [`error`]: [`WarehouseError`], which tells a retryable outage from rejected data.
//!
//! Everything must run on the local ClickHouse 18.16 and on current ClickHouse; see
//! `schemas/clickhouse/README.md` for the table design and what that compatibility costs.

pub mod cluster;
pub mod error;
pub mod migrate;
pub mod privacy;
pub mod reports;
pub mod rows;
mod sharded;
mod sql;

pub use error::WarehouseError;
pub use migrate::migrate;
pub use rows::{CreditRow, EventRow, rows_of};
pub use sharded::{ShardedWriter, Warehouse};

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

/// Where the warehouse is and who to be there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarehouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The cluster (its name in the servers' `remote_servers`) the tables are spread over; none
    /// for a single server. With it, migrations create replicated local tables and Distributed
    /// tables `ON CLUSTER`, and a [`Warehouse`] writes each row into its shard's local tables.
    pub cluster: Option<String>,
    /// On a cluster: the HTTP URL of a server, by its native address as `system.clusters` lists
    /// it (`host:port`). A server not listed here is reached at its host with the scheme and
    /// port of `url` (every server on the same HTTP port, as in most deployments).
    pub replica_urls: BTreeMap<String, String>,
}

impl Default for WarehouseConfig {
    /// The local development server started by `deploy/services.sh`.
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "touchstream".into(),
            user: "default".into(),
            password: String::new(),
            cluster: None,
            replica_urls: BTreeMap::new(),
        }
    }
}

/// A client for `cfg.database`. Validation is off: with it on, the crate sends a setting that
/// ClickHouse 18.16 rejects, and inserts use plain RowBinary (faster) instead of
/// RowBinaryWithNamesAndTypes. The integration tests check the row types against the tables.
pub fn client(cfg: &WarehouseConfig) -> clickhouse::Client {
    server_client(cfg).with_database(cfg.database.clone())
}

/// A client with no default database (to create the database itself).
fn server_client(cfg: &WarehouseConfig) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(cfg.url.clone())
        .with_user(cfg.user.clone())
        .with_password(cfg.password.clone())
        .with_validation(false)
}

/// Where rows go: one server ([`clickhouse::Client`], the tables of its database) or a
/// cluster ([`Warehouse`]).
pub trait Destination: Sync {
    /// Writes the rows, returning once every server that takes a part acknowledged it.
    fn write_rows<'a>(
        &'a self,
        events: &'a [EventRow],
        credits: &'a [CreditRow],
    ) -> impl Future<Output = Result<(), WarehouseError>> + Send + 'a;
}

impl Destination for clickhouse::Client {
    async fn write_rows(
        &self,
        events: &[EventRow],
        credits: &[CreditRow],
    ) -> Result<(), WarehouseError> {
        insert_rows(self, "conversion_credits", credits.iter(), "").await?;
        insert_rows(self, "events", events.iter(), "").await
    }
}

/// Writes rows: conversion credits first, then events, each as one RowBinary INSERT (on a
/// cluster: one per shard that has rows, see [`ShardedWriter`]). Returns `Ok` only once
/// ClickHouse acknowledged all of them, so the caller may commit its offsets.
///
/// A retried batch inserts the same rows again; the tables collapse them (ReplacingMergeTree on
/// the event id) and the report queries read them de-duplicated before any merge.
pub async fn insert<D: Destination + ?Sized>(
    to: &D,
    events: &[EventRow],
    credits: &[CreditRow],
) -> Result<(), WarehouseError> {
    to.write_rows(events, credits).await
}

/// One INSERT of `rows` into `table`; `at` ends the error's description (" at <server>").
async fn insert_rows<'r, T>(
    client: &clickhouse::Client,
    table: &str,
    rows: impl ExactSizeIterator<Item = &'r T> + Send,
    at: &str,
) -> Result<(), WarehouseError>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite + 'r,
{
    let n = rows.len();
    if n == 0 {
        return Ok(());
    }
    let what = || format!("an insert of {n} rows into {table}{at}");
    let mut insert = client
        .insert::<T>(table)
        .await
        .map_err(|e| WarehouseError::classify(what(), e))?;
    for row in rows {
        insert
            .write(row)
            .await
            .map_err(|e| WarehouseError::classify(what(), e))?;
    }
    insert
        .end()
        .await
        .map_err(|e| WarehouseError::classify(what(), e))
}

/// A configuration error found on this side (no server error to quote): not retryable, and the
/// sink stalls on it rather than dead-lettering rows.
pub(crate) fn misconfigured(what: String, reason: String) -> WarehouseError {
    WarehouseError::Misconfigured {
        what,
        source: clickhouse::error::Error::Custom(reason),
    }
}
