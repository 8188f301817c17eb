//! Watching a running pipeline from outside, as an operator would: the consumer groups'
//! committed offsets against the topics' ends (progress, lag, stalls), and every service's
//! `/readyz` answers over time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use touchstream_kafka::KafkaConfig;

/// A topic partition.
pub type Tp = (String, i32);

/// One look at the groups: where each has committed, and where each topic ends.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Since the watch's origin.
    pub at: Duration,
    /// (group, topic, partition) → committed offset.
    pub committed: BTreeMap<(String, String, i32), i64>,
    /// (topic, partition) → end offset (high watermark).
    pub high: BTreeMap<Tp, i64>,
    /// (group, topic, partition) → the member id that owns it (a static member's id starts
    /// with its group instance id); absent when the group could not be described.
    pub owners: BTreeMap<(String, String, i32), String>,
}

/// Samples the committed offsets of some consumer groups and the ends of their topics, every
/// `every`, on a thread of its own, until dropped.
pub struct ProgressWatch {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressWatch {
    /// `groups`: (group, topics it consumes); every topic has `partitions` partitions.
    pub fn start(
        brokers: &str,
        groups: &[(String, Vec<String>)],
        partitions: i32,
        every: Duration,
        origin: Instant,
    ) -> Self {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = KafkaConfig {
            brokers: brokers.into(),
            ..KafkaConfig::default()
        };
        // read_uncommitted: an offset fetch then answers with the last committed offsets at
        // once, instead of waiting for a transaction that holds pending ones.
        let consumer_of = |group: &str| -> BaseConsumer {
            let mut c = cfg.consumer("touchstream-tests-watch", group);
            c.set("isolation.level", "read_uncommitted");
            c.create().unwrap()
        };
        let watched: Vec<(String, BaseConsumer, TopicPartitionList)> = groups
            .iter()
            .map(|(group, topics)| {
                let mut tpl = TopicPartitionList::new();
                for t in topics {
                    for p in 0..partitions {
                        tpl.add_partition(t, p);
                    }
                }
                (group.clone(), consumer_of(group), tpl)
            })
            .collect();
        let mut topics: Vec<String> = groups.iter().flat_map(|(_, t)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        let ends = consumer_of("touchstream-tests-watch-ends");
        let (out, halt) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut high: BTreeMap<Tp, i64> = BTreeMap::new();
            while !halt.load(Ordering::SeqCst) {
                let started = Instant::now();
                let at = origin.elapsed();
                let mut committed = BTreeMap::new();
                let mut owners = BTreeMap::new();
                for (group, consumer, tpl) in &watched {
                    if let Ok(list) =
                        consumer.fetch_group_list(Some(group.as_str()), Duration::from_secs(1))
                    {
                        for g in list.groups() {
                            for m in g.members() {
                                for (t, p) in m.assignment().map(assignment).unwrap_or_default() {
                                    owners.insert((group.clone(), t, p), m.id().to_string());
                                }
                            }
                        }
                    }
                    let Ok(list) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(2))
                    else {
                        continue;
                    };
                    for e in list.elements() {
                        if let Offset::Offset(n) = e.offset() {
                            committed
                                .insert((group.clone(), e.topic().to_string(), e.partition()), n);
                        }
                    }
                }
                for t in &topics {
                    for p in 0..partitions {
                        // A partition whose leader is gone keeps its last known end.
                        if let Ok((_, h)) = ends.fetch_watermarks(t, p, Duration::from_millis(1500))
                        {
                            high.insert((t.clone(), p), h);
                        }
                    }
                }
                out.lock().unwrap().push(Sample {
                    at,
                    committed,
                    high: high.clone(),
                    owners,
                });
                if let Some(rest) = every.checked_sub(started.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
        });
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }
}

impl Drop for ProgressWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The partitions of a member's assignment (Kafka's consumer protocol: version, then topics
/// with their partitions, then user data).
fn assignment(bytes: &[u8]) -> Vec<Tp> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (b.get(..n)?, b.get(n..)?);
        *b = tail;
        Some(head)
    }
    fn parse(mut b: &[u8]) -> Option<Vec<Tp>> {
        let b = &mut b;
        let int = |b: &mut &[u8], n: usize| -> Option<i64> {
            Some(take(b, n)?.iter().fold(0i64, |v, x| v << 8 | i64::from(*x)))
        };
        int(b, 2)?;
        let mut out = Vec::new();
        for _ in 0..int(b, 4)? {
            let len = int(b, 2)? as usize;
            let topic = String::from_utf8_lossy(take(b, len)?).into_owned();
            for _ in 0..int(b, 4)? {
                out.push((topic.clone(), int(b, 4)? as i32));
            }
        }
        Some(out)
    }
    parse(bytes).unwrap_or_default()
}

