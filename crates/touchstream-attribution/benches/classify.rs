//! Classification throughput on a realistic mix of hits, side by side with a naive baseline
//! (`url::Url::parse` of the referrer + host-suffix walk over a std `HashMap` + public-suffix
//! lookup + scanning the landing URL's query pairs), the comparison the README's Benchmarks
//! section reports.
//!
//! `cargo bench -p touchstream-attribution --bench classify` runs the Criterion groups, then a
//! side-by-side timing of both on one core, prints a table with the ratio, and writes
//! `bench-results/classify.json` at the workspace root.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use touchstream_attribution::{Catalogue, Classifier, Hit};
use url::Url;

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 307.0.0.34.111 (iPhone14,2; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 532277042)",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/442.0.0.33.113;]",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

/// Cross-origin referrers as browsers send them by default (`strict-origin-when-cross-origin`:
/// the origin only), weighted roughly as a social-first business sees them. Empty strings are
/// hits without a referrer (typed URLs, in-app browsers, apps).
const ORIGINS: &[&str] = &[
    "https://l.facebook.com/",
    "https://lm.facebook.com/",
    "https://www.facebook.com/",
    "https://m.facebook.com/",
    "https://l.instagram.com/",
    "https://www.instagram.com/",
    "https://t.co/",
    "https://www.linkedin.com/",
    "https://lnkd.in/",
    "android-app://com.linkedin.android/",
    "https://www.youtube.com/",
    "https://www.reddit.com/",
    "https://www.tiktok.com/",
    "https://www.pinterest.de/",
    "https://www.google.com/",
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.google.co.uk/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://chatgpt.com/",
    "https://news.ycombinator.com/",
    "",
    "",
    "",
];

const UTM_PAGES: &[&str] = &[
    "https://shop.example.com/?utm_source=facebook&utm_medium=paid_social&utm_campaign=spring_sale&utm_content=reel_42",
    "https://shop.example.com/pricing?utm_source=ig&utm_medium=social&utm_campaign=launch",
    "https://shop.example.com/?gclid=Cj0KCQiA4NWrBhD-ARIsAFCKwWs",
    "https://shop.example.com/blog/post?utm_source=newsletter&utm_medium=email&utm_campaign=weekly_48",
    "https://shop.example.com/?fbclid=IwAR2xYz&utm_content=post_7",
    "https://shop.example.com/landing?utm_source=linkedin&utm_medium=cpc&utm_campaign=b2b&li_fat_id=abc-123",
];

struct Sample {
    page_url: String,
    referrer: Option<String>,
    user_agent: String,
}

/// A pool of distinct user agents (browser/app builds vary), to be drawn with a skew: real
/// traffic repeats a few user agents a lot and has a long tail, which matters because the
/// classifier memoises bot checks per user agent.
fn user_agent_pool() -> Vec<String> {
    let mut pool = Vec::new();
    for build in 0..250 {
        for ua in UAS {
            pool.push(ua.replacen(".0.", &format!(".{build}."), 1));
        }
    }
    pool
}

/// A deterministic mix of hits. `utm_share` of them land on campaign URLs, the rest are
/// referrer-only (page URL without a query). Of the referrers, 70 % are the common origins above,
/// 15 % internal navigation (same-origin referrers keep their path), 10 % a long tail of other
/// sites, 5 % full URLs with unique paths (sites that send `unsafe-url` referrers).
/// With `unique`, every referrer and user agent is distinct: the worst case for the
/// classifier's memos.
fn samples(n: usize, utm_share: f64, unique: bool) -> Vec<Sample> {
    let uas = user_agent_pool();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let utm = (next() % 1000) as f64 / 1000.0 < utm_share;
            let page_url = if utm {
                UTM_PAGES[(next() % UTM_PAGES.len() as u64) as usize].to_owned()
            } else {
                format!("https://shop.example.com/p/{}", next() % 500)
            };
            let referrer = match next() % 100 {
                _ if unique => format!("https://www.site{i}.example.org/article/{}", next()),
                0..70 => ORIGINS[(next() % ORIGINS.len() as u64) as usize].to_owned(),
                70..85 => format!("https://shop.example.com/p/{}", next() % 500),
                85..95 => format!("https://blog{0}.partner{0}.org/", next() % 300),
                _ => format!(
                    "https://news.ycombinator.com/item?id={}",
                    next() % 10_000_000
                ),
            };
            // u³ skews the draw towards the start of the pool (the popular builds).
            let user_agent = if unique {
                format!("{} build/{i}", uas[i % uas.len()])
            } else {
                let u = (next() % 1_000_000) as f64 / 1_000_000.0;
                uas[((u * u * u) * uas.len() as f64) as usize].clone()
            };
            Sample {
                page_url,
                referrer: (!referrer.is_empty()).then_some(referrer),
                user_agent,
            }
        })
        .collect()
}

