//! Touch classification: (page URL, referrer, user agent, the site's own hosts) → [`Touch`].
//!
//! Precedence is that of `schemas/attribution-rules.md` (section 4), literally: 1 `utm_*` on
//! the landing URL, 2 ad click ids, 3 the referrer host (matched by suffix against the
//! catalogue), 4 in-app browser markers in the user agent when the referrer is empty, 5 Direct. The channel always comes from GA4's rules
//! ([`crate::channel`]) applied to the resulting source/medium/campaign, so a source gets the
//! same channel whether it was tagged by hand or read from a referrer.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::catalogue::{Catalogue, SourceIdx, fx_hash};
use crate::channel::{Channel, SourceCategory, ga4_channel};

/// One hit as the collector stored it. `page_url` may be absolute or a path; every field may be
/// garbage, and classification never fails or panics because of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hit<'a> {
    pub page_url: &'a str,
    pub referrer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Where a hit came from, in the vocabulary of the README's Design section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub channel: Channel,
    /// Canonical lowercase source id, `(direct)`, a registrable domain, or the utm_source as given.
    pub source: String,
    /// utm_medium, or what the rule that decided implies: `organic` (search engine referrer),
    /// `referral`, `email` (webmail), `social` (fbclid, in-app browser), `cpc` (ad click id),
    /// `(none)` (Direct), `(not set)` (utm_source without utm_medium).
    pub medium: String,
    pub campaign: Option<String>,
    /// utm_content: the post or ad that was clicked.
    pub content: Option<String>,
    pub term: Option<String>,
    pub campaign_id: Option<String>,
    pub click_id_kind: Option<String>,
    pub social_network: Option<String>,
    pub is_internal: bool,
    pub is_bot: bool,
    pub is_spam_referrer: bool,
}

impl Touch {
    /// Whether this hit, if it is a `click`, opens a touch: everything but internal navigation.
    /// (Only clicks open touches; checking the event type, and deciding what to do with bots
    /// and spam, is the caller's job since both are flagged, not dropped.)
    pub fn opens_touch(&self) -> bool {
        !self.is_internal
    }

    /// The Direct touch: no campaign, no referrer, no in-app browser.
    pub fn direct() -> Touch {
        Touch {
            channel: Channel::Direct,
            source: DIRECT_SOURCE.to_owned(),
            medium: NONE_MEDIUM.to_owned(),
            campaign: None,
            content: None,
            term: None,
            campaign_id: None,
            click_id_kind: None,
            social_network: None,
            is_internal: false,
            is_bot: false,
            is_spam_referrer: false,
        }
    }
}

/// The source of a Direct hit.
pub const DIRECT_SOURCE: &str = "(direct)";
const NONE_MEDIUM: &str = "(none)";
const NOT_SET: &str = "(not set)";

/// Ad click ids, in the order they are tried when a URL carries several, with the source they
/// imply. All are paid (medium `cpc`) except fbclid, which Meta adds to organic links too.
const PAID_CLICK_IDS: [(&str, &str); 11] = [
    ("gclid", "google"),
    ("gbraid", "google"),
    ("wbraid", "google"),
    ("dclid", "google"),
    ("msclkid", "bing"),
    ("ttclid", "tiktok"),
    ("li_fat_id", "linkedin"),
    ("twclid", "x"),
    ("sccid", "snapchat"),
    ("epik", "pinterest"),
    ("rdt_cid", "reddit"),
];
const FBCLID: &str = "fbclid";

/// Classifies hits against a catalogue. Build one per site (or set of sites) and share it;
/// `classify` takes `&self` and is safe to call from many threads.
#[derive(Clone, Debug)]
pub struct Classifier {
    catalogue: Catalogue,
    site_hosts: Vec<Box<str>>,
}

impl Classifier {
    /// `site_hosts` are the site's own hosts (`example.com`, `https://www.example.com:8443` ...);
    /// a referrer on one of them, or on a subdomain, is internal navigation. With none given,
    /// the host of each hit's page URL counts as the site.
    pub fn new(catalogue: Catalogue, site_hosts: Vec<String>) -> Self {
        let site_hosts = site_hosts
            .iter()
            .filter_map(|h| site_host(h))
            .collect::<Vec<_>>();
        Classifier {
            catalogue,
            site_hosts,
        }
    }