/// The partitions of `group` owned at `at` (the last sample before it) by the member whose id
/// starts with `member_prefix`.
pub fn owned(samples: &[Sample], group: &str, member_prefix: &str, at: Duration) -> Vec<Tp> {
    samples
        .iter()
        .rev()
        .filter(|s| s.at <= at)
        .find(|s| s.owners.keys().any(|(g, _, _)| g == group))
        .map(|s| {
            s.owners
                .iter()
                .filter(|((g, _, _), m)| g == group && m.starts_with(member_prefix))
                .map(|((_, t, p), _)| (t.clone(), *p))
                .collect()
        })
        .unwrap_or_default()
}

/// More records than this between a partition's committed offset and its end mean it has work.
const WAITING: i64 = 3;

/// What a group did after a moment `at`.
#[derive(Clone, Debug)]
pub struct AfterFault {
    /// Per partition that had records waiting at `at`: how long until the group's committed
    /// offset first moved (none: not within the samples).
    pub first_advance: BTreeMap<Tp, Option<Duration>>,
    /// Records behind (end − committed, summed over the group's partitions) at `at`.
    pub lag_before: i64,
    /// The most records behind within `window` after `at`, and when.
    pub lag_max: (i64, Duration),
    /// How long after `at` the lag was first back at or below `max(lag_before, floor)`.
    pub lag_recovered: Option<Duration>,
}

impl AfterFault {
    /// The longest wait of a partition for its next commit; none when one never moved.
    pub fn stall(&self) -> Option<Duration> {
        self.first_advance
            .values()
            .try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
    }

    /// Partitions that waited longer than `over` (or never moved), with how long.
    pub fn stalled(&self, over: Duration) -> Vec<(Tp, Option<Duration>)> {
        self.first_advance
            .iter()
            .filter(|(_, d)| d.is_none_or(|d| d > over))
            .map(|(tp, d)| (tp.clone(), *d))
            .collect()
    }
}

/// `group`'s progress after `at` (a duration since the watch's origin), over `window`.
pub fn after(samples: &[Sample], group: &str, at: Duration, window: Duration) -> AfterFault {
    let of_group = |s: &Sample| -> BTreeMap<Tp, i64> {
        s.committed
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), n)| ((t.clone(), *p), *n))
            .collect()
    };
    let lag = |s: &Sample| -> i64 {
        of_group(s)
            .iter()
            .map(|(tp, n)| (s.high.get(tp).copied().unwrap_or(*n) - n).max(0))
            .sum()
    };
    let before = samples
        .iter()
        .rev()
        .find(|s| s.at <= at && !of_group(s).is_empty());
    let later: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at > at && s.at <= at + window)
        .collect();
    let mut first_advance = BTreeMap::new();
    let (mut lag_before, mut lag_max, mut lag_recovered) = (0, (0, Duration::ZERO), None);
    if let Some(before) = before {
        let start = of_group(before);
        lag_before = lag(before);
        for (tp, n) in &start {
            // Only partitions with records waiting: an idle one has nothing to commit (and a
            // transactional topic ends with a commit marker or two that no one consumes).
            if before.high.get(tp).is_some_and(|h| h - n > WAITING) {
                let moved = later
                    .iter()
                    .find(|s| of_group(s).get(tp).is_some_and(|m| m > n))
                    .map(|s| s.at - at);
                first_advance.insert(tp.clone(), moved);
            }
        }
        let floor = lag_before.max(500);
        for s in &later {
            let l = lag(s);
            if l > lag_max.0 {
                lag_max = (l, s.at - at);
            }
        }
        lag_recovered = later
            .iter()
            .filter(|s| s.at - at >= lag_max.1)
            .find(|s| lag(s) <= floor)
            .map(|s| s.at - at);
    }
    AfterFault {
        first_advance,
        lag_before,
        lag_max,
        lag_recovered,
    }
}

