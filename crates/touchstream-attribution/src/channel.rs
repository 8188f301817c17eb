//! The channel vocabulary (GA4's default channel group plus "AI Assistant") and GA4's rules for
//! turning a source/medium/campaign triple into a channel.
//!
//! The rules are GA4's, evaluated in GA4's order (the order of [`Channel::ALL`]); "AI Assistant"
//! is touchstream's addition and sits after "Paid Other" so that paid traffic stays paid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A channel, spelled exactly as the README's Design section lists it (these strings are stored in ClickHouse and
/// matched by SQL and dashboards, so they never change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    #[serde(rename = "Direct")]
    Direct,
    #[serde(rename = "Cross-network")]
    CrossNetwork,
    #[serde(rename = "Paid Shopping")]
    PaidShopping,
    #[serde(rename = "Paid Search")]
    PaidSearch,
    #[serde(rename = "Paid Social")]
    PaidSocial,
    #[serde(rename = "Paid Video")]
    PaidVideo,
    #[serde(rename = "Display")]
    Display,
    #[serde(rename = "Paid Other")]
    PaidOther,
    #[serde(rename = "Organic Shopping")]
    OrganicShopping,
    #[serde(rename = "Organic Social")]
    OrganicSocial,
    #[serde(rename = "Organic Video")]
    OrganicVideo,
    #[serde(rename = "Organic Search")]
    OrganicSearch,
    #[serde(rename = "Referral")]
    Referral,
    #[serde(rename = "Email")]
    Email,
    #[serde(rename = "Affiliates")]
    Affiliates,
    #[serde(rename = "Audio")]
    Audio,
    #[serde(rename = "SMS")]
    Sms,
    #[serde(rename = "Mobile Push Notifications")]
    MobilePushNotifications,
    #[serde(rename = "Unassigned")]
    Unassigned,
    #[serde(rename = "AI Assistant")]
    AiAssistant,
}

impl Channel {
    /// Every channel, in GA4's evaluation order, then AI Assistant (the order of the README's
    /// Design section).
    pub const ALL: [Channel; 20] = [
        Channel::Direct,
        Channel::CrossNetwork,
        Channel::PaidShopping,
        Channel::PaidSearch,
        Channel::PaidSocial,
        Channel::PaidVideo,
        Channel::Display,
        Channel::PaidOther,
        Channel::OrganicShopping,
        Channel::OrganicSocial,
        Channel::OrganicVideo,
        Channel::OrganicSearch,
        Channel::Referral,
        Channel::Email,
        Channel::Affiliates,
        Channel::Audio,
        Channel::Sms,
        Channel::MobilePushNotifications,
        Channel::Unassigned,
        Channel::AiAssistant,
    ];

    /// The exact spelling (GA4's, plus "AI Assistant"), stored in ClickHouse.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "Direct",
            Channel::CrossNetwork => "Cross-network",
            Channel::PaidShopping => "Paid Shopping",
            Channel::PaidSearch => "Paid Search",
            Channel::PaidSocial => "Paid Social",
            Channel::PaidVideo => "Paid Video",
            Channel::Display => "Display",
            Channel::PaidOther => "Paid Other",
            Channel::OrganicShopping => "Organic Shopping",
            Channel::OrganicSocial => "Organic Social",
            Channel::OrganicVideo => "Organic Video",
            Channel::OrganicSearch => "Organic Search",
            Channel::Referral => "Referral",
            Channel::Email => "Email",
            Channel::Affiliates => "Affiliates",
            Channel::Audio => "Audio",
            Channel::Sms => "SMS",
            Channel::MobilePushNotifications => "Mobile Push Notifications",
            Channel::Unassigned => "Unassigned",
            Channel::AiAssistant => "AI Assistant",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the channel names; the message lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}: use one of these names exactly: {names}", names = channel_names())]
pub struct UnknownChannel(pub String);

