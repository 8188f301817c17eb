//! The operations surface: Prometheus accepts the config and the alert rules, the rules' unit
//! tests pass, and every metric the rules or the README name is one the code emits.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str], dir: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not found ({e}): run deploy/services.sh install-test-tools")
        });
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass() {
    let dir = repo().join("deploy/prometheus");
    promtool(&["check", "config", "prometheus.yml"], &dir);
    promtool(&["check", "rules", "rules/touchstream.yml"], &dir);
    promtool(
        &["test", "rules", "touchstream_test.yml"],
        &dir.join("rules"),
    );
}

/// `touchstream_…` names in a text, without the histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("touchstream_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        let name = ["_bucket", "_count", "_sum"].iter().fold(name, |n, s| {
            n.strip_suffix(s).map(str::to_string).unwrap_or(n)
        });
        // Only metric names: binary + what + unit.
        let prefixes = [
            "touchstream_producer_",
            "touchstream_enricher_",
            "touchstream_sink_",
        ];
        if !name.ends_with('_') && prefixes.iter().any(|p| name.starts_with(p)) {
            names.insert(name);
        }
    }
    names
}

fn emitted_by_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![repo().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                names.extend(metric_names(&text));
                // The lag gauge is named after the binary that creates the context.
                for constructor in ["LagContext::new(\"", "LagContext::by_position(\""] {
                    for (i, _) in text.match_indices(constructor) {
                        let binary: String = text[i + constructor.len()..]
                            .chars()
                            .take_while(|c| *c != '"')
                            .collect();
                        names.insert(format!("touchstream_{binary}_consumer_lag_records"));
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_in_the_alert_rules_and_the_readme_is_emitted() {
    let code = emitted_by_code();
    assert!(code.len() > 20, "found only {code:?}");
    let rules =
        std::fs::read_to_string(repo().join("deploy/prometheus/rules/touchstream.yml")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let documented = metric_names(&readme);
    for (what, names) in [
        ("alert rules", &metric_names(&rules)),
        ("README", &documented),
    ] {
        let unknown: Vec<_> = names.difference(&code).collect();
        assert!(
            unknown.is_empty(),
            "{what} name metrics no code emits: {unknown:?}"
        );
    }
    let undocumented: Vec<_> = code.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from the README's table: {undocumented:?}"
    );
}
