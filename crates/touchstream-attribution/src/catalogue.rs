//! The source catalogue: `schemas/sources/catalogue.toml` loaded into hash maps keyed by host
//! suffix, app id, utm_source alias and GA4 source name, so classifying a hit costs a handful of
//! hash lookups and no regexes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::channel::SourceCategory;

/// The catalogue compiled into the crate.
const BUILTIN_TOML: &str = include_str!("../../../schemas/sources/catalogue.toml");
const BUILTIN_ORIGIN: &str = "built-in schemas/sources/catalogue.toml";
/// The only file format version this code reads.
const FORMAT_VERSION: u32 = 1;

/// Why a catalogue could not be loaded. Every message names the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(
        "cannot read the source catalogue {path}: {source}; check the path (or leave the override out to use the built-in catalogue)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the source catalogue {origin} is not in the catalogue format: {source}; compare it with schemas/sources/catalogue.toml"
    )]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(
        "the source catalogue {origin} is inconsistent: {problem}; fix it (the format is described at the top of schemas/sources/catalogue.toml)"
    )]
    Invalid { origin: String, problem: String },
}

/// Index of a source in [`Catalogue::sources`]; u16 keeps the host map's values small.
pub(crate) type SourceIdx = u16;

/// One canonical source.
#[derive(Clone, Debug)]
pub(crate) struct SourceInfo {
    pub(crate) id: Box<str>,
    pub(crate) category: SourceCategory,
    pub(crate) social_network: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct HostEntry {
    source: Option<SourceIdx>,
    spam: bool,
}

/// What the catalogue says about one referrer host.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostMatch<'h> {
    pub(crate) source: Option<SourceIdx>,
    pub(crate) spam: bool,
    /// The registrable domain, computed only when no catalogue entry matched.
    pub(crate) registrable: Option<&'h str>,
}

/// The catalogue of sources, ready for lookups. Cheap to clone relative to classifying traffic;
/// load it once and share it.
#[derive(Clone, Debug)]
pub struct Catalogue {
    sources: Vec<SourceInfo>,
    hosts: FastMap<HostEntry>,
    labels: FastMap<SourceIdx>,
    apps: FastMap<SourceIdx>,
    aliases: FastMap<SourceIdx>,
    ga4: FastMap<SourceCategory>,
    in_app: Vec<(Box<str>, SourceIdx)>,
    /// For each byte, the indices into `in_app` of the markers starting with it, so one pass
    /// over the user agent finds every marker.
    in_app_by_first_byte: Vec<Vec<u16>>,
}

impl Catalogue {
    /// The catalogue compiled into the crate (parsed once per process).
    pub fn builtin() -> &'static Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Catalogue::parse(BUILTIN_TOML, BUILTIN_ORIGIN)
                .expect("the built-in catalogue is checked by this crate's tests")
        })
    }

    /// Loads a replacement catalogue from a TOML file in the same format as the built-in one.
    pub fn from_path(path: &Path) -> Result<Catalogue, CatalogueError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalogue::parse(&text, &path.display().to_string())
    }

    /// Loads a catalogue from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(text, "(from a string)")
    }

    /// Number of sources (social networks, search engines, AI assistants, webmail ...).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the catalogue has no source at all.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The canonical ids of the sources that count as social networks (`social_network` is set
    /// for them), in file order.
    pub fn social_networks(&self) -> impl Iterator<Item = &str> {
        self.sources
            .iter()
            .filter(|s| s.social_network)
            .map(|s| &*s.id)
    }

    fn parse(text: &str, origin: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile = toml::from_str(text).map_err(|source| CatalogueError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        Builder::new(origin).build(file)
    }

    pub(crate) fn source(&self, idx: SourceIdx) -> &SourceInfo {
        &self.sources[usize::from(idx)]
    }

    /// Matches a lowercase host by suffix on label boundaries; the most specific entry wins. Only
    /// when nothing matches is the public-suffix list consulted, for `label.*` entries and for
    /// the registrable domain the caller needs as the source.
    pub(crate) fn lookup_host<'h>(&self, host: &'h str) -> HostMatch<'h> {
        let mut found = HostMatch::default();
        let mut rest = host;
        loop {
            if let Some(entry) = self.hosts.get(rest) {
                if found.source.is_none() {
                    found.source = entry.source;
                }
                found.spam |= entry.spam;
            }
            match rest.find('.') {
                Some(dot) => rest = &rest[dot + 1..],
                None => break,
            }
        }
        if found.source.is_none()
            && let Some(domain) = psl::domain(host.as_bytes())
        {
            // psl hands back sub-slices of `host`; `get` keeps this panic-free regardless.
            let domain_len = domain.as_bytes().len();
            let registrable = host
                .len()
                .checked_sub(domain_len)
                .and_then(|start| host.get(start..));
            found.registrable = registrable;
            let suffix = domain.suffix();
            let label_len = domain_len.checked_sub(suffix.as_bytes().len() + 1);
            if let (true, Some(registrable), Some(label_len)) =
                (suffix.is_known(), registrable, label_len)
            {
                found.source = registrable
                    .get(..label_len)
                    .and_then(|label| self.labels.get(label))
                    .copied();
            }
        }
        found
    }

    pub(crate) fn lookup_app(&self, app_id: &str) -> Option<SourceIdx> {
        self.apps.get(app_id).copied()
    }

    pub(crate) fn lookup_alias(&self, utm_source: &str) -> Option<SourceIdx> {
        self.aliases.get(utm_source).copied()
    }

    pub(crate) fn ga4_category(&self, source: &str) -> Option<SourceCategory> {
        self.ga4.get(source).copied()
    }

    /// The first marker in file order that occurs in the user agent.
    pub(crate) fn in_app_browser(&self, user_agent: &str) -> Option<SourceIdx> {
        let ua = user_agent.as_bytes();
        let mut best: Option<u16> = None;
        for (at, &byte) in ua.iter().enumerate() {
            for &m in &self.in_app_by_first_byte[usize::from(byte)] {
                if best.is_some_and(|b| b <= m) {
                    continue;
                }
                let marker = self.in_app[usize::from(m)].0.as_bytes();
                if ua[at..].starts_with(marker) {
                    best = Some(m);
                }
            }
        }
        best.map(|m| self.in_app[usize::from(m)].1)
    }
}

