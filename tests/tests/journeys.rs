//! The independent check: a few thousand events of generated journeys (multi-device people,
//! late touches, late conversions, late sign-ins, shared devices, lookback edges, repeat
//! purchases, guest checkouts) go through `POST /v1/import` and the three real binaries, and
//! ClickHouse is compared credit by credit with the reference in `tests/journeys/`, written
//! separately from the engine from `schemas/attribution-rules.md` alone.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use touchstream_tests::{Pipeline, ScratchDatabase, TestTopics, binary_path, unique};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tests/journeys/check.py` against the pipeline and fails with its report on any
/// mismatch.
fn check(pipeline: &Pipeline, db: &ScratchDatabase, seed: u32) {
    let out = std::env::temp_dir().join(unique("journeys-"));
    let result = Command::new("python3")
        .arg(repo().join("tests/journeys/check.py"))
        .args(["--collector", &pipeline.producer_url])
        .args(["--clickhouse", "http://127.0.0.1:8123"])
        .args(["--database", &db.name])
        .args(["--seed", &seed.to_string()])
        .args(["--report-bin", binary_path("touchstream").to_str().unwrap()])
        .args(["--timeout", "240"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    println!("{stdout}");
    assert!(
        result.status.success(),
        "the pipeline disagrees with the reference (details in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    assert!(stdout.contains("OK: no mismatch"), "{stdout}");
    let _ = std::fs::remove_dir_all(out);
}

/// State bytes per device and per user, from the enrichers' gauges (summed over instances).
async fn state_sizes(pipeline: &Pipeline) -> String {
    let mut sums = std::collections::BTreeMap::<String, f64>::new();
    for url in &pipeline.ops {
        let Ok(resp) = reqwest::get(format!("{url}/metrics")).await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("touchstream_enricher_state_"))
        {
            if let Some((name, value)) = line.rsplit_once(' ') {
                *sums.entry(name.to_owned()).or_default() += value.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    let per = |store: &str| {
        let bytes = sums
            .get(&format!(
                "touchstream_enricher_state_bytes{{store=\"{store}\"}}"
            ))
            .copied()
            .unwrap_or(0.0);
        let n = sums
            .get(&format!(
                "touchstream_enricher_state_entries{{store=\"{store}\"}}"
            ))
            .copied()
            .unwrap_or(0.0);
        format!(
            "{n} {store}s, {bytes} bytes, {:.0} bytes each",
            bytes / n.max(1.0)
        )
    };
    format!("enricher state: {}; {}", per("device"), per("person"))
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_journeys_match_the_independent_reference_credit_by_credit() {
    let topics = TestTopics::create(4).await;
    let db = ScratchDatabase::new();
    let pipeline = Pipeline::start(&topics, &db).await;
    check(&pipeline, &db, 1);
    println!("{}", state_sizes(&pipeline).await);
}

/// The same with two enricher instances in the group: a person's devices and the person
/// itself live on partitions that different instances own.
#[tokio::test(flavor = "multi_thread")]
async fn generated_journeys_match_the_reference_with_two_enrichers() {
    let topics = TestTopics::create(4).await;
    let db = ScratchDatabase::new();
    let mut pipeline = Pipeline::start(&topics, &db).await;
    pipeline.add_enricher().await;
    check(&pipeline, &db, 2);
}
