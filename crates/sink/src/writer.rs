//! The sink's consume loop, the insert retries while ClickHouse cannot take a batch, and the
//! halving that finds the rows it refuses (dead-lettered as the attributed event's own Avro
//! bytes, so they can be replayed to the topic once the cause is fixed).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, TopicPartitionList};
use tokio::time::sleep;
use touchstream_avro::{DlqRecord, SourcePosition, Stage};
use touchstream_model::AttributedEvent;
use touchstream_model::forget::{self, ForgetMarker, Scope};
use touchstream_model::time::now_ms;
use touchstream_runtime::{Shutdown, ops};
use touchstream_warehouse::privacy;
use touchstream_warehouse::{WarehouseError, insert, rows_of};

use crate::batch::Batch;
use crate::{Application, metrics};

impl Application {
    /// Consumes until `shutdown` fires, then finishes the insert under way and the batch in
    /// hand, commits and returns. A consumer that failed for good (librdkafka fences a static
    /// member that lost its session, e.g. while its group coordinator moved) is replaced by a
    /// new one, which resumes from the committed offsets.
    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let ops = ops::serve(
            self.config.ops.listen,
            self.health.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(topic = %self.config.topics.attributed, ops = %ops.addr, "sink consuming");
        let (watched, stop) = (self.health.clone(), shutdown.clone());
        touchstream_kafka::watch_brokers(
            &self.config.kafka,
            "touchstream-sink-brokers",
            &self.config.topics.attributed,
            Duration::from_secs(2),
            move |missing| {
                watched.degraded("kafka", missing);
                !stop.is_cancelled()
            },
        )?;
        let retention = spawn_retention(&self.config, &shutdown);
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let Some(failure) = self.consume(&shutdown).await? else {
                break;
            };
            // Quickly again (a second sink with this one's group instance id fences it each
            // time, which only a configuration change ends): back off.
            backoff = if started.elapsed() > Duration::from_secs(60) {
                Duration::from_secs(1)
            } else {
                (backoff * 2).min(Duration::from_secs(30))
            };
            tracing::warn!(error = %failure, retry_in_ms = backoff.as_millis() as u64, "the Kafka consumer failed for good; replacing it (uncommitted rows will be re-delivered and deduplicated; if this repeats, is another sink running with this group_instance_id?)");
            self.health
                .not_ready("kafka", format!("replacing the consumer after: {failure}"));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sleep(backoff) => {}
            }
            self.consumer = Self::consumer(&self.config)?;
            self.health.ready("kafka");
        }
        if let Some(task) = retention {
            task.abort();
        }
        tracing::info!("sink stopped");
        Ok(())
    }

    /// The loop of [`Self::run`] over one consumer: `Ok(None)` after a shutdown, `Ok(Some(why))`
    /// when the consumer failed for good.
    ///
    /// One insert runs while the next batch fills: ClickHouse parses a batch while the sink
    /// decodes the next one. Offsets are committed batch by batch, in order, each once its
    /// insert was acknowledged; memory holds at most two batches.
    async fn consume(&self, shutdown: &Shutdown) -> anyhow::Result<Option<String>> {
        let shutdown = shutdown.clone();
        let policy = self.config.batch.clone();
        let max_wait = Duration::from_millis(policy.max_wait_ms);
        let mut batch = Batch::default();
        let mut in_flight: Option<InFlight<'_>> = None;
        // Every offset committed without waiting, to be committed once more, waiting, at the end.
        let mut sent = TopicPartitionList::new();
        loop {
            let due = batch.is_full(&policy)
                || batch
                    .deadline(max_wait)
                    .is_some_and(|d| d <= Instant::now());
            if in_flight.is_none() && !batch.is_empty() && due {
                in_flight = Some(Box::pin(self.write(std::mem::take(&mut batch), &shutdown)));
            }
            let wait = if in_flight.is_none() {
                batch.deadline(max_wait)
            } else {
                None
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                written = finish(&mut in_flight) => {
                    in_flight = None;
                    for e in self.commit(&written?, CommitMode::Async)?.elements() {
                        match sent.find_partition(e.topic(), e.partition()) {
                            Some(_) => sent.set_partition_offset(e.topic(), e.partition(), e.offset())?,
                            None => sent.add_partition_offset(e.topic(), e.partition(), e.offset())?,
                        }
                    }
                }
                // The top of the loop starts the insert.
                _ = sleep_until_opt(wait) => {}
                received = self.consumer.recv(), if !batch.is_full(&policy) => match received {
                    Ok(msg) => self.add(&mut batch, &msg).await,
                    // The insert under way is dropped: its offsets cannot be committed.
                    Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                        return Ok(Some(e.to_string()));
                    }
                    Err(e) => tracing::warn!(error = %e, "kafka consumer error"),
                },
            }
        }
        if let Some(insert) = in_flight.take() {
            self.commit(&insert.await?, CommitMode::Sync)?;
        }
        if !batch.is_empty() {
            let written = self.write(batch, &shutdown).await?;
            self.commit(&written, CommitMode::Sync)?;
        }
        // What this sink still owns, so that no answer is left outstanding at exit.
        let owned = self.consumer.assignment()?;
        let mut last = TopicPartitionList::new();
        for e in sent.elements() {
            if owned.find_partition(e.topic(), e.partition()).is_some() {
                last.add_partition_offset(e.topic(), e.partition(), e.offset())?;
            }
        }
        if last.count() > 0
            && let Err(e) = self.consumer.commit(&last, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "final offset commit failed; the rows will be re-delivered and deduplicated");
        }
        Ok(None)
    }

    async fn add(&self, batch: &mut Batch, msg: &rdkafka::message::BorrowedMessage<'_>) {
        metrics::consumed(1);
        let payload = msg.payload().unwrap_or_default();
        if is_forget(msg) {
            match ForgetMarker::from_json(payload) {
                Ok(marker) => batch.forgets.push(marker),
                Err(e) => {
                    self.dead_letter(
                        payload,
                        msg.key(),
                        &format!("undecodable forget marker: {e}"),
                        msg.partition(),
                        msg.offset(),
                    )
                    .await
                }
            }
            batch.skip(msg.partition(), msg.offset());
            return;
        }
        match touchstream_avro::decode::<AttributedEvent>(payload) {
            Ok(event) => {
                let (row, credits) = rows_of(&event, now_ms());
                let source = crate::batch::Source {
                    partition: msg.partition(),
                    offset: msg.offset(),
                    payload: payload.to_vec(),
                    key: msg.key().map(<[u8]>::to_vec),
                };
                batch.push(source, row, credits);
            }
            Err(e) => {
                // A poison record: kept with its reason and position, skipped, and counted
                // like a refused row (the dead-letter alert sums this counter).
                metrics::dlq(1);
                self.dead_letter(
                    payload,
                    msg.key(),
                    &format!("undecodable attributed event: {e}"),
                    msg.partition(),
                    msg.offset(),
                )
                .await;
                batch.skip(msg.partition(), msg.offset());
            }
        }
    }

    /// Inserts the batch (retrying while ClickHouse cannot take it) and hands it back for
    /// [`Self::commit`].
    async fn write(&self, mut batch: Batch, shutdown: &Shutdown) -> anyhow::Result<Batch> {
        let started = Instant::now();
        self.insert_with_retry(&mut batch, shutdown).await?;
        if !batch.forgets.is_empty() {
            self.forget_with_retry(&batch.forgets, shutdown).await?;
        }
        metrics::inserted(
            batch.events.len(),
            batch.credits.len(),
            batch.bytes(),
            started.elapsed(),
        );
        Ok(batch)
    }

    /// Commits the offsets of a written batch: everything before them is durable in ClickHouse.
    ///
    /// While consuming, the commit is sent without waiting for its answer (`Async`, answered in
    /// order; a failure is logged by the consumer's context): when the group coordinator is on
    /// a broker that just died, the answer takes until another broker took over (about 10 s),
    /// and waiting for it would stop the inserts too. At shutdown it is waited for (`Sync`).
    fn commit(&self, batch: &Batch, mode: CommitMode) -> anyhow::Result<TopicPartitionList> {
        let offsets = batch.commit_list(&self.config.topics.attributed)?;
        if let Err(e) = self.consumer.commit(&offsets, mode) {
            // After a rebalance the rows are re-delivered to the new owner and deduplicated.
            tracing::warn!(error = %e, "offset commit failed; the rows will be re-delivered and deduplicated");
        }
        Ok(offsets)
    }

    /// Inserts the batch. While ClickHouse is unavailable, refuses this sink's configuration or
    /// refuses every row (the tables do not match the rows), consumption is paused and the
    /// insert retried with backoff: none of these is the rows' fault, so none goes to the DLQ.
    async fn insert_with_retry(
        &self,
        batch: &mut Batch,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(self.config.retry.initial_ms);
        let max = Duration::from_millis(self.config.retry.max_ms);
        let mut paused = false;
        loop {
            let stalled = match insert(&self.clickhouse, &batch.events, &batch.credits).await {
                Ok(()) => break,
                Err(e) if stalls(&e) => e.to_string(),
                Err(e) => match self.isolate_rejected_rows(batch, e).await {
                    Isolated::Done => break,
                    Isolated::Stalled(reason) => reason,
                },
            };
            metrics::retry();
            self.health.not_ready("clickhouse", stalled.clone());
            self.report_replicas();
            if !paused {
                // Stop fetching while we wait: memory stays bounded by one batch.
                self.consumer.pause(&self.consumer.assignment()?)?;
                paused = true;
            }
            // Full jitter: spread the retries of many sinks.
            let jittered =
                Duration::from_millis(rand::rng().random_range(0..=backoff.as_millis() as u64));
            tracing::warn!(error = %stalled, retry_in_ms = jittered.as_millis() as u64, "clickhouse insert failed, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => anyhow::bail!("shutdown while ClickHouse does not take the batch: not committed, it will be re-delivered"),
                _ = sleep(jittered) => {}
            }
            backoff = (backoff * 2).min(max);
        }
        if paused {
            self.consumer.resume(&self.consumer.assignment()?)?;
        }
        self.health.ready("clickhouse");
        self.report_replicas();
        Ok(())
    }

    /// Names the cluster's replicas that do not answer in `/readyz` (the sink stays ready while
    /// every shard has one that does).
    fn report_replicas(&self) {
        let unreachable = self.clickhouse.unreachable_replicas();
        self.health.degraded(
            "clickhouse",
            (!unreachable.is_empty()).then(|| unreachable.join("; ")),
        );
    }

    /// ClickHouse refused the batch as malformed: find the rows it refuses by halving, send
    /// them to the DLQ with the error, and insert the rest. When the first and the last row are
    /// each refused on their own, the table is taken not to fit the rows at all (a migration
    /// missing or a column changed by hand) and nothing is dead-lettered.
    async fn isolate_rejected_rows(&self, batch: &Batch, first_error: WarehouseError) -> Isolated {
        let refused = match self.find_refused_rows(batch, &first_error).await {
            Ok(refused) => refused,
            Err(stalled) => return Isolated::Stalled(stalled),
        };
        metrics::dlq(refused.len() as u64);
        for (index, reason) in refused {
            // The attributed event as the sink read it (its Avro bytes), not the row: replayed
            // to the attributed topic, it goes through decoding and row building again.
            let source = &batch.sources[index];
            self.dead_letter(
                &source.payload,
                source.key.as_deref(),
                &format!("clickhouse rejected the row: {reason}"),
                source.partition,
                source.offset,
            )
            .await;
        }
        Isolated::Done
    }

    /// Inserts every row of the batch ClickHouse takes and returns those it refuses, with the
    /// reason; `Err` with a reason when the batch must wait instead.
    async fn find_refused_rows(
        &self,
        batch: &Batch,
        first_error: &WarehouseError,
    ) -> Result<Vec<(usize, String)>, String> {
        let n = batch.events.len();
        tracing::warn!(error = %first_error, rows = n, "clickhouse rejected the batch, isolating bad rows");
        let mut refused = Vec::new();
        // The first and the last row on their own; the halving then covers the rows between,
        // so no row is inserted twice.
        let mut pending = vec![(0, n)];
        if n > 1 {
            for i in [0, n - 1] {
                if let Some(reason) = self.try_rows(batch, i, i + 1).await? {
                    refused.push((i, reason));
                }
            }
            if refused.len() == 2 {
                tracing::error!(error = %first_error, "clickhouse refuses every row: do the tables match this sink's version?");
                return Err(format!(
                    "ClickHouse refuses the first and the last row of the batch alike; the tables do not fit the rows (run `sink migrate`?): {first_error}"
                ));
            }
            pending = if n > 2 { vec![(1, n - 1)] } else { Vec::new() };
        }
        while let Some((start, end)) = pending.pop() {
            match self.try_rows(batch, start, end).await? {
                None => {}
                Some(reason) if end - start == 1 => refused.push((start, reason)),
                Some(_) => {
                    let mid = start + (end - start) / 2;
                    pending.push((start, mid));
                    pending.push((mid, end));
                }
            }
        }
        // Each refusal once more on its own before it is dead-lettered: the table may have
        // changed while the batch was being halved (a guard dropped between two probes).
        let mut confirmed = Vec::with_capacity(refused.len());
        for (index, _) in refused {
            if let Some(reason) = self.try_rows(batch, index, index + 1).await? {
                confirmed.push((index, reason));
            }
        }
        Ok(confirmed)
    }

    /// Inserts rows `start..end` of the batch: `Ok(None)` when they landed, `Ok(Some(reason))`
    /// when ClickHouse refused them, `Err(reason)` when the batch must wait (see [`stalls`]).
    async fn try_rows(
        &self,
        batch: &Batch,
        start: usize,
        end: usize,
    ) -> Result<Option<String>, String> {
        let (events, credits) = batch.slice(start, end);
        match insert(&self.clickhouse, &events, &credits).await {
            Ok(()) => Ok(None),
            Err(e) if stalls(&e) => Err(e.to_string()),
            Err(e) => Ok(Some(e.to_string())),
        }
    }

    /// Deletes the rows the markers name, now that every row before them is in ClickHouse,
    /// retrying while ClickHouse cannot (the batch is not committed before, so a crash replays
    /// the markers and the deletion runs again; it is idempotent).
    async fn forget_with_retry(
        &self,
        markers: &[ForgetMarker],
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let mut scope = Scope::default();
        let mut requests: Vec<&str> = Vec::new();
        for m in markers {
            scope.add_marker(m);
            if !requests.contains(&m.request.request_id.as_str()) {
                requests.push(&m.request.request_id);
            }
        }
        let admin = self.config.clickhouse_admin();
        let mut backoff = Duration::from_millis(self.config.retry.initial_ms);
        let max = Duration::from_millis(self.config.retry.max_ms);
        loop {
            match privacy::delete(&admin, &scope).await {
                Ok(counts) => {
                    self.health.ready("clickhouse");
                    for (table, n) in &counts {
                        metrics::forgotten_rows(table, *n);
                    }
                    let rows = counts
                        .iter()
                        .map(|(t, n)| format!("{t}={n}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    tracing::info!(requests = %requests.join(","), markers = markers.len(), %rows, "forget: rows deleted (mutations started)");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "forget: deleting rows failed, retrying");
                    self.health.not_ready("clickhouse", e.to_string());
                    tokio::select! {
                        _ = shutdown.cancelled() => anyhow::bail!("shutdown before the forgotten rows were deleted: not committed, the markers will be re-delivered"),
                        _ = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        reason: &str,
        partition: i32,
        offset: i64,
    ) {
        let record = DlqRecord::from_source(
            Stage::Sink,
            payload,
            reason,
            SourcePosition {
                topic: &self.config.topics.attributed,
                partition,
                offset,
                key,
            },
            now_ms(),
        );
        if let Err(e) = self.dlq.send(None, &record).await {
            tracing::error!(error = %e, reason, partition, offset, "could not write to the DLQ");
        }
    }
}

/// Applies `[sink.retention]` at start-up and then every `every_hours`, logging what it dropped;
/// `None` when no table has a retention. A failed run is logged and tried again at the next.
fn spawn_retention(
    config: &crate::SinkConfig,
    shutdown: &Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    let retention = config.retention.clone();
    if retention.retention_months.is_empty() || retention.every_hours == 0 {
        return None;
    }
    let admin = config.clickhouse_admin();
    let shutdown = shutdown.clone();
    let every = Duration::from_secs(retention.every_hours.saturating_mul(3600));
    Some(tokio::spawn(async move {
        loop {
            let month = privacy::month_of(now_ms());
            match privacy::apply_retention(&admin, &retention, month).await {
                Ok(dropped) => {
                    for d in dropped {
                        metrics::retention(&d.table, d.partitions.len(), d.rows);
                        tracing::info!(table = %d.table, first_kept_month = d.first_kept, partitions = ?d.partitions, rows = d.rows, "retention applied");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "retention failed; trying again at the next run")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sleep(every) => {}
            }
        }
    }))
}

/// Whether a record of the attributed topic is an erasure marker rather than an event.
fn is_forget(msg: &rdkafka::message::BorrowedMessage<'_>) -> bool {
    use rdkafka::message::Headers;
    msg.headers().is_some_and(|headers| {
        headers.iter().any(|h| {
            h.key == forget::KIND_HEADER && h.value == Some(forget::KIND_FORGET.as_bytes())
        })
    })
}

/// What an insert error means for the batch: wait and try again (ClickHouse away, or this
/// sink pointed at the wrong place or lacking rights), or look for the rows at fault.
fn stalls(e: &WarehouseError) -> bool {
    e.is_retryable() || matches!(e, WarehouseError::Misconfigured { .. })
}

enum Isolated {
    /// Every row is in ClickHouse or in the DLQ.
    Done,
    /// The batch cannot be placed now; the reason.
    Stalled(String),
}

/// The insert under way, if any.
type InFlight<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Batch>> + Send + 'a>>;

/// Resolves when the insert under way does; never, when there is none.
async fn finish(in_flight: &mut Option<InFlight<'_>>) -> anyhow::Result<Batch> {
    match in_flight {
        Some(insert) => insert.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
