//! `touchstream classify`: how would touchstream attribute this hit?
//!
//! One hit from flags (`--page-url` …) or a stream of JSON lines on stdin, each
//! `{"page_url", "referrer", "user_agent"}` (other fields ignored); one JSON line out per hit, in
//! order. A line that cannot be read becomes `{"error": "<reason>"}` and the stream goes on, so
//! the output lines up with the input line by line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;
use touchstream_attribution::{Catalogue, Classifier, Hit};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClassifyArgs {
    /// Classify this one landing URL (instead of reading JSON lines from stdin).
    #[arg(long, value_name = "URL")]
    pub page_url: Option<String>,
    /// The hit's referrer (with --page-url).
    #[arg(long, value_name = "URL")]
    pub referrer: Option<String>,
    /// The hit's user agent (with --page-url).
    #[arg(long, value_name = "UA")]
    pub user_agent: Option<String>,
    /// The site's own host; repeat for several. Referrers on it (or its subdomains) are internal
    /// navigation. Without one, each hit's page URL host counts as the site.
    #[arg(long = "site-host", value_name = "HOST")]
    pub site_hosts: Vec<String>,
    /// A source catalogue to use instead of the built-in schemas/sources/catalogue.toml.
    #[arg(long, value_name = "PATH")]
    pub catalogue: Option<PathBuf>,
}

pub fn run(
    args: &ClassifyArgs,
    mut stdin: impl BufRead,
    mut stdout: impl Write,
) -> anyhow::Result<()> {
    let catalogue = match &args.catalogue {
        Some(path) => Catalogue::from_path(path).context("loading --catalogue")?,
        None => Catalogue::builtin().clone(),
    };
    let classifier = Classifier::new(catalogue, args.site_hosts.clone());

    if let Some(page_url) = &args.page_url {
        let hit = Hit {
            page_url,
            referrer: args.referrer.as_deref(),
            user_agent: args.user_agent.as_deref(),
        };
        write_line(&mut stdout, &classify_json(&classifier, &hit)?)?;
        return stdout.flush().context("writing to stdout");
    }
    if args.referrer.is_some() || args.user_agent.is_some() {
        bail!(
            "--referrer and --user-agent describe the hit given with --page-url; add --page-url, or leave all three out to read JSON lines from stdin"
        );
    }

    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let read = stdin
            .read_until(b'\n', &mut buf)
            .context("reading JSON lines from stdin")?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let out = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match parse_hit(line) {
                Ok(hit) => classify_json(&classifier, &hit.as_hit())?,
                Err(reason) => error_json(line_no, &reason)?,
            },
            Err(_) => error_json(line_no, "the line is not UTF-8 text")?,
        };
        write_line(&mut stdout, &out)?;
    }
    stdout.flush().context("writing to stdout")
}

/// The fields of one input line; absent or null fields are empty.
struct OwnedHit {
    page_url: String,
    referrer: Option<String>,
    user_agent: Option<String>,
}

impl OwnedHit {
    fn as_hit(&self) -> Hit<'_> {
        Hit {
            page_url: &self.page_url,
            referrer: self.referrer.as_deref(),
            user_agent: self.user_agent.as_deref(),
        }
    }
}

fn parse_hit(line: &str) -> Result<OwnedHit, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        format!("not JSON ({e}); expected {{\"page_url\": …, \"referrer\": …, \"user_agent\": …}}")
    })?;
    let Value::Object(map) = value else {
        return Err(
            "not a JSON object; expected {\"page_url\": …, \"referrer\": …, \"user_agent\": …}"
                .to_owned(),
        );
    };
    let field = |name: &str| -> Result<Option<String>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("\"{name}\" must be a string or null, not {other}")),
        }
    };
    Ok(OwnedHit {
        page_url: field("page_url")?.unwrap_or_default(),
        referrer: field("referrer")?,
        user_agent: field("user_agent")?,
    })
}

fn classify_json(classifier: &Classifier, hit: &Hit<'_>) -> anyhow::Result<String> {
    serde_json::to_string(&classifier.classify(hit)).context("encoding the touch as JSON")
}

fn error_json(line_no: u64, reason: &str) -> anyhow::Result<String> {
    let value = serde_json::json!({ "error": format!("line {line_no}: {reason}") });
    serde_json::to_string(&value).context("encoding the error as JSON")
}

