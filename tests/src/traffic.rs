//! Generated journeys posted to collectors the way a well-behaved client does it: each device's
//! events in their send order, a request answered with anything but 2xx retried (on the next
//! collector) until it is acknowledged, and every acknowledged event id recorded.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The events of `tests/journeys/generate.py` (people on one or several devices, shared devices,
/// late touches, conversions and sign-ins, lookback and session edges) in its send order.
pub struct Journeys {
    pub events: Vec<Value>,
    /// What the generator says it made (people, devices, users, events per type, kinds).
    pub summary: Value,
    /// The generator's "now" (epoch ms): every event is in the 60 days before it.
    pub now_ms: i64,
}

impl Journeys {
    /// Deterministic for a given `seed`, `people` and `now_ms`.
    pub fn generate(seed: u64, people: usize, now_ms: i64) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("journeys/generate.py");
        let run = |extra: &[&str]| {
            let out = Command::new("python3")
                .arg(&script)
                .args(["--seed", &seed.to_string()])
                .args(["--people", &people.to_string()])
                .args(["--now", &now_ms.to_string()])
                .args(extra)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "generate.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let ndjson = run(&["--ndjson"]);
        let events: Vec<Value> = ndjson
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let summary: Value = serde_json::from_slice(&run(&[])).unwrap();
        Self {
            events,
            summary,
            now_ms,
        }
    }

    pub fn ids(&self) -> HashSet<String> {
        self.events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// One answer that was not a 2xx (or no answer at all).
#[derive(Clone, Debug)]
pub struct Refusal {
    /// Since the posting started.
    pub at: Duration,
    pub collector: String,
    /// The HTTP status, or none when the request failed without an answer.
    pub status: Option<u16>,
    pub body: String,
}

/// What posting achieved.
#[derive(Debug, Default)]
pub struct Posted {
    /// Every event id of a request answered 2xx.
    pub acknowledged: HashSet<String>,
    pub requests: u64,
    /// Answers by status (0: no answer).
    pub statuses: BTreeMap<u16, u64>,
    pub refusals: Vec<Refusal>,
    pub took: Duration,
}

/// How to post.
#[derive(Clone, Debug)]
pub struct Posting {
    /// The route, e.g. `/v1/import`.
    pub route: &'static str,
    /// Concurrent lanes; a device's events all go through one lane, in order.
    pub lanes: usize,
    /// Events per request at most.
    pub batch: usize,
    /// Events per second over all lanes at most (none: as fast as the collectors answer).
    pub rate: Option<f64>,
    /// Once this is set, `rate` no longer holds (the rest goes as fast as it can).
    pub unthrottle: Option<Arc<AtomicBool>>,
    /// Give up (panic) when a request is still not acknowledged after this long.
    pub give_up_after: Duration,
}

/// Posts `events` to `collectors` (lane `k` starts on collector `k % n`, a retry goes to the
/// next one) and returns what was acknowledged. Panics on a 4xx: generated events are valid.
pub async fn post(collectors: &[String], events: &[Value], how: &Posting) -> Posted {
    let mut lanes: Vec<Vec<&Value>> = vec![Vec::new(); how.lanes];
    for e in events {
        let device = e["anonymous_id"].as_str().unwrap_or_default();
        lanes[lane_of(device, how.lanes)].push(e);
    }
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let out = Arc::new(Mutex::new(Posted::default()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let tasks: Vec<_> = lanes
        .into_iter()
        .enumerate()
        .map(|(k, lane)| {
            let batches: Vec<(String, Vec<String>)> = lane
                .chunks(how.batch)
                .map(|chunk| {
                    let ids = chunk
                        .iter()
                        .map(|e| e["event_id"].as_str().unwrap().to_string())
                        .collect();
                    (serde_json::to_string(chunk).unwrap(), ids)
                })
                .collect();
            let (client, collectors, how) = (client.clone(), collectors.to_vec(), how.clone());
            let (sent, out) = (sent.clone(), out.clone());
            tokio::spawn(async move {
                let mut at = k % collectors.len();
                for (body, ids) in batches {
                    let throttled = how
                        .unthrottle
                        .as_ref()
                        .is_none_or(|u| !u.load(Ordering::SeqCst));
                    if let Some(rate) = how.rate.filter(|_| throttled) {
                        let before = sent.fetch_add(ids.len() as u64, Ordering::SeqCst);
                        let due = started + Duration::from_secs_f64(before as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let first_try = Instant::now();
                    loop {
                        let url = format!("{}{}", collectors[at], how.route);
                        let answer = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let (status, text, retry_after) = match answer {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let retry_after = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<f64>().ok());
                                (
                                    Some(status),
                                    r.text().await.unwrap_or_default(),
                                    retry_after,
                                )
                            }
                            Err(e) => (None, e.to_string(), None),
                        };
                        let acknowledged = {
                            let mut o = out.lock().unwrap();
                            o.requests += 1;
                            *o.statuses.entry(status.unwrap_or(0)).or_default() += 1;
                            match status {
                                Some(s) if (200..300).contains(&s) => {
                                    let accepted: Value =
                                        serde_json::from_str(&text).unwrap_or(Value::Null);
                                    assert_eq!(
                                        accepted["accepted"].as_u64(),
                                        Some(ids.len() as u64),
                                        "{url} answered {s} {text}"
                                    );
                                    o.acknowledged.extend(ids.iter().cloned());
                                    true
                                }
                                Some(s) if (400..500).contains(&s) && s != 429 => {
                                    panic!("{url} refused generated events: {s} {text}")
                                }
                                _ => {
                                    o.refusals.push(Refusal {
                                        at: started.elapsed(),
                                        collector: collectors[at].clone(),
                                        status,
                                        body: text.chars().take(300).collect(),
                                    });
                                    false
                                }
                            }
                        };
                        if acknowledged {
                            break;
                        }
                        assert!(
                            first_try.elapsed() < how.give_up_after,
                            "a batch is still not acknowledged after {:?}",
                            how.give_up_after
                        );
                        // Like the tracker: wait (Retry-After, at most a second here), then
                        // try the next collector.
                        let wait = retry_after.unwrap_or(0.5).clamp(0.1, 1.0);
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                        at = (at + 1) % collectors.len();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut posted = std::mem::take(&mut *out.lock().unwrap());
    posted.took = started.elapsed();
    posted
}

/// FNV-1a: a device's lane, the same on every run.
fn lane_of(device: &str, lanes: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % lanes as u64) as usize
}