/// Every channel name, quoted, in order, for the error message.
fn channel_names() -> String {
    Channel::ALL
        .iter()
        .map(|c| format!("{:?}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// What the catalogue knows about a source: which of GA4's source lists it is on (or which of
/// touchstream's own categories it falls into).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceCategory {
    Search,
    Social,
    Video,
    Shopping,
    AiAssistant,
    Email,
}

/// GA4's default channel group rules, in GA4's order, plus AI Assistant after Paid Other.
///
/// `source`, `medium` and `campaign` must already be lowercased (GA4's rules are case-insensitive;
/// the classifier lowercases once so this function never allocates).
pub(crate) fn ga4_channel(
    category: Option<SourceCategory>,
    source: &str,
    medium: &str,
    campaign: Option<&str>,
) -> Channel {
    use SourceCategory as C;
    let campaign = campaign.unwrap_or("");
    if source == "(direct)" && (medium == "(none)" || medium == "(not set)") {
        return Channel::Direct;
    }
    if has(campaign, "cross-network") {
        return Channel::CrossNetwork;
    }
    let paid = is_paid_medium(medium);
    let shopping = category == Some(C::Shopping) || is_shopping_campaign(campaign);
    if paid {
        if shopping {
            return Channel::PaidShopping;
        }
        match category {
            Some(C::Search) => return Channel::PaidSearch,
            Some(C::Social) => return Channel::PaidSocial,
            Some(C::Video) => return Channel::PaidVideo,
            _ => {}
        }
    }
    if matches!(
        medium,
        "display" | "banner" | "expandable" | "interstitial" | "cpm"
    ) {
        return Channel::Display;
    }
    if paid {
        return Channel::PaidOther;
    }
    if category == Some(C::AiAssistant) {
        return Channel::AiAssistant;
    }
    if shopping {
        return Channel::OrganicShopping;
    }
    if category == Some(C::Social)
        || matches!(
            medium,
            "social" | "social-network" | "social-media" | "sm" | "social network" | "social media"
        )
    {
        return Channel::OrganicSocial;
    }
    if category == Some(C::Video) || has(medium, "video") {
        return Channel::OrganicVideo;
    }
    if category == Some(C::Search) || medium == "organic" {
        return Channel::OrganicSearch;
    }
    if matches!(medium, "referral" | "app" | "link") {
        // A webmail referrer is recorded with medium "email", so it is not caught here.
        return Channel::Referral;
    }
    if category == Some(C::Email) || is_email(source) || is_email(medium) {
        return Channel::Email;
    }
    if medium == "affiliate" {
        return Channel::Affiliates;
    }
    if medium == "audio" {
        return Channel::Audio;
    }
    if source == "sms" || medium == "sms" {
        return Channel::Sms;
    }
    if medium.ends_with("push")
        || has(medium, "mobile")
        || has(medium, "notification")
        || source == "firebase"
    {
        return Channel::MobilePushNotifications;
    }
    Channel::Unassigned
}

/// GA4: medium matches `^(.*cp.*|ppc|retargeting|paid.*)$`.
fn is_paid_medium(medium: &str) -> bool {
    has(medium, "cp") || medium == "ppc" || medium == "retargeting" || medium.starts_with("paid")
}

/// GA4: campaign matches `^(.*(([^a-df-z]|^)shop|shopping).*)$`, i.e. "shop" at the start or
/// after anything but a letter other than "e" (so "eshop" counts, "workshop" does not).
fn is_shopping_campaign(campaign: &str) -> bool {
    if has(campaign, "shopping") {
        return true;
    }
    let bytes = campaign.as_bytes();
    bytes.windows(4).enumerate().any(|(i, w)| {
        w == b"shop"
            && (i == 0 || {
                let prev = bytes[i - 1];
                !(prev.is_ascii_lowercase() && prev != b'e')
            })
    })
}

/// Substring test for the short strings these rules look at: `str::contains` sets up a
/// two-way searcher per call, which costs more than scanning a ten-byte medium.
fn has(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w == n)
}

fn is_email(s: &str) -> bool {
    matches!(s, "email" | "e-mail" | "e_mail" | "e mail")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for c in Channel::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Channel>(&json).unwrap(), c);
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        let err = "organic social".parse::<Channel>().unwrap_err().to_string();
        // The message names every channel itself, so it points nowhere else.
        assert!(
            err.starts_with("unknown channel \"organic social\": use one of"),
            "{err}"
        );
        for c in Channel::ALL {
            assert!(
                err.contains(&format!("\"{}\"", c.as_str())),
                "{err} lacks {c}"
            );
        }
    }

    #[test]
    fn ga4_rules_in_order() {
        use SourceCategory as C;
        let cases: &[(Option<C>, &str, &str, Option<&str>, Channel)] = &[
            (None, "(direct)", "(none)", None, Channel::Direct),
            (
                None,
                "google",
                "cpc",
                Some("pmax cross-network q3"),
                Channel::CrossNetwork,
            ),
            (
                Some(C::Shopping),
                "amazon",
                "cpc",
                None,
                Channel::PaidShopping,
            ),
            (
                Some(C::Search),
                "google",
                "cpc",
                Some("spring shop"),
                Channel::PaidShopping,
            ),
            (
                Some(C::Search),
                "google",
                "cpc",
                Some("workshop"),
                Channel::PaidSearch,
            ),
            (Some(C::Search), "google", "ppc", None, Channel::PaidSearch),
            (
                Some(C::Social),
                "facebook",
                "paid_social",
                None,
                Channel::PaidSocial,
            ),
            (Some(C::Video), "youtube", "cpv", None, Channel::PaidVideo),
            (Some(C::Search), "google", "cpm", None, Channel::PaidSearch),
            (None, "adnet", "cpm", None, Channel::Display),
            (None, "adnet", "banner", None, Channel::Display),
            (None, "adnet", "retargeting", None, Channel::PaidOther),
            (
                Some(C::AiAssistant),
                "chatgpt",
                "(not set)",
                None,
                Channel::AiAssistant,
            ),
            (None, "x", "y", Some("eshop-sale"), Channel::OrganicShopping),
            (
                None,
                "partner",
                "social-network",
                None,
                Channel::OrganicSocial,
            ),
            (None, "partner", "video", None, Channel::OrganicVideo),
            (None, "partner", "organic", None, Channel::OrganicSearch),
            (None, "partner", "link", None, Channel::Referral),
            (None, "newsletter", "e-mail", None, Channel::Email),
            (None, "email", "(not set)", None, Channel::Email),
            (None, "partner", "affiliate", None, Channel::Affiliates),
            (None, "podcast", "audio", None, Channel::Audio),
            (None, "sms", "(not set)", None, Channel::Sms),
            (
                None,
                "app",
                "web_push",
                None,
                Channel::MobilePushNotifications,
            ),
            (
                None,
                "firebase",
                "x",
                None,
                Channel::MobilePushNotifications,
            ),
            (None, "partner", "weird", None, Channel::Unassigned),
        ];
        for (cat, s, m, c, want) in cases {
            assert_eq!(ga4_channel(*cat, s, m, *c), *want, "{cat:?} {s} {m} {c:?}");
        }
    }
}
