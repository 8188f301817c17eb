//! Which site a request belongs to, and whether it may write there.
//!
//! A request names its site with a write key (HTTP Basic user name, `writeKey` in a Segment
//! body, or `?write_key=` on `/v1/events`, the pixel and t.js's requests); without one, a
//! browser request belongs to the site whose hosts include its `Origin` (or `Referer`) host,
//! and anything else to the `default` site. A client-side key is public, so it only works
//! from its own site's pages: used from another site's page it is refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::http::header::{AUTHORIZATION, ORIGIN, REFERER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use touchstream_model::site::bare_host;
use touchstream_model::{DEFAULT_SITE, SiteConfig};

use crate::ProducerConfig;
use crate::segment::mapping::Mapping;

/// Whether a key may be seen by anyone (a browser or app) or only by a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Client,
    Server,
    /// Erasure only (`POST /v1/forget`).
    Secret,
}

#[derive(Debug)]
pub struct Site {
    pub id: String,
    pub config: SiteConfig,
    pub honour_dnt: bool,
    cors: Cors,
    /// The built-in Segment mapping with this site's `track` rules on top.
    pub mapping: Arc<Mapping>,
}

#[derive(Debug)]
enum Cors {
    Any,
    List(Vec<String>),
    /// Origins on the site's hosts.
    Hosts,
}

impl Site {
    fn new(config: SiteConfig, global: &ProducerConfig, mapping: &Arc<Mapping>) -> Self {
        let origins = if config.cors_origins.is_empty() && config.hosts.is_empty() {
            &global.cors_origins
        } else {
            &config.cors_origins
        };
        let cors = if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else if origins.is_empty() {
            Cors::Hosts
        } else {
            Cors::List(
                origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            )
        };
        let mapping = if config.track.is_empty() {
            mapping.clone()
        } else {
            Arc::new(mapping.with_overrides(&config.track))
        };
        Self {
            id: config.id.clone(),
            honour_dnt: config
                .honour_do_not_track
                .unwrap_or(global.honour_do_not_track),
            cors,
            mapping,
            config,
        }
    }

    /// Whether a browser on `origin` (`https://shop.example`) may send to this site.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.cors {
            Cors::Any => true,
            Cors::List(list) => {
                let o = origin.trim_end_matches('/').to_ascii_lowercase();
                list.contains(&o)
            }
            Cors::Hosts => bare_host(origin).is_some_and(|h| self.config.owns_host(&h)),
        }
    }
}

/// Every configured site, by key and by host.
#[derive(Debug)]
pub struct Sites {
    sites: Vec<Arc<Site>>,
    keys: HashMap<String, (usize, KeyKind)>,
    default: usize,
}

/// Why a request may not write where it asked to.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(
        "missing write key: send it as the HTTP Basic user name (empty password) or as writeKey in the body"
    )]
    MissingKey,
    #[error("unknown write key {0:?}")]
    UnknownKey(String),
    #[error("the Authorization header is not HTTP Basic with the write key as user name")]
    BadAuthorization,
    #[error("write key of site {site:?} used from {host:?}, which is not one of that site's hosts")]
    WrongHost { site: String, host: String },
    #[error("origin {origin:?} may not send events to site {site:?} (its cors_origins)")]
    OriginNotAllowed { site: String, origin: String },
    #[error("a secret key does not write events: send them with a write key of the site")]
    SecretKeyForEvents,
    #[error(
        "missing secret key: POST /v1/forget needs one of the site's secret_keys as a Bearer token or the HTTP Basic user name"
    )]
    MissingSecretKey,
    #[error(
        "a {0} write key cannot erase: POST /v1/forget needs one of the site's secret_keys (server-side only)"
    )]
    NotSecret(&'static str),
}

