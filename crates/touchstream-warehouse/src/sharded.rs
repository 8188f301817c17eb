//! Writing into a cluster: each row into the local tables of the shard it belongs to, on a
//! replica of that shard that answers.
//!
//! The shards, their weights and their replicas come from `system.clusters` on the first
//! server that answers (`url`, then the `replica_urls`), read at the first insert and again
//! after a shard could not be reached at all. A row's shard is what the Distributed table's
//! sharding expression gives it ([`crate::cluster::SHARDING_KEY`], computed here by
//! [`crate::cluster::sharding_hash`]), picked the way ClickHouse does: the shards' weights lay
//! out slots in shard order, and the row takes slot `hash % total weight`.
//!
//! Why not insert through the Distributed table: by default it queues the rows on the server
//! and forwards them in the background, so an acknowledged insert is not yet on its shard (a
//! server lost before forwarding loses them; a forward retried after a timeout doubles them).
//! Writing to the local tables makes the acknowledgement mean what the sink needs: every
//! shard's part is in a replicated table. A part is retried on the shard's other replicas when
//! one does not answer; the batch as a whole succeeds only when every part did, and a retried
//! batch sends every part again, which the tables collapse (same key, same version) and which
//! replicated tables even drop on arrival (same block, `insert_deduplicate`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::Either;

use serde::Deserialize;

use crate::cluster::sharding_hash;
use crate::{
    CreditRow, Destination, EventRow, WarehouseConfig, WarehouseError, client, insert_rows,
    misconfigured,
};

/// Where the sink writes: one server, or the shards of a cluster (`clickhouse.cluster`).
pub enum Warehouse {
    Single(clickhouse::Client),
    Sharded(ShardedWriter),
}

impl Warehouse {
    /// No request is made here: a cluster's layout is read at the first insert, so a server
    /// that is down at start-up is retried like any outage.
    pub fn new(cfg: &WarehouseConfig) -> Self {
        match &cfg.cluster {
            None => Self::Single(client(cfg)),
            Some(cluster) => Self::Sharded(ShardedWriter::new(cfg, cluster)),
        }
    }
}

impl Destination for Warehouse {
    async fn write_rows(
        &self,
        events: &[EventRow],
        credits: &[CreditRow],
    ) -> Result<(), WarehouseError> {
        match self {
            Self::Single(client) => client.write_rows(events, credits).await,
            Self::Sharded(writer) => writer.write_rows(events, credits).await,
        }
    }
}

impl Warehouse {
    /// The replicas that did not answer when last tried (a write or a check), each with why and
    /// where its shard's parts go meanwhile; empty on one server.
    pub fn unreachable_replicas(&self) -> Vec<String> {
        match self {
            Self::Single(_) => Vec::new(),
            Self::Sharded(writer) => writer.unreachable_replicas(),
        }
    }
}

/// How often each replica is checked while the sink writes (a replica the writes do not use
/// would otherwise go unnoticed, and one that came back would still be named).
const CHECK_EVERY: Duration = Duration::from_secs(3);

/// Writes rows into the local tables (`events_local`, `conversion_credits_local`) of the
/// shard each belongs to (see the module documentation).
pub struct ShardedWriter {
    cfg: WarehouseConfig,
    cluster: String,
    layout: Mutex<Option<Arc<Layout>>>,
}

/// The cluster as `system.clusters` describes it.
struct Layout {
    shards: Vec<Shard>,
    /// Slot → index in `shards`, as ClickHouse lays them out from the weights.
    slots: Vec<usize>,
}

struct Shard {
    /// `shard_num` (from 1).
    number: u32,
    replicas: Vec<Replica>,
    /// The replica that took this shard's last part, tried first next time.
    preferred: AtomicUsize,
}

struct Replica {
    url: String,
    client: clickhouse::Client,
    health: Mutex<ReplicaHealth>,
}

#[derive(Default)]
struct ReplicaHealth {
    /// Why the last request to it failed, while it does not answer.
    unreachable: Option<String>,
    /// When a check of it last started.
    checked: Option<Instant>,
}

impl Replica {
    fn mark(&self, unreachable: Option<String>) {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unreachable = unreachable;
    }

    /// Whether a check is due, and if so, takes it (so that two writes do not both check).
    fn check_due(&self, now: Instant) -> bool {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let due = health
            .checked
            .is_none_or(|at| now.duration_since(at) >= CHECK_EVERY);
        if due {
            health.checked = Some(now);
        }
        due
    }

