//! Colours. A network (or, for touches that are not social, a channel) has the same colour in
//! every chart, so facebook is the same blue in the source of sale, the top posts and the
//! lifecycle; measures (sales against micro-conversions, lifecycle stages, channel groups) have
//! fixed colours of their own.

/// The colour of a social network (`facebook`) or a channel (`Organic Search`). Networks and
/// channels not listed get one of [`FALLBACK`] chosen by their name, so that too is stable.
pub fn network(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "facebook" => "#3b5bdb",
        "instagram" => "#d6336c",
        "x" | "twitter" => "#212529",
        "linkedin" => "#0b7285",
        "tiktok" => "#22b8cf",
        "youtube" => "#e03131",
        "pinterest" => "#a61e4d",
        "reddit" => "#f76707",
        "snapchat" => "#f2c200",
        "threads" => "#5c5f66",
        "bluesky" => "#4dabf7",
        "mastodon" => "#6741d9",
        "whatsapp" => "#2b8a3e",
        "telegram" => "#1c7ed6",
        "twitch" => "#7048e8",
        "organic search" => "#37b24d",
        "paid search" => "#94d82d",
        "direct" => "#adb5bd",
        "email" => "#f59f00",
        "referral" => "#a07e62",
        "ai assistant" => "#9775fa",
        "organic video" => "#c92a2a",
        "paid video" => "#ff8787",
        "organic social" => "#e64980",
        "paid social" => "#364fc7",
        "display" => "#e8590c",
        "affiliates" => "#5c940d",
        "organic shopping" => "#0ca678",
        "paid shopping" => "#63e6be",
        "unassigned" | "(other)" => "#ced4da",
        other => FALLBACK[fnv(other) as usize % FALLBACK.len()],
    }
}

/// For networks and channels without a colour of their own.
pub const FALLBACK: [&str; 8] = [
    "#1098ad", "#d9480f", "#5f3dc4", "#087f5b", "#c2255c", "#74b816", "#1864ab", "#862e9c",
];

/// Purchases, macro-conversions: the conversion that is a sale.
pub const SALES: &str = "#1f3a68";
/// Signups and downloads.
pub const MICRO: &str = "#9db4e0";

/// Lifecycle stages, light to dark: visitors, customers, clients, repeat clients.
pub const STAGES: [&str; 4] = ["#c8d6ef", "#8ea8d8", "#4d6cb3", "#1f3470"];

/// Channel groups: social, search, everything else.
pub fn group(name: &str) -> &'static str {
    match name {
        "social" => "#d6336c",
        "search" => "#37b24d",
        _ => "#868e96",
    }
}

fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_has_one_colour_whatever_its_case() {
        assert_eq!(network("facebook"), network("Facebook"));
        assert_ne!(network("facebook"), network("instagram"));
        assert_eq!(network("mystery-net"), network("mystery-net"));
        assert!(FALLBACK.contains(&network("mystery-net")));
    }
}