impl IntoResponse for SiteError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::MissingKey
            | Self::UnknownKey(_)
            | Self::BadAuthorization
            | Self::MissingSecretKey => StatusCode::UNAUTHORIZED,
            Self::WrongHost { .. }
            | Self::OriginNotAllowed { .. }
            | Self::SecretKeyForEvents
            | Self::NotSecret(_) => StatusCode::FORBIDDEN,
        };
        let text = self.to_string();
        (
            status,
            Json(serde_json::json!({ "success": false, "error": text })),
        )
            .into_response()
    }
}

/// The site a request was found to belong to.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub site: Arc<Site>,
    /// `None`: no key was given (the site came from the host, or is the default).
    pub key: Option<KeyKind>,
}

impl Sites {
    pub fn new(cfg: &ProducerConfig, mapping: Arc<Mapping>) -> Self {
        let mut configs = cfg.sites.clone();
        if !configs.iter().any(|s| s.id == DEFAULT_SITE) {
            configs.push(SiteConfig::default_site());
        }
        let sites: Vec<Arc<Site>> = configs
            .into_iter()
            .map(|c| Arc::new(Site::new(c, cfg, &mapping)))
            .collect();
        let mut keys = HashMap::new();
        for (i, s) in sites.iter().enumerate() {
            for k in &s.config.write_keys {
                keys.insert(k.clone(), (i, KeyKind::Client));
            }
            for k in &s.config.server_write_keys {
                keys.insert(k.clone(), (i, KeyKind::Server));
            }
            for k in &s.config.secret_keys {
                keys.insert(k.clone(), (i, KeyKind::Secret));
            }
        }
        let default = sites
            .iter()
            .position(|s| s.id == DEFAULT_SITE)
            .unwrap_or_default();
        Self {
            sites,
            keys,
            default,
        }
    }

    pub fn by_key(&self, key: &str) -> Option<(Arc<Site>, KeyKind)> {
        self.keys
            .get(key)
            .map(|(i, kind)| (self.sites[*i].clone(), *kind))
    }

    pub fn by_host(&self, host: &str) -> Option<Arc<Site>> {
        self.sites
            .iter()
            .find(|s| s.config.owns_host(host))
            .cloned()
    }

    pub fn default_site(&self) -> Arc<Site> {
        self.sites[self.default].clone()
    }

    /// Whether some site accepts browsers from anywhere (`cors_origins = ["*"]`).
    pub fn any_allows_every_origin(&self) -> bool {
        self.sites.iter().any(|s| matches!(s.cors, Cors::Any))
    }

    /// For the CORS layer: whether any site accepts browsers from `origin` (the handler then
    /// checks the one the request names).
    pub fn any_allows_origin(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|o| self.sites.iter().any(|s| s.allows_origin(o)))
    }

    /// The site of a request that must name one with a write key (the Segment routes):
    /// `body_key` is the `writeKey` of the body, if any.
    pub fn require_key(
        &self,
        headers: &HeaderMap,
        body_key: Option<&str>,
    ) -> Result<Resolved, SiteError> {
        let key = basic_user(headers)?
            .or_else(|| body_key.map(str::to_owned))
            .filter(|k| !k.is_empty())
            .ok_or(SiteError::MissingKey)?;
        self.with_key(headers, &key)
    }

    /// The site of a request to `/v1/events`, `/v1/import`, the pixel: the key if one is
    /// given (`query_key` or HTTP Basic), else the browser's host, else the default site.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        query_key: Option<&str>,
    ) -> Result<Resolved, SiteError> {
        let key = match query_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(k.to_owned()),
            // These routes never needed an Authorization header: one that is not Basic (a
            // proxy's own) is not taken for a key.
            None => basic_user(headers).ok().flatten().filter(|k| !k.is_empty()),
        };
        if let Some(key) = key {
            return self.with_key(headers, &key);
        }
        let site = browser_host(headers)
            .and_then(|h| self.by_host(&h))
            .unwrap_or_else(|| self.default_site());
        check_origin(&site, headers)?;
        Ok(Resolved { site, key: None })
    }

    /// The site an erasure request (`POST /v1/forget`) is for: the one whose secret key it
    /// carries (`Authorization: Bearer KEY`, or HTTP Basic with the key as user name). A write
    /// key, client- or server-side, is refused.
    pub fn secret_site(&self, headers: &HeaderMap) -> Result<Arc<Site>, SiteError> {
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_owned());
        let key = match bearer {
            Some(k) => Some(k),
            None => basic_user(headers)?,
        }
        .filter(|k| !k.is_empty())
        .ok_or(SiteError::MissingSecretKey)?;
        let (site, kind) = self
            .by_key(&key)
            .ok_or_else(|| SiteError::UnknownKey(shorten(&key)))?;
        match kind {
            KeyKind::Secret => Ok(site),
            KeyKind::Client => Err(SiteError::NotSecret("client-side")),
            KeyKind::Server => Err(SiteError::NotSecret("server-side")),
        }
    }

    fn with_key(&self, headers: &HeaderMap, key: &str) -> Result<Resolved, SiteError> {
        let (site, kind) = self
            .by_key(key)
            .ok_or_else(|| SiteError::UnknownKey(shorten(key)))?;
        if kind == KeyKind::Secret {
            return Err(SiteError::SecretKeyForEvents);
        }
        if kind == KeyKind::Client
            && !site.config.hosts.is_empty()
            && let Some(host) = browser_host(headers)
            && !site.config.owns_host(&host)
        {
            return Err(SiteError::WrongHost {
                site: site.id.clone(),
                host,
            });
        }
        check_origin(&site, headers)?;
        Ok(Resolved {
            site,
            key: Some(kind),
        })
    }
}

