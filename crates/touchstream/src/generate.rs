//! `touchstream generate`: realistic traffic for the demo and the benchmarks.
//!
//! Visitors arrive from social networks, search, e-mail, AI assistants and direct; each makes
//! 1–13 touches over several days (mostly from its first network, sometimes from others),
//! browses internally, and converts with probabilities that differ by origin: social brings
//! many visitors and micro-conversions, search and e-mail fewer visitors but more purchases.
//! Events are posted to the collector in time order per visitor, in batches, over HTTP.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;
const SITE: &str = "https://shop.example";

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The collector's base URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "TOUCHSTREAM_COLLECTOR_URL"
    )]
    pub url: String,
    /// How many visitors.
    #[arg(long, default_value_t = 300)]
    pub visitors: usize,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Random seed (same seed, same traffic).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Spread the visits over this many past days.
    #[arg(long, default_value_t = 20)]
    pub days: i64,
}

/// One way a visitor can arrive: a landing URL query and/or a referrer, and its conversion
/// propensities (signup, download, purchase).
struct Origin {
    weight: u32,
    query: &'static str,
    referrer: Option<&'static str>,
    user_agent: &'static str,
    propensity: (f64, f64, f64),
}

const DESKTOP_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
const FB_APP_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108]";

const ORIGINS: &[Origin] = &[
    Origin {
        // facebook
        weight: 16,
        query: "",
        referrer: Some("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F"),
        user_agent: IPHONE_UA,
        propensity: (0.25, 0.20, 0.04),
    },
    Origin {
        // facebook-app
        weight: 6,
        query: "",
        referrer: None,
        user_agent: FB_APP_UA,
        propensity: (0.20, 0.15, 0.03),
    },
    Origin {
        // instagram
        weight: 12,
        query: "?utm_source=ig&utm_medium=social&utm_campaign=spring&utm_content=reel-17",
        referrer: Some("https://l.instagram.com/"),
        user_agent: IPHONE_UA,
        propensity: (0.22, 0.18, 0.03),
    },
    Origin {
        // x
        weight: 8,
        query: "",
        referrer: Some("https://t.co/Zx81kQ"),
        user_agent: DESKTOP_UA,
        propensity: (0.18, 0.10, 0.03),
    },
    Origin {
        // linkedin
        weight: 10,
        query: "?utm_source=linkedin&utm_medium=social&utm_campaign=b2b-guide&utm_content=post-checklist",
        referrer: Some("https://www.linkedin.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.35, 0.40, 0.07),
    },
    Origin {
        // tiktok-ads
        weight: 6,
        query: "?utm_source=tiktok&utm_medium=paid_social&utm_campaign=launch&ttclid=E.C.P.abc",
        referrer: None,
        user_agent: IPHONE_UA,
        propensity: (0.15, 0.05, 0.02),
    },
    Origin {
        // youtube
        weight: 6,
        query: "",
        referrer: Some("https://www.youtube.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.20, 0.25, 0.04),
    },
    Origin {
        // reddit
        weight: 4,
        query: "",
        referrer: Some("https://out.reddit.com/t3_1abc"),
        user_agent: DESKTOP_UA,
        propensity: (0.15, 0.20, 0.03),
    },
    Origin {
        // pinterest
        weight: 3,
        query: "",
        referrer: Some("https://pin.it/4xYz"),
        user_agent: IPHONE_UA,
        propensity: (0.15, 0.10, 0.03),
    },
    Origin {
        // google
        weight: 12,
        query: "",
        referrer: Some("https://www.google.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.30, 0.25, 0.12),
    },
    Origin {
        // google-ads
        weight: 5,
        query: "?gclid=Cj0KCQiA",
        referrer: Some("https://www.google.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.30, 0.20, 0.15),
    },
    Origin {
        // bing
        weight: 3,
        query: "",
        referrer: Some("https://www.bing.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.30, 0.25, 0.12),
    },
    Origin {
        // newsletter
        weight: 5,
        query: "?utm_source=newsletter&utm_medium=email&utm_campaign=weekly",
        referrer: None,
        user_agent: DESKTOP_UA,
        propensity: (0.10, 0.35, 0.18),
    },
    Origin {
        // chatgpt
        weight: 3,
        query: "",
        referrer: Some("https://chatgpt.com/"),
        user_agent: DESKTOP_UA,
        propensity: (0.30, 0.30, 0.10),
    },
    Origin {
        // direct
        weight: 8,
        query: "",
        referrer: None,
        user_agent: DESKTOP_UA,
        propensity: (0.25, 0.20, 0.10),
    },
];

const PAGES: &[&str] = &[
    "/",
    "/blog/social-selling",
    "/blog/7-touches",
    "/pricing",
    "/features",
    "/guides/checklist",
];

/// Generates the whole traffic, each visitor's events in time order.
pub fn traffic(args: &GenerateArgs, now_ms: i64) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let total: u32 = ORIGINS.iter().map(|o| o.weight).sum();
    let mut events = Vec::new();
    for v in 0..args.visitors {
        let anonymous_id = format!("v-{:05}-{:08x}", v, rng.random::<u32>());
        let first = pick(&mut rng, total);
        let touches = rng.random_range(1..=13);
        // The journey ends at most a few hours ago and spans up to 10 days.
        let end = now_ms
            - rng.random_range(1..args.days.max(2)) * DAY_MS / 2
            - rng.random_range(0..4 * 3_600_000);
        let span = rng.random_range(0..10 * DAY_MS);
        let mut t = end - span;
        let step = span / touches as i64;
        for i in 0..touches {
            // Mostly the network that brought them, sometimes another channel.
            let origin = if i == 0 || rng.random_bool(0.6) {
                first
            } else {
                pick(&mut rng, total)
            };
            let page = PAGES[rng.random_range(0..PAGES.len())];
            events.push(event(
                &anonymous_id,
                "click",
                t,
                &format!("{SITE}{page}{}", origin.query),
                origin.referrer,
                origin.user_agent,
                json!({}),
            ));
            // Internal navigation after landing.
            if rng.random_bool(0.5) {
                t += rng.random_range(10_000..120_000);
                let next = PAGES[rng.random_range(0..PAGES.len())];
                let referrer = format!("{SITE}{page}");
                events.push(event(
                    &anonymous_id,
                    "click",
                    t,
                    &format!("{SITE}{next}"),
                    Some(&referrer),
                    origin.user_agent,
                    json!({}),
                ));
            }
            t += step.max(60_000);
        }
        let (p_signup, p_download, p_purchase) = first.propensity;
        // More touches, more intent: the 7–13-touch journeys convert best.
        let intent = 0.5 + touches as f64 / 13.0;
        let page = format!("{SITE}/thanks");
        if rng.random_bool((p_signup * intent).min(1.0)) {
            let kind = if rng.random_bool(0.7) {
                "newsletter"
            } else {
                "account"
            };
            events.push(event(
                &anonymous_id,
                "signup",
                t,
                &page,
                None,
                first.user_agent,
                json!({ "signup_kind": kind, "method": "email" }),
            ));
            t += 60_000;
        }
        if rng.random_bool((p_download * intent).min(1.0)) {
            let asset = [
                "social-selling-checklist",
                "7-touches-ebook",
                "attribution-whitepaper",
            ][rng.random_range(0..3)];
            events.push(event(
                &anonymous_id,
                "download",
                t,
                &page,
                None,
                first.user_agent,
                json!({ "asset_id": asset, "asset_kind": "ebook" }),
            ));
            t += 60_000;
        }
        let purchases = if rng.random_bool((p_purchase * intent).min(1.0)) {
            1 + usize::from(rng.random_bool(0.2))
        } else {
            0
        };
        for n in 0..purchases {
            let revenue = [1900, 4900, 9900, 19900][rng.random_range(0..4)];
            let order = format!("o-{anonymous_id}-{n}");
            events.push(event(
                &anonymous_id,
                "purchase",
                t,
                &page,
                None,
                first.user_agent,
                json!({ "order_id": order, "revenue": revenue, "currency": "EUR" }),
            ));
            t += DAY_MS;
        }
    }
    events
}

fn pick(rng: &mut StdRng, total: u32) -> &'static Origin {
    let mut n = rng.random_range(0..total);
    for o in ORIGINS {
        if n < o.weight {
            return o;
        }
        n -= o.weight;
    }
    &ORIGINS[0]
}

fn event(
    anonymous_id: &str,
    event_type: &str,
    time_ms: i64,
    page_url: &str,
    referrer: Option<&str>,
    ua: &str,
    extra: Value,
) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": event_type,
        "anonymous_id": anonymous_id,
        "occurred_at": time_ms,
        "page_url": page_url,
        "referrer": referrer,
        "user_agent": ua,
    });
    if let (Some(obj), Value::Object(more)) = (e.as_object_mut(), extra) {
        obj.extend(more);
    }
    e
}

