//! ClickHouse: the tables data engineers query, how attributed events become rows, and the
//! report queries `touchstream report` runs.
//!
//! - [`migrate`]: applies `schemas/clickhouse/NNNN_*.sql` (compiled in) and records them in
//!   `schema_migrations`; idempotent and safe to run from several processes at once.
//! - [`rows`]: [`EventRow`] and [`CreditRow`], one per event and one per conversion × model ×
//!   credited touch, built from an [`AttributedEvent`](touchstream_model::AttributedEvent) by
//!   [`rows_of`].
//! - [`insert`]: RowBinary inserts that return only once ClickHouse acknowledged them.
//! - [`reports`]: the named report queries in `schemas/clickhouse/reports/`, run with bound
//!   parameters.
//! - [`error`]: [`WarehouseError`], which tells a retryable outage from rejected data.
//!
//! Everything must run on the local ClickHouse 18.16 and on current ClickHouse; see
//! `schemas/clickhouse/README.md` for the table design and what that compatibility costs.

pub mod error;
pub mod migrate;
pub mod reports;
pub mod rows;
mod sql;

pub use error::WarehouseError;
pub use migrate::migrate;
pub use rows::{CreditRow, EventRow, rows_of};

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
}

impl Default for WarehouseConfig {
    /// The local development server started by `deploy/services.sh`.
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "touchstream".into(),
            user: "default".into(),
            password: String::new(),
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

/// Writes rows: conversion credits first, then events, each as one RowBinary INSERT. Returns
/// `Ok` only once ClickHouse acknowledged both, so the caller may commit its offsets.
///
/// A retried batch inserts the same rows again; the tables collapse them (ReplacingMergeTree on
/// the event id) and the report queries read them de-duplicated before any merge.
pub async fn insert(
    client: &clickhouse::Client,
    events: &[EventRow],
    credits: &[CreditRow],
) -> Result<(), WarehouseError> {
    insert_rows(client, "conversion_credits", credits).await?;
    insert_rows(client, "events", events).await
}

async fn insert_rows<T>(
    client: &clickhouse::Client,
    table: &'static str,
    rows: &[T],
) -> Result<(), WarehouseError>
where
    T: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    let what = || format!("an insert of {} rows into {table}", rows.len());
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