fn check_origin(site: &Site, headers: &HeaderMap) -> Result<(), SiteError> {
    match headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        // `null` is what sandboxed frames and file: pages send: nothing to check against.
        Some(origin) if origin != "null" && !site.allows_origin(origin) => {
            Err(SiteError::OriginNotAllowed {
                site: site.id.clone(),
                origin: origin.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// The host of the page a browser request came from: `Origin`, else `Referer`.
fn browser_host(headers: &HeaderMap) -> Option<String> {
    [ORIGIN, REFERER]
        .iter()
        .filter_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .find(|v| *v != "null")
        .and_then(bare_host)
}

/// The user name of an HTTP Basic `Authorization` header (Segment's write key).
fn basic_user(headers: &HeaderMap) -> Result<Option<String>, SiteError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| SiteError::BadAuthorization)?;
    let (scheme, token) = text
        .trim()
        .split_once(' ')
        .ok_or(SiteError::BadAuthorization)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(SiteError::BadAuthorization);
    }
    let decoded = decode_base64(token.trim()).ok_or(SiteError::BadAuthorization)?;
    let decoded = String::from_utf8(decoded).map_err(|_| SiteError::BadAuthorization)?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    Ok(Some(user.to_owned()))
}

/// Standard base64 with or without padding.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().take_while(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A key quoted in an answer: enough to recognise it, not a whole long secret.
fn shorten(key: &str) -> String {
    let mut s: String = key.chars().take(12).collect();
    if s.len() < key.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sites() -> Sites {
        let cfg = ProducerConfig {
            sites: vec![
                SiteConfig {
                    id: "a".into(),
                    hosts: vec!["a.example".into()],
                    write_keys: vec!["ka".into()],
                    server_write_keys: vec!["sa".into()],
                    secret_keys: vec!["xa".into()],
                    ..SiteConfig::default()
                },
                SiteConfig {
                    id: "b".into(),
                    hosts: vec!["b.example".into()],
                    write_keys: vec!["kb".into()],
                    cors_origins: vec!["https://b.example".into()],
                    honour_do_not_track: Some(true),
                    ..SiteConfig::default()
                },
            ],
            ..ProducerConfig::default()
        };
        Sites::new(&cfg, Arc::new(Mapping::builtin().clone()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn basic(key: &str) -> String {
        // "ka:" and "sa:" in base64.
        match key {
            "ka" => "Basic a2E6".into(),
            "sa" => "Basic c2E6".into(),
            "nope" => "Basic bm9wZTo=".into(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn keys_name_sites_and_client_keys_stay_on_their_hosts() {
        let s = sites();
        let r = s
            .require_key(&headers(&[("authorization", &basic("ka"))]), None)
            .unwrap();
        assert_eq!((r.site.id.as_str(), r.key), ("a", Some(KeyKind::Client)));
        let r = s.require_key(&HeaderMap::new(), Some("kb")).unwrap();
        assert_eq!(r.site.id, "b");
        assert!(matches!(
            s.require_key(&HeaderMap::new(), None),
            Err(SiteError::MissingKey)
        ));
        assert!(matches!(
            s.require_key(&headers(&[("authorization", &basic("nope"))]), None),
            Err(SiteError::UnknownKey(_))
        ));
        assert!(matches!(
            s.require_key(&headers(&[("authorization", "Bearer x")]), None),
            Err(SiteError::BadAuthorization)
        ));
        // Site a's browser key from a page of site b.
        let from_b = headers(&[
            ("authorization", &basic("ka")),
            ("origin", "https://www.b.example"),
        ]);
        let e = s.require_key(&from_b, None).unwrap_err();
        assert!(matches!(e, SiteError::WrongHost { .. }), "{e}");
        // A server key has no page to check.
        let r = s
            .require_key(&headers(&[("authorization", &basic("sa"))]), None)
            .unwrap();
        assert_eq!(r.key, Some(KeyKind::Server));
    }

    #[test]
    fn without_a_key_the_host_decides_and_cors_is_per_site() {
        let s = sites();
        let r = s
            .resolve(&headers(&[("referer", "https://a.example/p")]), None)
            .unwrap();
        assert_eq!(r.site.id, "a");
        assert_eq!(
            s.resolve(&HeaderMap::new(), None).unwrap().site.id,
            "default"
        );
        assert_eq!(
            s.resolve(&HeaderMap::new(), Some("kb")).unwrap().site.id,
            "b"
        );
        // b allows only its https origin; a allows its hosts; the default site allows any.
        assert!(s.sites[1].allows_origin("https://b.example"));
        assert!(!s.sites[1].allows_origin("http://b.example"));
        assert!(s.sites[0].allows_origin("http://shop.a.example:8080"));
        assert!(!s.sites[0].allows_origin("https://b.example"));
        assert!(s.default_site().allows_origin("https://anything.example"));
        let e = s
            .resolve(&headers(&[("origin", "http://b.example")]), None)
            .unwrap_err();
        assert!(matches!(e, SiteError::OriginNotAllowed { .. }), "{e}");
        assert!(s.sites[1].honour_dnt && !s.sites[0].honour_dnt);
    }

    #[test]
    fn only_a_secret_key_erases_and_it_writes_no_events() {
        let s = sites();
        let bearer = |k: &str| headers(&[("authorization", &format!("Bearer {k}"))]);
        assert_eq!(s.secret_site(&bearer("xa")).unwrap().id, "a");
        assert!(matches!(
            s.secret_site(&bearer("ka")),
            Err(SiteError::NotSecret("client-side"))
        ));
        assert!(matches!(
            s.secret_site(&bearer("sa")),
            Err(SiteError::NotSecret("server-side"))
        ));
        assert!(matches!(
            s.secret_site(&headers(&[])),
            Err(SiteError::MissingSecretKey)
        ));
        assert!(matches!(
            s.secret_site(&bearer("nope")),
            Err(SiteError::UnknownKey(_))
        ));
        assert!(matches!(
            s.resolve(&headers(&[]), Some("xa")),
            Err(SiteError::SecretKeyForEvents)
        ));
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(decode_base64("a2E6").unwrap(), b"ka:");
        assert_eq!(decode_base64("bm9wZTo=").unwrap(), b"nope:");
        assert_eq!(decode_base64("d2tfMTIzOg").unwrap(), b"wk_123:");
        assert!(decode_base64("a*b").is_none());
    }
}