/// The naive way: parse, walk the host's suffixes through a SipHash map, ask the public-suffix
/// list, scan the landing URL's query pairs for utm_* and click ids.
struct Naive {
    hosts: HashMap<String, &'static str>,
}

impl Naive {
    fn new() -> Self {
        let mut hosts = HashMap::new();
        for (host, source) in [
            ("facebook.com", "facebook"),
            ("instagram.com", "instagram"),
            ("t.co", "x"),
            ("twitter.com", "x"),
            ("x.com", "x"),
            ("linkedin.com", "linkedin"),
            ("lnkd.in", "linkedin"),
            ("com.linkedin.android", "linkedin"),
            ("youtube.com", "youtube"),
            ("reddit.com", "reddit"),
            ("tiktok.com", "tiktok"),
            ("pinterest.de", "pinterest"),
            ("google.com", "google"),
            ("google.de", "google"),
            ("google.co.uk", "google"),
            ("bing.com", "bing"),
            ("duckduckgo.com", "duckduckgo"),
            ("chatgpt.com", "chatgpt"),
            ("news.ycombinator.com", "hackernews"),
        ] {
            hosts.insert(host.to_owned(), source);
        }
        Naive { hosts }
    }

    fn classify(&self, page_url: &str, referrer: Option<&str>) -> (String, usize) {
        let mut utm = 0;
        if let Ok(page) = Url::parse(page_url) {
            for (k, _) in page.query_pairs() {
                if k.starts_with("utm_") || k.ends_with("clid") {
                    utm += 1;
                }
            }
        }
        let Some(url) = referrer.and_then(|r| Url::parse(r).ok()) else {
            return ("(direct)".to_owned(), utm);
        };
        let Some(host) = url.host_str() else {
            return ("(direct)".to_owned(), utm);
        };
        let mut rest = host;
        loop {
            if let Some(source) = self.hosts.get(rest) {
                return ((*source).to_owned(), utm);
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => break,
            }
        }
        (psl::domain_str(host).unwrap_or(host).to_owned(), utm)
    }
}

fn classify_all(c: &Classifier, hits: &[Sample]) -> usize {
    let mut n = 0;
    for s in hits {
        let t = c.classify(&Hit {
            page_url: &s.page_url,
            referrer: s.referrer.as_deref(),
            user_agent: Some(&s.user_agent),
        });
        n += t.source.len();
    }
    n
}

fn classify_all_no_ua(c: &Classifier, hits: &[Sample]) -> usize {
    let mut n = 0;
    for s in hits {
        let t = c.classify(&Hit {
            page_url: &s.page_url,
            referrer: s.referrer.as_deref(),
            user_agent: None,
        });
        n += t.source.len();
    }
    n
}

fn naive_all(b: &Naive, hits: &[Sample]) -> usize {
    hits.iter()
        .map(|s| b.classify(&s.page_url, s.referrer.as_deref()).0.len())
        .sum()
}

struct Workload {
    name: &'static str,
    hits: Vec<Sample>,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "referrer_only",
            hits: samples(16_384, 0.0, false),
        },
        Workload {
            name: "mix_80_20",
            hits: samples(16_384, 0.2, false),
        },
        Workload {
            name: "all_unique",
            hits: samples(16_384, 0.0, true),
        },
    ]
}

