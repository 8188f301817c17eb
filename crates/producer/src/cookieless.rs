//! Cookieless visitor ids (`POST /v1/events?cookieless=1`, t.js `data-consent="cookieless"`):
//! the browser stores nothing and sends no `anonymous_id`; the collector computes one as
//! HMAC-SHA256(daily salt, site ‖ truncated IP ‖ User-Agent), the first 16 bytes shaped as a
//! UUID of version 8 (so the pipeline takes it like any other UUID id, and a cookieless id can
//! be told from a tracker's v4 at a glance).
//!
//! The salt changes at 00:00 UTC, so one browser is one visitor for one UTC day at most. Two
//! ways to get it (`cookieless.secret`):
//!
//! - unset (the default): a random salt per UTC day, in this collector's memory only. It is
//!   never written anywhere and is replaced on the first request of the next day, so once a
//!   day is over nobody (not even the operator) can link its ids to an IP and a browser again.
//!   Collectors do not share it: behind a load balancer without client-IP affinity one visitor
//!   becomes a visitor per collector, and a restart starts a new visitor for everyone.
//! - set: the salt of a day is HMAC-SHA256(secret, the UTC date), the same in every collector
//!   and across restarts. The price is that the secret is kept: whoever holds it, an IP and a
//!   User-Agent can recompute the ids of any past day, so the ids are pseudonymous, not
//!   anonymous, for as long as the secret lives.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use touchstream_model::time::DAY_MS;

/// `[producer.cookieless]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookielessConfig {
    /// Derive the daily salt from this secret and the UTC date (every collector agrees)
    /// instead of a random salt kept in this collector's memory. At least 16 bytes.
    pub secret: Option<String>,
    /// Test builds only (debug assertions on; the key is unknown in release builds): a file
    /// holding a Unix time in milliseconds that replaces the clock choosing the salt's day,
    /// read on every cookieless request, so a test can move the collector across midnight.
    #[cfg(debug_assertions)]
    pub test_clock_file: Option<std::path::PathBuf>,
}

impl CookielessConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(s) = &self.secret {
            anyhow::ensure!(
                s.len() >= 16,
                "cookieless.secret must be at least 16 bytes (it is {}); leave it out for a random salt per day in memory",
                s.len()
            );
        }
        Ok(())
    }
}

/// The clock that decides the salt's day: epoch milliseconds, UTC.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

enum Salt {
    /// The day (days since 1970-01-01 UTC) and its salt.
    Random(Mutex<Option<(i64, [u8; 32])>>),
    Secret(Vec<u8>),
}

/// Computes cookieless ids.
pub struct VisitorIds {
    salt: Salt,
    clock: Clock,
}

impl VisitorIds {
    pub fn new(cfg: &CookielessConfig) -> Self {
        #[cfg(debug_assertions)]
        if let Some(path) = cfg.test_clock_file.clone() {
            return Self::with_clock(cfg, Arc::new(move || file_clock(&path)));
        }
        Self::with_clock(cfg, Arc::new(touchstream_model::time::now_ms))
    }

    pub fn with_clock(cfg: &CookielessConfig, clock: Clock) -> Self {
        let salt = match &cfg.secret {
            Some(secret) => Salt::Secret(secret.as_bytes().to_vec()),
            None => Salt::Random(Mutex::new(None)),
        };
        Self { salt, clock }
    }

    /// The salt of `day`. A random one is made on the first request of a day and replaces
    /// the day before's: at most one salt exists at a time.
    fn salt(&self, day: i64) -> [u8; 32] {
        match &self.salt {
            Salt::Secret(secret) => {
                // The UTC date as days since 1970-01-01.
                let day = day.to_string();
                hmac_sha256(secret, &[b"touchstream cookieless salt\0", day.as_bytes()])
            }
            Salt::Random(current) => {
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                match *current {
                    Some((d, salt)) if d == day => salt,
                    // A request stamped just before midnight that arrives after a newer one
                    // gets a salt of its own rather than bringing yesterday's back.
                    Some((d, _)) if d > day => rand::random(),
                    _ => {
                        let salt = rand::random();
                        *current = Some((day, salt));
                        salt
                    }
                }
            }
        }
    }