/// Posts the traffic and prints a summary. Returns the number of accepted events.
pub async fn run(args: &GenerateArgs) -> anyhow::Result<u64> {
    let events = traffic(args, touchstream_model::time::now_ms());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let mut accepted = 0u64;
    for chunk in events.chunks(args.batch.max(1)) {
        let mut attempt = 0;
        loop {
            let resp = client.post(&url).json(chunk).send().await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await?;
                    accepted += body["accepted"].as_u64().unwrap_or(0);
                    break;
                }
                Ok(r) if r.status() == 503 && attempt < 10 => attempt += 1,
                Ok(r) => anyhow::bail!(
                    "collector answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) if attempt < 10 => {
                    eprintln!("collector not reachable yet ({e}), retrying");
                    attempt += 1;
                }
                Err(e) => anyhow::bail!("cannot reach the collector at {url}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }
    let visitors = args.visitors;
    eprintln!(
        "generated {} events from {visitors} visitors; the collector accepted {accepted}",
        events.len()
    );
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_deterministic_time_ordered_and_valid() {
        let args = GenerateArgs {
            url: String::new(),
            visitors: 200,
            batch: 100,
            seed: 1,
            days: 20,
        };
        let now = 1_795_600_800_000;
        let a = traffic(&args, now);
        let b = traffic(&args, now);
        assert_eq!(a.len(), b.len());
        let types = |t: &str| a.iter().filter(|e| e["event_type"] == t).count();
        assert!(
            types("click") > 200
                && types("signup") > 10
                && types("download") > 10
                && types("purchase") > 3
        );
        let ctx = touchstream_model::incoming::ServerContext {
            received_at: now,
            ..Default::default()
        };
        let limits = touchstream_model::incoming::ValidationLimits::default();
        let mut last: std::collections::HashMap<String, i64> = Default::default();
        for e in &a {
            let raw = touchstream_model::incoming::validate(e, &ctx, &limits, || "x".into())
                .unwrap_or_else(|errs| panic!("generated an invalid event {e}: {errs:?}"));
            let prev = last
                .insert(raw.anonymous_id.clone(), raw.event_time)
                .unwrap_or(0);
            assert!(raw.event_time >= prev, "events of one visitor out of order");
            assert!(raw.event_time < now);
        }
    }
}
