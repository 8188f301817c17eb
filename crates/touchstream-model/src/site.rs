//! Sites: the tenants of one deployment. One `[[sites]]` list at the top of the shared config
//! file describes them, and the collector and the enricher both read it (each uses what it
//! needs). This is the only definition of a site's configuration.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::event::{DEFAULT_SITE, EventType};

/// One site as configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteConfig {
    /// The `site_id` of every event of this site (no `/`).
    pub id: String,
    /// The site's own hosts (`shop.example`, `https://www.shop.example`): referrers on them or
    /// their subdomains are internal navigation, and browser requests from them belong here.
    pub hosts: Vec<String>,
    /// Client-side write keys (browsers, apps): anyone can read them, so a request made with
    /// one from a page of another site is refused and `context.ip` is not believed.
    pub write_keys: Vec<String>,
    /// Server-side write keys (a backend): `context.ip` is believed.
    pub server_write_keys: Vec<String>,
    /// Secret keys (a backend or an operator only, never a page or an app): the only keys
    /// that may erase (`POST /v1/forget`); they do not write events.
    pub secret_keys: Vec<String>,
    /// Origins allowed by CORS. Empty: the site's hosts (http and https, subdomains too).
    pub cors_origins: Vec<String>,
    /// Whether `DNT: 1` / `Sec-GPC: 1` requests are answered but not collected. Absent: the
    /// collector's `honour_do_not_track`.
    pub honour_do_not_track: Option<bool>,
    /// Segment `track` names mapped to touchstream events, on top of the built-in table
    /// (`schemas/mappings/segment.toml`); `event_type = "custom"` turns a default off.
    pub track: BTreeMap<String, TrackRule>,
}

/// What a Segment `track` call of one name becomes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRule {
    /// signup, download, purchase or custom.
    pub event_type: EventType,
    /// Used when the call's properties carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signup_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_kind: Option<String>,
}

impl TrackRule {
    pub fn check(&self, name: &str) -> Result<(), String> {
        match self.event_type {
            EventType::Signup | EventType::Download | EventType::Purchase | EventType::Custom => {
                Ok(())
            }
            other => Err(format!(
                "track {name:?}: event_type {} is not one a track call can become (signup, download, purchase or custom)",
                other.as_str()
            )),
        }
    }
}

impl SiteConfig {
    /// The site a deployment without `[[sites]]` serves.
    pub fn default_site() -> Self {
        Self {
            id: DEFAULT_SITE.to_owned(),
            ..Self::default()
        }
    }

    /// Whether `host` (no port) is one of the site's hosts or a subdomain of one.
    pub fn owns_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().filter_map(|h| bare_host(h)).any(|own| {
            host == own
                || (host.len() > own.len()
                    && host.ends_with(own.as_str())
                    && host.as_bytes()[host.len() - own.len() - 1] == b'.')
        })
    }
}

/// `https://www.shop.example:8443/x` → `www.shop.example`; `shop.example` → `shop.example`.
pub fn bare_host(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Checks a list of sites: ids present, distinct and without `/`, keys distinct across all
/// sites, track rules of a kind a track call can become.
pub fn check_sites(sites: &[SiteConfig]) -> Result<(), String> {
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    for (i, s) in sites.iter().enumerate() {
        let at = format!("sites[{i}]");
        if s.id.trim().is_empty() {
            return Err(format!("{at}.id is missing or empty"));
        }
        if s.id.contains('/') || s.id.len() > 64 {
            return Err(format!(
                "{at}.id {:?}: at most 64 characters and no '/'",
                s.id
            ));
        }
        if !ids.insert(s.id.as_str()) {
            return Err(format!("{at}.id {:?} appears twice", s.id));
        }
        for k in s
            .write_keys
            .iter()
            .chain(&s.server_write_keys)
            .chain(&s.secret_keys)
        {
            if k.trim().is_empty() {
                return Err(format!("{at} ({}): an empty write key", s.id));
            }
            if !keys.insert(k.as_str()) {
                return Err(format!(
                    "{at} ({}): write key {k:?} is given twice (each key names one site)",
                    s.id
                ));
            }
        }
        for h in &s.hosts {
            if bare_host(h).is_none() {
                return Err(format!("{at} ({}): host {h:?} names no host", s.id));
            }
        }
        for (name, rule) in &s.track {
            rule.check(name)
                .map_err(|e| format!("{at} ({}): {e}", s.id))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn site(id: &str, hosts: &[&str], keys: &[&str]) -> SiteConfig {
        SiteConfig {
            id: id.into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            write_keys: keys.iter().map(|s| s.to_string()).collect(),
            ..SiteConfig::default()
        }
    }

    #[test]
    fn hosts_match_themselves_and_subdomains_only() {
        let s = site("a", &["https://Shop.example:8443/", "blog.example"], &[]);
        assert!(s.owns_host("shop.example"));
        assert!(s.owns_host("www.shop.example"));
        assert!(s.owns_host("blog.example."));
        assert!(!s.owns_host("evilshop.example"));
        assert!(!s.owns_host("example"));
        assert_eq!(bare_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(bare_host("  "), None);
    }

    #[test]
    fn checks_ids_keys_and_rules() {
        assert!(check_sites(&[site("a", &[], &["k1"]), site("b", &[], &["k2"])]).is_ok());
        let e = check_sites(&[site("a", &[], &["k1"]), site("b", &[], &["k1"])]).unwrap_err();
        assert!(e.contains("k1"), "{e}");
        assert!(check_sites(&[site("a", &[], &[]), site("a", &[], &[])]).is_err());
        assert!(check_sites(&[site("a/b", &[], &[])]).is_err());
        assert!(check_sites(&[site("", &[], &[])]).is_err());
        let mut s = site("a", &[], &[]);
        s.track.insert(
            "Clicked".into(),
            TrackRule {
                event_type: EventType::Click,
                signup_kind: None,
                method: None,
                asset_kind: None,
            },
        );
        assert!(check_sites(&[s]).unwrap_err().contains("Clicked"));
    }
}
