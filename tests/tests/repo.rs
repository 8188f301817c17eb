//! The repository explains itself: no comment, error message or document points to a file
//! outside it (a design note, a style guide or a shared folder that a clone does not have),
//! every relative link in its Markdown resolves to a file in the repo, and the README carries
//! the design in its own words.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Folders that are generated, downloaded or not the project's text.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    ".services",
    "bench-results",
    "corpus",
    "artifacts",
];

/// Every UTF-8 text file of the repository (binary and generated files skipped).
fn text_files() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![repo()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.git` is a file in a worktree; skip it in every form.
            if SKIP_DIRS.contains(&name.as_str()) {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                out.push((path, text));
            }
        }
    }
    out
}

/// Names of files that live outside this repository (built from pieces, so that this file
/// does not match itself).
fn outside_references() -> Vec<String> {
    vec![
        ["DESIGN", ".md"].concat(),
        ["STYLE", ".md"].concat(),
        ["../", "shared"].concat(),
        ["DESIGN", " asks"].concat(),
        ["DESIGN", "'s"].concat(),
    ]
}

#[test]
fn no_file_points_outside_the_repository() {
    let files = text_files();
    assert!(
        files.len() > 100,
        "found only {} text files under {}",
        files.len(),
        repo().display()
    );
    let patterns = outside_references();
    let mut found = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            for p in &patterns {
                if line.contains(p.as_str()) {
                    found.push(format!(
                        "{}:{}: {}",
                        path.strip_prefix(repo()).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines point to files outside the repository; point to the README's Design section \
         or schemas/attribution-rules.md instead:\n{}",
        found.join("\n")
    );
}

/// `[text](target)` links of a Markdown text whose target is a relative path.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = rest[..end].split('#').next().unwrap_or("").trim();
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        out.push(target.to_string());
    }
    out
}

#[test]
fn every_relative_markdown_link_resolves_inside_the_repository() {
    let root = repo();
    let mut checked = 0;
    let mut broken = Vec::new();
    for (path, text) in text_files() {
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let dir = path.parent().unwrap();
        for link in relative_links(&text) {
            checked += 1;
            let target = dir.join(&link);
            let inside = target
                .canonicalize()
                .is_ok_and(|t| t.starts_with(&root) && t.exists());
            if !inside {
                broken.push(format!(
                    "{}: ({link})",
                    path.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(checked > 0, "no relative Markdown link found at all");
    assert!(
        broken.is_empty(),
        "links that do not resolve to a file in the repo:\n{}",
        broken.join("\n")
    );
}

/// The README's `## Design` section, up to the next `## ` heading.
fn design_section(readme: &str) -> &str {
    let start = readme
        .find("\n## Design\n")
        .expect("README.md has no `## Design` section");
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    &body[..end]
}

#[test]
fn the_readme_carries_the_design() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let design = design_section(&readme);
    for term in [
        "touchstream.events.raw",
        "touchstream.events.attributed",
        "touchstream.events.dlq",
        "exactly once",
        "Channels",
        "Social networks",
        "Touches",
        "Sessions",
        "Conversions",
        "micro",
        "macro",
        "Lifecycle",
        "first_touch",
        "last_non_direct",
        "time_decay",
        "Lateness",
        "allowed_lateness_minutes",
        "](schemas/attribution-rules.md)",
    ] {
        assert!(
            design.contains(term),
            "the README's Design section does not mention {term:?}"
        );
    }
    // Every channel the code knows, spelled as the code spells it.
    for channel in touchstream_attribution::Channel::ALL {
        let name = channel.as_str();
        assert!(
            design.contains(&format!("`{name}`")),
            "the Design section does not list the channel `{name}`"
        );
    }
    assert!(Path::new(&repo().join("schemas/attribution-rules.md")).exists());
}