    async fn check(&self) {
        let answered = self.client.query("SELECT 1").fetch_one::<u8>().await;
        self.mark(
            answered.err().map(|e| {
                WarehouseError::classify(format!("a check of {}", self.url), e).to_string()
            }),
        );
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct ClusterRow {
    shard_num: u32,
    shard_weight: u32,
    host_name: String,
    port: u32,
}

impl ShardedWriter {
    pub fn new(cfg: &WarehouseConfig, cluster: &str) -> Self {
        Self {
            cfg: cfg.clone(),
            cluster: cluster.to_string(),
            layout: Mutex::new(None),
        }
    }

    /// The HTTP URLs of each shard's replicas, shards in `shard_num` order.
    pub async fn shards(&self) -> Result<Vec<Vec<String>>, WarehouseError> {
        let layout = self.layout().await?;
        Ok(layout
            .shards
            .iter()
            .map(|s| s.replicas.iter().map(|r| r.url.clone()).collect())
            .collect())
    }

    /// The index (in [`Self::shards`]) of the shard a row of this site and device goes to.
    pub async fn shard_of(
        &self,
        site_id: &str,
        anonymous_id: &str,
    ) -> Result<usize, WarehouseError> {
        Ok(self.layout().await?.shard_of(site_id, anonymous_id))
    }

    /// The replicas that did not answer when last tried (see [`Warehouse::unreachable_replicas`]).
    pub fn unreachable_replicas(&self) -> Vec<String> {
        let layout = self
            .layout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(layout) = layout else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for shard in &layout.shards {
            let preferred = &shard.replicas[shard.preferred.load(Ordering::Relaxed)].url;
            for replica in &shard.replicas {
                let health = replica
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(why) = &health.unreachable {
                    let why: String = why.chars().take(200).collect();
                    out.push(format!(
                        "replica {} of shard {} does not answer ({why}); shard {} is written on {preferred}",
                        replica.url, shard.number, shard.number
                    ));
                }
            }
        }
        out
    }

    /// Checks the replicas whose check is due, all at once.
    async fn check_replicas(&self, layout: &Layout) {
        let now = Instant::now();
        let due: Vec<&Replica> = layout
            .shards
            .iter()
            .flat_map(|s| &s.replicas)
            .filter(|r| r.check_due(now))
            .collect();
        futures::future::join_all(due.into_iter().map(Replica::check)).await;
    }

    /// For each shard, the URL of the replica its next part goes to first (the one that took the
    /// last part); empty before the layout was read.
    pub fn replicas_in_use(&self) -> Vec<String> {
        let layout = self
            .layout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        layout.map_or_else(Vec::new, |layout| {
            layout
                .shards
                .iter()
                .map(|s| s.replicas[s.preferred.load(Ordering::Relaxed)].url.clone())
                .collect()
        })
    }

    async fn layout(&self) -> Result<Arc<Layout>, WarehouseError> {
        if let Some(layout) = self
            .layout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(layout);
        }
        let layout = Arc::new(self.read_layout().await?);
        *self.layout.lock().unwrap_or_else(PoisonError::into_inner) = Some(layout.clone());
        Ok(layout)
    }

    /// Reads `system.clusters` from the first server that answers.
    async fn read_layout(&self) -> Result<Layout, WarehouseError> {
        let what = || format!("reading the layout of cluster {}", self.cluster);
        let mut last_error = None;
        let mut urls = vec![self.cfg.url.clone()];
        urls.extend(self.cfg.replica_urls.values().cloned());
        urls.dedup();
        for url in urls {
            let cfg = WarehouseConfig {
                url: url.clone(),
                ..self.cfg.clone()
            };
            let rows = client(&cfg)
                .query(
                    "SELECT toUInt32(shard_num) AS shard_num, toUInt32(shard_weight) AS shard_weight, \
                     host_name, toUInt32(port) AS port FROM system.clusters WHERE cluster = ? \
                     ORDER BY shard_num, replica_num",
                )
                .bind(&self.cluster)
                .fetch_all::<ClusterRow>()
                .await;
            match rows {
                Ok(rows) if rows.is_empty() => {
                    return Err(misconfigured(
                        what(),
                        format!(
                            "{url} does not define cluster {:?} (system.clusters has no row for it)",
                            self.cluster
                        ),
                    ));
                }
                Ok(rows) => return self.layout_of(rows),
                Err(e) => {
                    let error = WarehouseError::classify(format!("{} at {url}", what()), e);
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| misconfigured(what(), "no server to ask".into())))
    }

    fn layout_of(&self, rows: Vec<ClusterRow>) -> Result<Layout, WarehouseError> {
        let mut shards: Vec<(Shard, u32)> = Vec::new();
        for row in rows {
            let address = format!("{}:{}", row.host_name, row.port);
            let url = match self.cfg.replica_urls.get(&address) {
                Some(url) => url.clone(),
                None => same_port_url(&self.cfg.url, &row.host_name).ok_or_else(|| {
                    misconfigured(
                        format!("reaching cluster {}", self.cluster),
                        format!(
                            "cannot tell the HTTP URL of {address}: add it to clickhouse.replica_urls"
                        ),
                    )
                })?,
            };
            let replica = Replica {
                client: client(&WarehouseConfig {
                    url: url.clone(),
                    ..self.cfg.clone()
                }),
                url,
                health: Mutex::default(),
            };
            match shards.last_mut() {
                Some((shard, _)) if shard.number == row.shard_num => shard.replicas.push(replica),
                _ => shards.push((
                    Shard {
                        number: row.shard_num,
                        replicas: vec![replica],
                        preferred: AtomicUsize::new(0),
                    },
                    row.shard_weight,
                )),
            }
        }
        let weights: Vec<u32> = shards.iter().map(|(_, w)| *w).collect();
        let slots = slots(&weights);
        if slots.is_empty() {
            return Err(misconfigured(
                format!("reaching cluster {}", self.cluster),
                "every shard has weight 0".into(),
            ));
        }
        Ok(Layout {
            shards: shards.into_iter().map(|(s, _)| s).collect(),
            slots,
        })
    }

    async fn write_rows(
        &self,
        events: &[EventRow],
        credits: &[CreditRow],
    ) -> Result<(), WarehouseError> {
        let layout = self.layout().await?;
        let mut parts: Vec<(Vec<&EventRow>, Vec<&CreditRow>)> = (0..layout.shards.len())
            .map(|_| Default::default())
            .collect();
        for row in events {
            parts[layout.shard_of(&row.site_id, &row.anonymous_id)]
                .0
                .push(row);
        }
        for row in credits {
            parts[layout.shard_of(&row.site_id, &row.anonymous_id)]
                .1
                .push(row);
        }
        let writes = parts
            .iter()
            .enumerate()
            .filter(|(_, (e, c))| !e.is_empty() || !c.is_empty())
            .map(|(i, (e, c))| write_part(&layout.shards[i], e, c));
        // The checks that are due run beside the writes; a check still waiting when the writes
        // are done (a replica that hangs) is dropped, its replica keeping what it was known as.
        let writes = std::pin::pin!(futures::future::join_all(writes));
        let checks = std::pin::pin!(self.check_replicas(&layout));
        let results = match futures::future::select(writes, checks).await {
            Either::Left((results, _)) => results,
            Either::Right(((), writes)) => writes.await,
        };
        let mut first_error: Option<WarehouseError> = None;
        for error in results.into_iter().filter_map(Result::err) {
            if error.is_retryable() {
                // A shard none of whose replicas answered: the layout may have changed.
                *self.layout.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            // An outage outranks refused rows: the batch waits rather than being halved.
            if first_error
                .as_ref()
                .is_none_or(|e| !e.is_retryable() && error.is_retryable())
            {
                first_error = Some(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Layout {
    fn shard_of(&self, site_id: &str, anonymous_id: &str) -> usize {
        let hash = sharding_hash(site_id, anonymous_id);
        self.slots[(hash % self.slots.len() as u64) as usize]
    }
}

/// Inserts one shard's part on the first replica that takes it, starting with the preferred one.
async fn write_part(
    shard: &Shard,
    events: &[&EventRow],
    credits: &[&CreditRow],
) -> Result<(), WarehouseError> {
    let n = shard.replicas.len();
    let start = shard.preferred.load(Ordering::Relaxed);
    let mut last_error = None;
    for k in 0..n {
        let index = (start + k) % n;
        let replica = &shard.replicas[index];
        let at = format!(" at {} (shard {})", replica.url, shard.number);
        let written = async {
            insert_rows(
                &replica.client,
                "conversion_credits_local",
                credits.iter().copied(),
                &at,
            )
            .await?;
            insert_rows(&replica.client, "events_local", events.iter().copied(), &at).await
        }
        .await;
        match written {
            Ok(()) => {
                replica.mark(None);
                shard.preferred.store(index, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, shard = shard.number, "replica unavailable, trying the shard's next replica");
                replica.mark(Some(e.to_string()));
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        misconfigured(
            format!("writing to shard {}", shard.number),
            "the shard has no replica".into(),
        )
    }))
}

/// ClickHouse's slot layout for a Distributed table: shard `i` takes `weights[i]` consecutive
/// slots, in shard order.
fn slots(weights: &[u32]) -> Vec<usize> {
    weights
        .iter()
        .enumerate()
        .flat_map(|(i, &w)| std::iter::repeat_n(i, w as usize))
        .collect()
}

/// `url` with its host replaced by `host` (same scheme and port), e.g. `http://a:8123` →
/// `http://b:8123`; `None` when `url` is not `scheme://host[:port][/…]`.
fn same_port_url(url: &str, host: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let port = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => Some(p),
        _ => None,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_weights_in_shard_order() {
        assert_eq!(slots(&[1, 1]), [0, 1]);
        assert_eq!(slots(&[2, 0, 1]), [0, 0, 2]);
        assert!(slots(&[0]).is_empty());
    }

    #[test]
    fn an_unlisted_replica_is_reached_on_the_port_of_url() {
        assert_eq!(
            same_port_url("http://127.0.0.1:18123", "ch-2").as_deref(),
            Some("http://ch-2:18123")
        );
        assert_eq!(
            same_port_url("https://ch.example/", "ch-3").as_deref(),
            Some("https://ch-3")
        );
        assert_eq!(
            same_port_url("http://[::1]:8123", "::2").as_deref(),
            Some("http://[::2]:8123")
        );
        assert_eq!(same_port_url("nonsense", "x"), None);
    }
}