fn criterion_groups(c: &mut Criterion, classifier: &Classifier, naive: &Naive) {
    for w in workloads() {
        let mut group = c.benchmark_group(format!("classify/{}", w.name));
        group.throughput(Throughput::Elements(w.hits.len() as u64));
        group.bench_function("touchstream", |b| {
            b.iter(|| classify_all(classifier, black_box(&w.hits)))
        });
        group.bench_function("touchstream_without_ua", |b| {
            b.iter(|| classify_all_no_ua(classifier, black_box(&w.hits)))
        });
        group.bench_function("naive_baseline", |b| {
            b.iter(|| naive_all(naive, black_box(&w.hits)))
        });
        group.finish();
    }
}

/// Best of several alternating rounds, hits per second on this one thread.
fn rate(rounds: usize, per_round: Duration, hits: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut done = 0usize;
        while start.elapsed() < per_round {
            black_box(f());
            done += hits;
        }
        best = best.max(done as f64 / start.elapsed().as_secs_f64());
    }
    best
}

fn side_by_side(classifier: &Classifier, naive: &Naive, quick: bool) {
    let (rounds, per_round) = if quick {
        (1, Duration::from_millis(20))
    } else {
        (5, Duration::from_millis(600))
    };
    let mut rows = Vec::new();
    println!();
    println!(
        "{:<16} {:>22} {:>22} {:>18} {:>8} {:>14}",
        "workload",
        "touchstream (hits/s)",
        "without UA (hits/s)",
        "naive (hits/s)",
        "ratio",
        "ratio w/o UA"
    );
    for w in workloads() {
        let mut ours = 0f64;
        let mut ours_no_ua = 0f64;
        let mut base = 0f64;
        // Alternate so that frequency scaling and neighbours hit both alike.
        for _ in 0..rounds {
            ours = ours.max(rate(1, per_round, w.hits.len(), || {
                classify_all(classifier, &w.hits)
            }));
            ours_no_ua = ours_no_ua.max(rate(1, per_round, w.hits.len(), || {
                classify_all_no_ua(classifier, &w.hits)
            }));
            base = base.max(rate(1, per_round, w.hits.len(), || {
                naive_all(naive, &w.hits)
            }));
        }
        println!(
            "{:<16} {:>22.0} {:>22.0} {:>18.0} {:>8.2} {:>14.2}",
            w.name,
            ours,
            ours_no_ua,
            base,
            ours / base,
            ours_no_ua / base
        );
        rows.push(format!(
            "{{\"workload\":\"{}\",\"touchstream_per_s\":{ours:.0},\"touchstream_without_ua_per_s\":{ours_no_ua:.0},\"naive_baseline_per_s\":{base:.0},\"ratio\":{:.3},\"ratio_without_ua\":{:.3}}}",
            w.name,
            ours / base,
            ours_no_ua / base
        ));
    }
    println!("(one thread; ratio = touchstream / naive baseline, higher is better)");
    if quick {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    let json = format!(
        "{{\"bench\":\"classify\",\"results\":[{}]}}\n",
        rows.join(",")
    );
    match std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("classify.json"), json))
    {
        Ok(()) => println!("wrote {}", dir.join("classify.json").display()),
        Err(e) => eprintln!("could not write bench-results/classify.json: {e}"),
    }
}

fn main() {
    let classifier = Classifier::new(
        Catalogue::builtin().clone(),
        vec!["shop.example.com".into()],
    );
    let naive = Naive::new();
    // `cargo bench` passes --bench; `cargo test --benches` does not: then run everything once,
    // quickly, as a smoke test.
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench");
    let profiling = args.iter().any(|a| a == "--profile-time");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    criterion_groups(&mut criterion, &classifier, &naive);
    criterion.final_summary();
    if !profiling {
        side_by_side(&classifier, &naive, !benchmarking);
    }
}