    /// The catalogue this classifier matches against.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Classifies one hit. Never panics, whatever the input.
    pub fn classify(&self, hit: &Hit<'_>) -> Touch {
        let is_bot = hit
            .user_agent
            .is_some_and(|ua| !ua.is_empty() && is_bot(ua));
        let page = self.page_params(hit.page_url);
        let referrer = hit.referrer.and_then(referrer);

        let mut is_spam_referrer = false;
        let mut referred: Option<Referred<'_>> = None;
        let mut internal_referrer = false;
        if let Some(r) = &referrer {
            match r {
                Referrer::Host(host) => {
                    let host = &**host;
                    // The site's own host is never a catalogue source nor spam: skip the lookup.
                    if self.is_site_host(host, page.host.as_deref()) {
                        internal_referrer = true;
                    } else {
                        let m = self.catalogue.lookup_host(host);
                        is_spam_referrer = m.spam;
                        referred = Some(match m.source {
                            Some(idx) => Referred::Known(idx),
                            None => Referred::Unknown {
                                name: m.registrable.unwrap_or(host),
                                alt: host,
                            },
                        });
                    }
                }
                Referrer::App(app) => {
                    referred = Some(match self.catalogue.lookup_app(app) {
                        Some(idx) => Referred::Known(idx),
                        None => Referred::Unknown {
                            name: app,
                            alt: app,
                        },
                    });
                }
                Referrer::Ip(ip) => {
                    if self.is_site_host(ip, page.host.as_deref()) {
                        internal_referrer = true;
                    } else {
                        referred = Some(Referred::Unknown { name: ip, alt: ip });
                    }
                }
            }
        }

        let has_campaign = page.utm_source.is_some()
            || page.utm_medium.is_some()
            || page.campaign.is_some()
            || page.campaign_id.is_some()
            || page.click_id.is_some();
        let campaign = page.campaign.as_deref();

        let decided = if internal_referrer && !has_campaign {
            Decided::internal()
        } else if page.utm_source.is_some() || page.utm_medium.is_some() {
            self.utm_rule(page.utm_source.as_deref(), page.utm_medium.as_deref())
        } else if let Some(kind) = page.click_id {
            self.click_id_rule(kind, referred.as_ref(), hit.user_agent)
        } else if let Some(r) = &referred {
            self.referrer_rule(r)
        } else if let Some(idx) = hit
            .user_agent
            .and_then(|ua| self.catalogue.in_app_browser(ua))
        {
            self.known(idx, "social")
        } else {
            Decided::direct()
        };

        let channel = ga4_channel(decided.category, &decided.source, &decided.medium, campaign);
        Touch {
            channel,
            social_network: decided.social_network,
            source: decided.source.into_owned(),
            medium: decided.medium.into_owned(),
            campaign: page.campaign,
            content: page.content,
            term: page.term,
            campaign_id: page.campaign_id,
            click_id_kind: page.click_id.map(str::to_owned),
            is_internal: decided.internal,
            is_bot,
            is_spam_referrer,
        }
    }

    /// Rule 1: utm_source/utm_medium, the source normalised through the catalogue's aliases.
    fn utm_rule<'a>(&'a self, source: Option<&'a str>, medium: Option<&str>) -> Decided<'a> {
        let medium = Cow::Owned(medium.unwrap_or(NOT_SET).to_owned());
        let Some(raw) = source else {
            return Decided {
                source: Cow::Borrowed(NOT_SET),
                medium,
                category: None,
                social_network: None,
                internal: false,
            };
        };
        // A utm_source written as a host ("m.facebook.com", "google.co.uk") means that host's
        // source even when the exact spelling is not an alias.
        let idx = self.catalogue.lookup_alias(raw).or_else(|| {
            raw.contains('.')
                .then(|| self.catalogue.lookup_host(raw).source)
                .flatten()
        });
        match idx {
            Some(idx) => {
                let mut d = self.known(idx, "");
                d.medium = medium;
                d
            }
            None => self.unknown(raw, raw, medium),
        }
    }