// ---------------------------------------------------------------------------------- file format

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    version: u32,
    #[serde(default)]
    source: Vec<SourceSpec>,
    #[serde(default)]
    in_app_browser: Vec<InAppSpec>,
    #[serde(default)]
    ga4: Ga4Lists,
    #[serde(default)]
    referrer_spam: SpamSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    id: String,
    kind: SourceCategory,
    social_network: Option<bool>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InAppSpec {
    marker: String,
    source: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Ga4Lists {
    #[serde(default)]
    shopping: Vec<String>,
    #[serde(default)]
    search: Vec<String>,
    #[serde(default)]
    social: Vec<String>,
    #[serde(default)]
    video: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SpamSpec {
    #[serde(default)]
    hosts: Vec<String>,
}

// ---------------------------------------------------------------------------------- validation

struct Builder<'o> {
    origin: &'o str,
    catalogue: Catalogue,
}

impl<'o> Builder<'o> {
    fn new(origin: &'o str) -> Self {
        Builder {
            origin,
            catalogue: Catalogue {
                sources: Vec::new(),
                hosts: FastMap::default(),
                labels: FastMap::default(),
                apps: FastMap::default(),
                aliases: FastMap::default(),
                ga4: FastMap::default(),
                in_app: Vec::new(),
                in_app_by_first_byte: vec![Vec::new(); 256],
            },
        }
    }

    fn invalid(&self, problem: String) -> CatalogueError {
        CatalogueError::Invalid {
            origin: self.origin.to_owned(),
            problem,
        }
    }

    fn build(mut self, file: CatalogueFile) -> Result<Catalogue, CatalogueError> {
        if file.version != FORMAT_VERSION {
            return Err(self.invalid(format!(
                "version = {} but this build reads version = {FORMAT_VERSION}",
                file.version
            )));
        }
        if file.source.len() > usize::from(SourceIdx::MAX) {
            return Err(self.invalid(format!(
                "{} sources, more than the {} this build supports",
                file.source.len(),
                SourceIdx::MAX
            )));
        }
        for spec in file.source {
            self.add_source(spec)?;
        }
        for host in file.referrer_spam.hosts {
            let host = self.host_key(&host, "referrer_spam")?;
            if self
                .catalogue
                .hosts
                .get(&*host)
                .is_some_and(|e| e.source.is_some())
            {
                return Err(self.invalid(format!(
                    "referrer_spam host {host:?} is also a source's host; keep it in one place"
                )));
            }
            self.catalogue.hosts.entry(host).or_default().spam = true;
        }
        for spec in file.in_app_browser {
            if spec.marker.trim().is_empty() {
                return Err(self.invalid(format!(
                    "an in_app_browser entry for {:?} has an empty marker",
                    spec.source
                )));
            }
            let Some(idx) = self.catalogue.aliases.get(spec.source.as_str()).copied() else {
                return Err(self.invalid(format!(
                    "in_app_browser marker {:?} names source {:?}, which no [[source]] defines",
                    spec.marker, spec.source
                )));
            };
            let position = u16::try_from(self.catalogue.in_app.len())
                .map_err(|_| self.invalid("too many in_app_browser markers".to_owned()))?;
            if let Some(first) = spec.marker.bytes().next() {
                self.catalogue.in_app_by_first_byte[usize::from(first)].push(position);
            }
            self.catalogue.in_app.push((spec.marker.into(), idx));
        }
        let lists = [
            (file.ga4.shopping, SourceCategory::Shopping, "shopping"),
            (file.ga4.search, SourceCategory::Search, "search"),
            (file.ga4.social, SourceCategory::Social, "social"),
            (file.ga4.video, SourceCategory::Video, "video"),
        ];
        for (names, category, list) in lists {
            for name in names {
                let key = normalise(&name);
                if key.is_empty() {
                    return Err(self.invalid(format!("ga4.{list} has an empty name")));
                }
                match self.catalogue.ga4.entry(key.into()) {
                    Entry::Vacant(v) => {
                        v.insert(category);
                    }
                    Entry::Occupied(o) if *o.get() != category => {
                        let problem = format!(
                            "{:?} is on two GA4 lists ({list} and {:?}); keep it on one",
                            o.key(),
                            o.get()
                        );
                        return Err(self.invalid(problem));
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
        Ok(self.catalogue)
    }

    fn add_source(&mut self, spec: SourceSpec) -> Result<(), CatalogueError> {
        let id = normalise(&spec.id);
        if id.is_empty() || id != spec.id {
            return Err(self.invalid(format!(
                "source id {:?} must be non-empty, lowercase and without surrounding spaces",
                spec.id
            )));
        }
        if self.catalogue.sources.iter().any(|s| *s.id == *id) {
            return Err(self.invalid(format!("source id {id:?} is defined twice")));
        }
        let idx = SourceIdx::try_from(self.catalogue.sources.len())
            .map_err(|_| self.invalid("too many sources".to_owned()))?;
        let social_network = spec.social_network.unwrap_or(matches!(
            spec.kind,
            SourceCategory::Social | SourceCategory::Video
        ));
        self.catalogue.sources.push(SourceInfo {
            id: id.clone().into(),
            category: spec.kind,
            social_network,
        });
        self.add_alias(&id, idx, &id)?;
        for host in &spec.hosts {
            if let Some(label) = host.strip_suffix(".*") {
                let label = normalise(label);
                if label.is_empty() || label.contains(['.', '/', ':', ' ']) {
                    return Err(self.invalid(format!(
                        "host pattern {host:?} of {id:?} must be one label followed by .* (like google.*)"
                    )));
                }
                self.add_alias(&label, idx, &id)?;
                insert_unique(&mut self.catalogue.labels, label.into(), idx)
                    .map_err(|key| self.invalid(format!("host pattern {key}.* is used twice")))?;
                continue;
            }
            let key = self.host_key(host, &id)?;
            self.add_alias(&key, idx, &id)?;
            match self.catalogue.hosts.entry(key) {
                Entry::Vacant(v) => {
                    v.insert(HostEntry {
                        source: Some(idx),
                        spam: false,
                    });
                }
                Entry::Occupied(o) if o.get().source == Some(idx) => {}
                Entry::Occupied(o) => {
                    let problem = format!(
                        "host {:?} is listed for two sources; keep it under one",
                        o.key()
                    );
                    return Err(self.invalid(problem));
                }
            }
        }
        for app in &spec.apps {
            let key = normalise(app);
            if key.is_empty() || key.contains(['/', ' ', ':']) {
                return Err(self.invalid(format!(
                    "app id {app:?} of {id:?} must look like com.example.app"
                )));
            }
            if let Some(&other) = self.catalogue.apps.get(key.as_str())
                && other != idx
            {
                return Err(self.invalid(format!(
                    "app id {key:?} is listed for two sources; keep it under one"
                )));
            }
            self.catalogue.apps.insert(key.into(), idx);
        }
        for alias in &spec.aliases {
            let key = normalise(alias);
            if key.is_empty() {
                return Err(self.invalid(format!("source {id:?} has an empty alias")));
            }
            self.add_alias(&key, idx, &id)?;
        }
        Ok(())
    }

    fn add_alias(&mut self, key: &str, idx: SourceIdx, id: &str) -> Result<(), CatalogueError> {
        match self.catalogue.aliases.get(key) {
            Some(&other) if other != idx => Err(self.invalid(format!(
                "{key:?} names both {:?} and {id:?}; keep it under one source",
                self.catalogue.sources[usize::from(other)].id
            ))),
            Some(_) => Ok(()),
            None => {
                self.catalogue.aliases.insert(key.into(), idx);
                Ok(())
            }
        }
    }

    fn host_key(&self, host: &str, owner: &str) -> Result<Box<str>, CatalogueError> {
        let key = normalise(host);
        let key = key.trim_end_matches('.');
        if key.is_empty() || key.contains(['/', ':', ' ', '*', '?', '#', '@']) {
            return Err(self.invalid(format!(
                "host {host:?} of {owner:?} must be a bare host name like example.com (no scheme, port or path)"
            )));
        }
        Ok(key.into())
    }
}

fn insert_unique(
    map: &mut FastMap<SourceIdx>,
    key: Box<str>,
    idx: SourceIdx,
) -> Result<(), Box<str>> {
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert(idx);
            Ok(())
        }
        Entry::Occupied(o) => Err(o.key().clone()),
    }
}

fn normalise(s: &str) -> String {
    s.trim().to_lowercase()
}

// ---------------------------------------------------------------------------------- hashing

/// Maps from the catalogue's keys. The keys are fixed at load time and lookups never insert, so
/// hash flooding by hostile referrers is impossible; a multiply-rotate hash (FxHash) is several
/// times faster than SipHash on short host names, which matters at millions of hits per second.
type FastMap<V> = HashMap<Box<str>, V, BuildHasherDefault<FxHasher>>;

/// FxHash of a byte string, for the classifier's user-agent memo.
pub(crate) fn fx_hash(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.finish()
}

#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builtin_catalogue_loads_and_is_big_enough() {
        let c = Catalogue::builtin();
        assert!(
            c.social_networks().count() >= 30,
            "the catalogue promises at least 30 social networks (README, Design)"
        );
        for id in [
            "facebook",
            "instagram",
            "x",
            "linkedin",
            "youtube",
            "tiktok",
            "pinterest",
            "reddit",
            "snapchat",
            "threads",
            "bluesky",
            "mastodon",
            "whatsapp",
            "telegram",
            "discord",
            "quora",
            "tumblr",
            "hackernews",
            "medium",
            "vk",
        ] {
            assert!(c.social_networks().any(|s| s == id), "{id} missing");
        }
        for id in [
            "google",
            "bing",
            "duckduckgo",
            "yahoo",
            "yandex",
            "baidu",
            "ecosia",
            "brave",
            "chatgpt",
            "perplexity",
            "gemini",
            "claude",
            "copilot",
        ] {
            assert!(c.lookup_alias(id).is_some(), "{id} missing");
        }
    }

    #[test]
    fn most_specific_host_wins_and_patterns_use_the_public_suffix_list() {
        let c = Catalogue::builtin();
        let id = |h: &str| c.lookup_host(h).source.map(|i| c.source(i).id.to_string());
        assert_eq!(id("mail.google.com").as_deref(), Some("gmail"));
        assert_eq!(id("gemini.google.com").as_deref(), Some("gemini"));
        assert_eq!(id("www.google.co.uk").as_deref(), Some("google"));
        assert_eq!(id("google.com.br").as_deref(), Some("google"));
        assert_eq!(id("l.facebook.com").as_deref(), Some("facebook"));
        assert_eq!(id("notgoogle.com"), None);
        assert_eq!(id("google.example.com"), None);
        let m = c.lookup_host("blog.partner.org");
        assert_eq!(m.registrable, Some("partner.org"));
        assert_eq!(
            c.lookup_host("news.bbc.co.uk").registrable,
            Some("bbc.co.uk")
        );
        assert!(c.lookup_host("x.semalt.com").spam);
    }

    #[test]
    fn the_repository_file_loads_by_path_too() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/sources/catalogue.toml");
        let c = Catalogue::from_path(&path).unwrap();
        assert_eq!(c.len(), Catalogue::builtin().len());
        assert!(!c.is_empty());
    }

    #[test]
    fn in_app_markers_follow_file_order_not_position() {
        let c = Catalogue::builtin();
        let id = |ua: &str| c.in_app_browser(ua).map(|i| c.source(i).id.to_string());
        assert_eq!(
            id("[FBAN/FBIOS;FBAV/1] Instagram 300.0").as_deref(),
            Some("instagram")
        );
        assert_eq!(
            id("Instagram 300 Barcelona 289.0").as_deref(),
            Some("threads")
        );
        assert_eq!(
            id("Mozilla/5.0 [FB_IAB/FB4A;FBAV/442.0]").as_deref(),
            Some("facebook")
        );
        assert_eq!(id("Mozilla/5.0 Safari/604.1"), None);
        assert_eq!(id(""), None);
        assert_eq!(id("FBA"), None);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = Catalogue::from_toml_str("version = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("version = 2"), "{err}");
        let dup = r#"
            version = 1
            [[source]]
            id = "a"
            kind = "social"
            hosts = ["a.com"]
            [[source]]
            id = "b"
            kind = "social"
            hosts = ["a.com"]
        "#;
        let err = Catalogue::from_toml_str(dup).unwrap_err().to_string();
        assert!(err.contains("\"a.com\""), "{err}");
        let err = Catalogue::from_toml_str("version = 1\n[[source]]\nid = \"a\"\nkind = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the catalogue format"), "{err}");
        let err = Catalogue::from_path(Path::new("/nonexistent/catalogue.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/catalogue.toml"), "{err}");
    }
}