    /// The anonymous id of a browser: `ip` already truncated, `user_agent` as sent (empty when
    /// there is none).
    pub fn id(&self, site_id: &str, ip: &str, user_agent: &str) -> String {
        let day = (self.clock)().div_euclid(DAY_MS);
        let salt = self.salt(day);
        let mut fields: Vec<u8> = Vec::with_capacity(site_id.len() + ip.len() + user_agent.len());
        // Length-prefixed, so no two different triples hash the same bytes.
        for f in [site_id, ip, user_agent] {
            fields.extend_from_slice(&(f.len() as u32).to_be_bytes());
            fields.extend_from_slice(f.as_bytes());
        }
        let mac = hmac_sha256(&salt, &[&fields]);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&mac[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
        uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
    }
}

#[cfg(debug_assertions)]
fn file_clock(path: &std::path::Path) -> i64 {
    match std::fs::read_to_string(path).map(|t| t.trim().parse::<i64>()) {
        Ok(Ok(ms)) => ms,
        other => {
            tracing::warn!(path = %path.display(), ?other, "cookieless.test_clock_file unreadable: using the real clock");
            touchstream_model::time::now_ms()
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1, 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// A clock the test moves.
    fn clock(at: &Arc<AtomicI64>) -> Clock {
        let at = at.clone();
        Arc::new(move || at.load(Ordering::SeqCst))
    }

    const MIDNIGHT: i64 = 1_795_651_200_000; // 2026-11-24T00:00:00Z

    #[test]
    fn random_salt_keeps_a_visitor_for_the_day_and_rotates_at_midnight() {
        let at = Arc::new(AtomicI64::new(MIDNIGHT - 3_600_000));
        let ids = VisitorIds::with_clock(&CookielessConfig::default(), clock(&at));
        let ua = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131";
        let a = ids.id("shop", "203.0.113.0", ua);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 8, "{a}");
        assert_eq!(u.hyphenated().to_string(), a, "canonical spelling");
        at.store(MIDNIGHT - 1, Ordering::SeqCst);
        assert_eq!(
            ids.id("shop", "203.0.113.0", ua),
            a,
            "same day, same visitor"
        );
        // Every input counts.
        assert_ne!(ids.id("other", "203.0.113.0", ua), a);
        assert_ne!(ids.id("shop", "198.51.100.0", ua), a);
        assert_ne!(ids.id("shop", "203.0.113.0", "Firefox"), a);
        at.store(MIDNIGHT, Ordering::SeqCst);
        let b = ids.id("shop", "203.0.113.0", ua);
        assert_ne!(b, a, "a new day, a new visitor");
        at.store(MIDNIGHT + 20 * 3_600_000, Ordering::SeqCst);
        assert_eq!(ids.id("shop", "203.0.113.0", ua), b);
        // Yesterday's salt is gone: a late request of yesterday does not get yesterday's id.
        at.store(MIDNIGHT - 1, Ordering::SeqCst);
        assert_ne!(ids.id("shop", "203.0.113.0", ua), a);
        // Two collectors with random salts do not agree.
        let other = VisitorIds::with_clock(&CookielessConfig::default(), clock(&at));
        at.store(MIDNIGHT + 1, Ordering::SeqCst);
        assert_ne!(other.id("shop", "203.0.113.0", ua), b);
    }

    #[test]
    fn a_secret_salt_is_shared_by_collectors_and_still_rotates() {
        let cfg = CookielessConfig {
            secret: Some("0123456789abcdef-secret".into()),
            ..CookielessConfig::default()
        };
        let at = Arc::new(AtomicI64::new(MIDNIGHT - 1));
        let (one, two) = (
            VisitorIds::with_clock(&cfg, clock(&at)),
            VisitorIds::with_clock(&cfg, clock(&at)),
        );
        let a = one.id("shop", "2001:db8:abcd::", "UA");
        assert_eq!(two.id("shop", "2001:db8:abcd::", "UA"), a);
        at.store(MIDNIGHT, Ordering::SeqCst);
        let b = one.id("shop", "2001:db8:abcd::", "UA");
        assert_ne!(b, a);
        assert_eq!(two.id("shop", "2001:db8:abcd::", "UA"), b);
        let other_secret = CookielessConfig {
            secret: Some("another-secret-of-16".into()),
            ..CookielessConfig::default()
        };
        assert_ne!(
            VisitorIds::with_clock(&other_secret, clock(&at)).id("shop", "2001:db8:abcd::", "UA"),
            b
        );
    }

    #[test]
    fn a_short_secret_is_refused_by_name() {
        let e = CookielessConfig {
            secret: Some("short".into()),
            ..CookielessConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("cookieless.secret"), "{e}");
    }
}