    /// Rule 2: an ad click id. fbclid is organic: Meta adds it to every outbound link.
    fn click_id_rule(
        &self,
        kind: &'static str,
        referred: Option<&Referred<'_>>,
        user_agent: Option<&str>,
    ) -> Decided<'_> {
        if kind == FBCLID {
            let referred_idx = match referred {
                Some(Referred::Known(idx)) => Some(*idx),
                Some(Referred::Unknown { .. }) => None,
                None => user_agent.and_then(|ua| self.catalogue.in_app_browser(ua)),
            };
            let instagram =
                referred_idx.filter(|idx| &*self.catalogue.source(*idx).id == "instagram");
            let network = instagram.or_else(|| self.catalogue.lookup_alias("facebook"));
            return match network {
                Some(idx) => self.known(idx, "social"),
                None => self.unknown("facebook", "facebook", Cow::Borrowed("social")),
            };
        }
        let source = PAID_CLICK_IDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(NOT_SET, |(_, s)| *s);
        match self.catalogue.lookup_alias(source) {
            Some(idx) => self.known(idx, "cpc"),
            None => self.unknown(source, source, Cow::Borrowed("cpc")),
        }
    }

    /// Rule 3: the referrer.
    fn referrer_rule<'a>(&'a self, referred: &Referred<'a>) -> Decided<'a> {
        match *referred {
            Referred::Known(idx) => {
                let medium = match self.catalogue.source(idx).category {
                    SourceCategory::Search => "organic",
                    SourceCategory::Email => "email",
                    _ => "referral",
                };
                self.known(idx, medium)
            }
            Referred::Unknown { name, alt } => {
                let mut d = self.unknown(name, alt, Cow::Borrowed("referral"));
                if d.category == Some(SourceCategory::Search) {
                    d.medium = Cow::Borrowed("organic");
                }
                d
            }
        }
    }

    fn known(&self, idx: SourceIdx, medium: &'static str) -> Decided<'_> {
        let info = self.catalogue.source(idx);
        Decided {
            source: Cow::Borrowed(&*info.id),
            medium: Cow::Borrowed(medium),
            category: Some(info.category),
            social_network: info.social_network.then(|| info.id.to_string()),
            internal: false,
        }
    }

    /// A source the catalogue has no entry for: GA4's lists may still know it (e.g. amazon.com
    /// is a shopping site). `alt` is a second spelling to try (the full referrer host).
    fn unknown<'a>(&self, name: &'a str, alt: &str, medium: Cow<'a, str>) -> Decided<'a> {
        let category = self
            .catalogue
            .ga4_category(name)
            .or_else(|| self.catalogue.ga4_category(alt));
        Decided {
            source: Cow::Borrowed(name),
            medium,
            category,
            social_network: (category == Some(SourceCategory::Social)).then(|| name.to_owned()),
            internal: false,
        }
    }

    fn is_site_host(&self, host: &str, page_host: Option<&str>) -> bool {
        if self.site_hosts.is_empty() {
            return page_host.is_some_and(|p| is_same_site(host, p));
        }
        self.site_hosts.iter().any(|s| is_same_site(host, s))
    }

    /// Campaign parameters from the landing URL. The URL is parsed (with `url`) only when it has
    /// a query string or when its host is needed as the site's host.
    fn page_params(&self, page_url: &str) -> PageParams {
        let mut params = PageParams::default();
        let needs_host = self.site_hosts.is_empty();
        if !needs_host && !page_url.contains('?') {
            return params;
        }
        let Some(url) = parse_page_url(page_url) else {
            return params;
        };
        if needs_host && let Some(Host::Domain(d)) = url.host() {
            params.host = site_host_from_domain(d);
        }
        if url.query().is_none() {
            return params;
        }
        let mut paid_rank = usize::MAX;
        for (key, value) in url.query_pairs() {
            let slot = match_key(&key);
            match slot {
                Key::UtmSource => set_once(&mut params.utm_source, &value),
                Key::UtmMedium => set_once(&mut params.utm_medium, &value),
                Key::UtmCampaign => set_once(&mut params.campaign, &value),
                Key::UtmContent => set_once(&mut params.content, &value),
                Key::UtmTerm => set_once(&mut params.term, &value),
                Key::UtmId => set_once(&mut params.campaign_id, &value),
                Key::ClickId(rank, name) => {
                    // Any value counts: ad networks never send an empty click id, and a
                    // truncated one still says which network the click came from.
                    if rank < paid_rank {
                        paid_rank = rank;
                        params.click_id = Some(name);
                    }
                }
                Key::Other => {}
            }
        }
        params
    }
}

/// What rules 1–5 decided, before the channel is derived.
struct Decided<'a> {
    source: Cow<'a, str>,
    medium: Cow<'a, str>,
    category: Option<SourceCategory>,
    social_network: Option<String>,
    internal: bool,
}

