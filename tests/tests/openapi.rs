//! The collector against its own OpenAPI description (`crates/producer/openapi.yaml`), with
//! schemathesis generating requests from it: a bounded run (a fixed number of examples per
//! operation, a fixed seed) in which any 5xx, undocumented status, wrong content type or answer
//! that does not match the documented schema fails the test.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use touchstream_tests::{KAFKA_BROKERS, Service, TestTopics, free_port, wait_ready};

/// Examples per operation: enough to cover every documented status, small enough for a
/// bounded run.
const MAX_EXAMPLES: &str = "60";

fn schemathesis() -> PathBuf {
    let st = touchstream_tests::services_dir().join("python/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run `deploy/services.sh install-test-tools` (it installs schemathesis from \
         tests/python-requirements.txt)",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collector_keeps_its_openapi_contract_under_schemathesis() {
    let st = schemathesis();
    let topics = TestTopics::create(1).await;
    let port = free_port();
    let mut env = topics.env("producer");
    env.push((
        "TOUCHSTREAM_PRODUCER__LISTEN".into(),
        format!("127.0.0.1:{port}"),
    ));
    env.push((
        "TOUCHSTREAM_PRODUCER__KAFKA__BROKERS".into(),
        KAFKA_BROKERS.into(),
    ));
    let producer = Service::spawn("producer", &[], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/readyz"), &producer).await;
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/producer/openapi.yaml");
    let report = std::env::temp_dir().join(touchstream_tests::unique("schemathesis-"));
    std::fs::create_dir_all(&report).unwrap();
    // Run where its cache can be thrown away with the report.
    let out = Command::new(st)
        .current_dir(&report)
        .arg("run")
        .arg(&spec)
        .args(["--url", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20261201"])
        .args(["--workers", "1", "--request-timeout", "20", "--max-response-time", "3"])
        .args(["--generation-database", "none", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&report);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}\ncollector log:\n{}",
        producer.log_text()
    );
}