fn write_line(out: &mut impl Write, line: &str) -> anyhow::Result<()> {
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run_lines(args: &ClassifyArgs, input: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        run(args, input, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn site(hosts: &[&str]) -> ClassifyArgs {
        ClassifyArgs {
            site_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..ClassifyArgs::default()
        }
    }

    #[test]
    fn one_hit_from_flags() {
        let args = ClassifyArgs {
            page_url: Some(
                "https://shop.example/?utm_source=ig&utm_medium=paid_social&utm_content=reel-7"
                    .into(),
            ),
            referrer: Some("https://l.instagram.com/".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ..ClassifyArgs::default()
        };
        let out = run_lines(&args, b"ignored");
        assert_eq!(out.len(), 1);
        let t = &out[0];
        assert_eq!(t["channel"], "Paid Social");
        assert_eq!(t["source"], "instagram");
        assert_eq!(t["medium"], "paid_social");
        assert_eq!(t["content"], "reel-7");
        assert_eq!(t["social_network"], "instagram");
        assert_eq!(t["is_internal"], false);
        assert_eq!(t["is_bot"], false);
    }

    #[test]
    fn json_lines_in_order_with_errors_in_place() {
        let input = concat!(
            r#"{"page_url":"https://example.com/","referrer":"https://www.google.de/","user_agent":"Mozilla/5.0","event_id":"x"}"#,
            "\n",
            "not json\n",
            "\n",
            r#"[1,2]"#,
            "\n",
            r#"{"page_url":"https://example.com/?gclid=1","referrer":null}"#,
            "\n",
            r#"{"page_url":42}"#,
            "\n",
            r#"{"page_url":"https://example.com/","referrer":"https://example.com/a"}"#,
            "\n",
            r#"{"referrer":"https://t.co/x","user_agent":"Googlebot/2.1 (+http://www.google.com/bot.html)"}"#,
        );
        let mut bytes = input.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n\xff\xfe\n{\"page_url\":\"https://example.com/\"}\n");
        let out = run_lines(&site(&[]), &bytes);
        let summary: Vec<String> = out
            .iter()
            .map(|v| match v.get("error") {
                Some(e) => format!("error: {}", e.as_str().unwrap().split(':').next().unwrap()),
                None => format!(
                    "{}/{}/{}/{}/{}/{}",
                    v["channel"].as_str().unwrap(),
                    v["source"].as_str().unwrap(),
                    v["medium"].as_str().unwrap(),
                    v["social_network"],
                    v["is_internal"],
                    v["is_bot"]
                ),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "Organic Search/google/organic/null/false/false",
                "error: line 2",
                "error: line 4",
                "Paid Search/google/cpc/null/false/false",
                "error: line 6",
                "Direct/(direct)/(none)/null/true/false",
                "Organic Social/x/referral/\"x\"/false/true",
                "error: line 9",
                "Direct/(direct)/(none)/null/false/false",
            ]
        );
        for key in [
            "channel",
            "source",
            "medium",
            "campaign",
            "content",
            "term",
            "social_network",
            "click_id_kind",
            "is_internal",
            "is_bot",
        ] {
            assert!(out[0].get(key).is_some(), "{key} missing");
        }
        assert!(out[1]["error"].as_str().unwrap().contains("not JSON"));
        assert!(
            out[4]["error"]
                .as_str()
                .unwrap()
                .contains("\"page_url\" must be a string")
        );
    }

    #[test]
    fn site_hosts_decide_internal_navigation() {
        // Without --site-host the page's own host (and its subdomains) is the site.
        let line = br#"{"page_url":"https://shop.example.com/","referrer":"https://example.com/"}"#;
        assert_eq!(run_lines(&site(&[]), line)[0]["is_internal"], false);
        assert_eq!(
            run_lines(&site(&["example.com"]), line)[0]["is_internal"],
            true
        );
        assert_eq!(
            run_lines(&site(&["other.org", "www.example.com"]), line)[0]["is_internal"],
            true
        );
        let line = br#"{"page_url":"https://example.com/","referrer":"https://www.example.com/"}"#;
        assert_eq!(run_lines(&site(&[]), line)[0]["is_internal"], true);
    }

    #[test]
    fn catalogue_override_and_its_errors() {
        let dir = std::env::temp_dir().join(format!("touchstream-classify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalogue.toml");
        std::fs::write(
            &path,
            "version = 1\n[[source]]\nid = \"acme-social\"\nkind = \"social\"\nhosts = [\"acme.social\"]\n",
        )
        .unwrap();
        let args = ClassifyArgs {
            catalogue: Some(path.clone()),
            ..ClassifyArgs::default()
        };
        let out = run_lines(
            &args,
            br#"{"page_url":"https://example.com/","referrer":"https://m.acme.social/"}"#,
        );
        assert_eq!(out[0]["source"], "acme-social");
        assert_eq!(out[0]["channel"], "Organic Social");

        std::fs::write(
            &path,
            "version = 1\n[[source]]\nid = \"Bad Id\"\nkind = \"social\"\n",
        )
        .unwrap();
        let err = run(&args, &b""[..], Vec::new()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("--catalogue") && msg.contains("Bad Id"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = ClassifyArgs {
            catalogue: Some(dir.join("nope.toml")),
            ..ClassifyArgs::default()
        };
        assert!(
            format!("{:#}", run(&missing, &b""[..], Vec::new()).unwrap_err()).contains("nope.toml")
        );
    }

    #[test]
    fn referrer_without_page_url_is_a_usage_error() {
        let args = ClassifyArgs {
            referrer: Some("https://t.co/".into()),
            ..ClassifyArgs::default()
        };
        let err = run(&args, &b""[..], Vec::new()).unwrap_err().to_string();
        assert!(err.contains("--page-url"), "{err}");
    }
}