impl Decided<'_> {
    fn direct() -> Self {
        Decided {
            source: Cow::Borrowed(DIRECT_SOURCE),
            medium: Cow::Borrowed(NONE_MEDIUM),
            category: None,
            social_network: None,
            internal: false,
        }
    }

    fn internal() -> Self {
        Decided {
            internal: true,
            ..Decided::direct()
        }
    }
}

/// A referrer that named someone other than the site.
enum Referred<'h> {
    Known(SourceIdx),
    /// `name` is the source to report (registrable domain or app id); `alt` the full host.
    Unknown {
        name: &'h str,
        alt: &'h str,
    },
}

#[derive(Default)]
struct PageParams {
    utm_source: Option<String>,
    utm_medium: Option<String>,
    campaign: Option<String>,
    content: Option<String>,
    term: Option<String>,
    campaign_id: Option<String>,
    click_id: Option<&'static str>,
    /// The page's own host, only computed when the classifier has no site hosts.
    host: Option<Box<str>>,
}

enum Key {
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmContent,
    UtmTerm,
    UtmId,
    /// Rank in the click-id precedence (paid ids first, fbclid last) and its canonical name.
    ClickId(usize, &'static str),
    Other,
}

fn match_key(key: &str) -> Key {
    // Parameter names are matched case-insensitively: hand-written links use UTM_Source too.
    let key = key.trim();
    if key.len() > 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"utm_") {
        let rest = &key[4..];
        for (name, k) in [
            ("source", Key::UtmSource),
            ("medium", Key::UtmMedium),
            ("campaign", Key::UtmCampaign),
            ("content", Key::UtmContent),
            ("term", Key::UtmTerm),
            ("id", Key::UtmId),
        ] {
            if rest.eq_ignore_ascii_case(name) {
                return k;
            }
        }
        return Key::Other;
    }
    if let Some(rank) = PAID_CLICK_IDS
        .iter()
        .position(|(name, _)| key.eq_ignore_ascii_case(name))
    {
        return Key::ClickId(rank, PAID_CLICK_IDS[rank].0);
    }
    if key.eq_ignore_ascii_case(FBCLID) {
        return Key::ClickId(PAID_CLICK_IDS.len(), FBCLID);
    }
    Key::Other
}

/// UTM values are URL-decoded (by `query_pairs`), trimmed and lowercased; the first non-empty
/// occurrence of a parameter wins.
fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_some() {
        return;
    }
    let value = value.trim();
    if !value.is_empty() {
        *slot = Some(value.to_lowercase());
    }
}

fn parse_page_url(page_url: &str) -> Option<Url> {
    static BASE: OnceLock<Option<Url>> = OnceLock::new();
    let page_url = page_url.trim();
    match Url::parse(page_url) {
        Ok(url) => Some(url),
        // Server-side SDKs sometimes send only the path ("/pricing?utm_source=x").
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = BASE
                .get_or_init(|| Url::parse("https://page.invalid/").ok())
                .as_ref()?;
            base.join(page_url).ok()
        }
        Err(_) => None,
    }
}

/// A referrer reduced to what classification needs.
#[derive(Clone, Debug)]
/// `Rc` because values are handed out of a per-thread memo: cloning one costs no allocation.
enum Referrer {
    /// A lowercase domain name without a trailing dot.
    Host(Rc<str>),
    /// An `android-app://` / `ios-app://` app id, lowercase.
    App(Rc<str>),
    Ip(Rc<str>),
}

/// [`parse_referrer`], memoised per thread. Browsers send cross-origin referrers as bare origins
/// by default (`strict-origin-when-cross-origin`), so the same few hundred strings
/// ("https://l.facebook.com/", "https://www.google.com/" …) make up most traffic, and parsing
/// them is the bulk of the work of classifying a referrer-only hit.
fn referrer(raw: &str) -> Option<Referrer> {
    thread_local! {
        static MEMO: RefCell<StrMemo<Option<Referrer>>> = RefCell::new(StrMemo::new(1024));
    }
    memoised(&MEMO, raw, 256, parse_referrer)
}