/// One `/readyz` answer that differed from the service's previous one.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub at: Duration,
    pub service: String,
    /// 0: no answer (the process is down or not listening yet).
    pub status: u16,
    pub body: String,
}

/// Polls every service's `/readyz` every `every` and keeps the changes.
pub struct ReadinessWatch {
    changes: Arc<Mutex<Vec<Readiness>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessWatch {
    /// `services`: (label, base URL).
    pub fn start(services: Vec<(String, String)>, every: Duration, origin: Instant) -> Self {
        let changes: Arc<Mutex<Vec<Readiness>>> = Arc::default();
        let out = changes.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let mut last: BTreeMap<String, (u16, String)> = BTreeMap::new();
            loop {
                let polls = services.iter().map(|(label, url)| {
                    let client = client.clone();
                    async move {
                        let answer = client.get(format!("{url}/readyz")).send().await;
                        let (status, body) = match answer {
                            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                            Err(_) => (0, String::new()),
                        };
                        (label.clone(), status, body.trim().replace('\n', " | "))
                    }
                });
                let at = origin.elapsed();
                for (label, status, body) in futures::future::join_all(polls).await {
                    if last.get(&label) != Some(&(status, body.clone())) {
                        last.insert(label.clone(), (status, body.clone()));
                        out.lock().unwrap().push(Readiness {
                            at,
                            service: label,
                            status,
                            body,
                        });
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        Self { changes, task }
    }

    pub fn changes(&self) -> Vec<Readiness> {
        self.changes.lock().unwrap().clone()
    }
}

impl Drop for ReadinessWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts rows in ClickHouse every `every` (asking the servers in turn until one answers), to
/// tell whether rows kept arriving while the offsets stood still.
pub struct RowsWatch {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RowsWatch {
    pub fn start(
        urls: Vec<String>,
        database: &str,
        sql: &str,
        every: Duration,
        origin: Instant,
    ) -> Self {
        let samples: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::default();
        let out = samples.clone();
        let (database, sql) = (database.to_string(), sql.to_string());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            loop {
                let at = origin.elapsed();
                for url in &urls {
                    let answer = client
                        .post(url)
                        .query(&[("database", database.as_str())])
                        .body(sql.clone())
                        .send()
                        .await;
                    if let Ok(r) = answer
                        && r.status().is_success()
                        && let Ok(n) = r.text().await.unwrap_or_default().trim().parse()
                    {
                        out.lock().unwrap().push((at, n));
                        break;
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        Self { samples, task }
    }

    pub fn samples(&self) -> Vec<(Duration, u64)> {
        self.samples.lock().unwrap().clone()
    }
}

impl Drop for RowsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The longest time within `window` after `at` in which the count did not grow (counting from
/// `at`), and whether it grew at all.
pub fn longest_pause(samples: &[(Duration, u64)], at: Duration, window: Duration) -> Duration {
    let mut last_growth = at;
    let mut last = samples
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .map_or(0, |(_, n)| *n);
    let mut longest = Duration::ZERO;
    for (t, n) in samples.iter().filter(|(t, _)| *t > at && *t <= at + window) {
        if *n > last {
            longest = longest.max(*t - last_growth);
            last_growth = *t;
            last = *n;
        }
    }
    longest.max(
        samples
            .iter()
            .rfind(|(t, _)| *t <= at + window)
            .map_or(Duration::ZERO, |(t, _)| t.saturating_sub(last_growth)),
    )
}