/// Referrers that mean "no referrer" give `None`: empty, whitespace, `null`, `about:blank`,
/// strings that are not URLs, and schemes that name no source (file:, chrome-extension:,
/// data: ...).
fn parse_referrer(raw: &str) -> Option<Referrer> {
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("null") || raw.eq_ignore_ascii_case("about:blank")
    {
        return None;
    }
    let url = match Url::parse(raw) {
        Ok(url) => url,
        // Some apps send a bare host ("www.facebook.com/"): read it as an https URL.
        Err(url::ParseError::RelativeUrlWithoutBase)
            if raw.contains('.') && !raw.contains(char::is_whitespace) =>
        {
            Url::parse(&format!("https://{raw}")).ok()?
        }
        Err(_) => return None,
    };
    match url.scheme() {
        "http" | "https" => match url.host()? {
            // `url` has already lowercased and IDNA-encoded the name.
            Host::Domain(d) => {
                let d = d.trim_end_matches('.');
                (!d.is_empty()).then(|| Referrer::Host(d.into()))
            }
            Host::Ipv4(ip) => Some(Referrer::Ip(ip.to_string().into())),
            Host::Ipv6(ip) => Some(Referrer::Ip(ip.to_string().into())),
        },
        "android-app" | "ios-app" => {
            let app = url.host_str()?;
            (!app.is_empty()).then(|| Referrer::App(app.to_ascii_lowercase().into()))
        }
        _ => None,
    }
}

/// `host` is `site` or one of its subdomains.
fn is_same_site(host: &str, site: &str) -> bool {
    host == site
        || (host.len() > site.len()
            && host.ends_with(site)
            && host.as_bytes()[host.len() - site.len() - 1] == b'.')
}

/// Normalises a configured site host: accepts `example.com`, `WWW.Example.com.`,
/// `example.com:8080` or a whole URL, keeps the lowercase host without a leading `www.`.
fn site_host(raw: &str) -> Option<Box<str>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let url = if raw.contains("://") {
        Url::parse(raw).ok()?
    } else {
        Url::parse(&format!("https://{raw}")).ok()?
    };
    match url.host()? {
        Host::Domain(d) => site_host_from_domain(d),
        Host::Ipv4(ip) => Some(ip.to_string().into()),
        Host::Ipv6(ip) => Some(ip.to_string().into()),
    }
}

fn site_host_from_domain(domain: &str) -> Option<Box<str>> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let d = d.strip_prefix("www.").unwrap_or(&d);
    (!d.is_empty()).then(|| d.into())
}

/// isbot's pattern list compiled once per process: it is one large regex and takes
/// milliseconds to build.
fn bots() -> &'static isbot::Bots {
    static BOTS: OnceLock<isbot::Bots> = OnceLock::new();
    BOTS.get_or_init(isbot::Bots::default)
}

/// isbot lowercases the user agent (an allocation) and runs one large regex over it: that is
/// most of the cost of classifying a hit. Real traffic repeats a small set of user agents, so a
/// per-thread memo of recent answers removes almost all of it without changing any answer.
fn is_bot(user_agent: &str) -> bool {
    thread_local! {
        static MEMO: RefCell<StrMemo<bool>> = RefCell::new(StrMemo::new(2048));
    }
    memoised(&MEMO, user_agent, 1024, |ua| bots().is_bot(ua))
}

/// A small direct-mapped memo of a pure function of a string: a slot holds the last key that
/// hashed to it and its value. Keys are compared in full, so an answer is never wrong, only
/// sometimes recomputed.
struct StrMemo<V> {
    slots: Vec<Option<(Box<str>, V)>>,
}

impl<V: Clone> StrMemo<V> {
    fn new(slots: usize) -> Self {
        StrMemo {
            slots: vec![None; slots.max(1)],
        }
    }

    fn get_or_insert_with(&mut self, key: &str, compute: impl FnOnce(&str) -> V) -> V {
        let slot = (fx_hash(key.as_bytes()) % self.slots.len() as u64) as usize;
        match self.slots.get_mut(slot) {
            Some(Some((k, v))) if **k == *key => v.clone(),
            Some(entry) => {
                let v = compute(key);
                *entry = Some((key.into(), v.clone()));
                v
            }
            None => compute(key),
        }
    }
}

/// Looks `key` up in a thread's memo; keys longer than `max_len` are rare, so not kept.
fn memoised<V: Clone + 'static>(
    memo: &'static std::thread::LocalKey<RefCell<StrMemo<V>>>,
    key: &str,
    max_len: usize,
    compute: impl FnOnce(&str) -> V,
) -> V {
    if key.len() > max_len {
        return compute(key);
    }
    // The memo is never borrowed twice on one thread; if it were, computing is still right.
    memo.with(|m| match m.try_borrow_mut() {
        Ok(mut m) => m.get_or_insert_with(key, compute),
        Err(_) => compute(key),
    })
}
