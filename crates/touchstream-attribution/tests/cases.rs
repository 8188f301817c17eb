//! Table-driven classification cases: one row per (page URL, referrer, user agent) with the
//! expected channel, source, medium and social network, plus rows generated from the catalogue
//! file itself (every host, shortener and app id) so a catalogue edit is exercised at once.
//!
//! The site in every case is `example.com`. In the table, `NONE` stands for an absent referrer
//! or user agent and `-` for a null social network.
#![allow(clippy::unwrap_used)]

use touchstream_attribution::{Catalogue, Channel, Classifier, Hit, Touch};

const NONE: &str = "<none>";
const P: &str = "https://example.com/pricing";

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const FB_ANDROID: &str = "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/442.0.0.33.113;]";
const FB_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]";
const MESSENGER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/MessengerForiOS;FBAV/385.0.0.32.108;FBBV/392587014]";
const IG: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 307.0.0.34.111 (iPhone14,2; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 532277042)";
const IG_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36 Instagram 311.0.0.32.118 Android (34/14; 480dpi; 1080x2340; samsung; SM-S918B; dm3q; qcom; en_GB; 545986883)";
const THREADS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Barcelona 289.0.0.77.109 (iPhone12,1; iOS 17_0; en_US; en; scale=2.00; 828x1792; 501356541)";
const LI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.29.6345";
const TT_ANDROID: &str = "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/108.0.5359.128 Mobile Safari/537.36 trill_2022903030 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/29.3.3 ByteLocale/en ByteFullLocale/en Region/US BytedanceWebview/d8a21c6";
const TT_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_32.9.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US RevealType/Dialog isDarkMode/0 WKWebView/1 BytedanceWebview/d8a21c6";
const TT_PLAIN: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 TikTok/32.9.0";
const PIN: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]";
const TW: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Twitter for iPhone/9.61";
const TW_ANDROID: &str = "Mozilla/5.0 (Linux; Android 13; Pixel 6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36 TwitterAndroid";
const SNAP: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.60.0.43 (like Safari/8617.2.4.10.8, panda)";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// (page_url, referrer, user_agent, channel, source, medium, social_network)
#[rustfmt::skip]
const CASES: &[Row] = &[
    // ---- rule 1: utm_* win; sources normalised through the alias table
    ("https://example.com/?utm_source=facebook&utm_medium=cpc&utm_campaign=spring", NONE, CHROME, "Paid Social", "facebook", "cpc", "facebook"),
    ("https://example.com/?utm_source=fb&utm_medium=paid_social", NONE, CHROME, "Paid Social", "facebook", "paid_social", "facebook"),
    ("https://example.com/?utm_source=m.facebook.com&utm_medium=social", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=l.facebook.com&utm_medium=referral", NONE, CHROME, "Organic Social", "facebook", "referral", "facebook"),
    ("https://example.com/?utm_source=FB&utm_medium=Social", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=%20Facebook%20&utm_medium=%20CPC%20", NONE, CHROME, "Paid Social", "facebook", "cpc", "facebook"),
    ("https://example.com/?utm_source=+facebook+&utm_medium=cpc", NONE, CHROME, "Paid Social", "facebook", "cpc", "facebook"),
    ("https://example.com/?utm_source=Facebook%2Ecom&utm_medium=social", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=facebook", NONE, CHROME, "Organic Social", "facebook", "(not set)", "facebook"),
    ("https://example.com/?utm_source=ig&utm_medium=social", NONE, CHROME, "Organic Social", "instagram", "social", "instagram"),
    ("https://example.com/?utm_source=instagram&utm_medium=paid", NONE, CHROME, "Paid Social", "instagram", "paid", "instagram"),
    ("https://example.com/?utm_source=Instagram&utm_medium=story", NONE, CHROME, "Organic Social", "instagram", "story", "instagram"),
    ("https://example.com/?utm_source=tw&utm_medium=social", NONE, CHROME, "Organic Social", "x", "social", "x"),
    ("https://example.com/?utm_source=twitter&utm_medium=cpc", NONE, CHROME, "Paid Social", "x", "cpc", "x"),
    ("https://example.com/?utm_source=t.co&utm_medium=social", NONE, CHROME, "Organic Social", "x", "social", "x"),
    ("https://example.com/?utm_source=x.com&utm_medium=ppc", NONE, CHROME, "Paid Social", "x", "ppc", "x"),
    ("https://example.com/?utm_source=x&utm_medium=social", NONE, CHROME, "Organic Social", "x", "social", "x"),
    ("https://example.com/?utm_source=li&utm_medium=social", NONE, CHROME, "Organic Social", "linkedin", "social", "linkedin"),
    ("https://example.com/?utm_source=lnkd.in&utm_medium=social", NONE, CHROME, "Organic Social", "linkedin", "social", "linkedin"),
    ("https://example.com/?utm_source=LinkedIn&utm_medium=cpc&utm_campaign=b2b", NONE, CHROME, "Paid Social", "linkedin", "cpc", "linkedin"),
    ("https://example.com/?utm_source=yt&utm_medium=video", NONE, CHROME, "Organic Video", "youtube", "video", "youtube"),
    ("https://example.com/?utm_source=youtube&utm_medium=cpc", NONE, CHROME, "Paid Video", "youtube", "cpc", "youtube"),
    ("https://example.com/?utm_source=youtube&utm_medium=social", NONE, CHROME, "Organic Social", "youtube", "social", "youtube"),
    ("https://example.com/?utm_source=youtu.be", NONE, CHROME, "Organic Video", "youtube", "(not set)", "youtube"),
    ("https://example.com/?utm_source=tiktok&utm_medium=cpc", NONE, CHROME, "Paid Social", "tiktok", "cpc", "tiktok"),
    ("https://example.com/?utm_source=tiktok", NONE, CHROME, "Organic Social", "tiktok", "(not set)", "tiktok"),
    ("https://example.com/?utm_source=pinterest&utm_medium=paid_social", NONE, CHROME, "Paid Social", "pinterest", "paid_social", "pinterest"),
    ("https://example.com/?utm_source=reddit&utm_medium=social", NONE, CHROME, "Organic Social", "reddit", "social", "reddit"),
    ("https://example.com/?utm_source=snap&utm_medium=cpc", NONE, CHROME, "Paid Social", "snapchat", "cpc", "snapchat"),
    ("https://example.com/?utm_source=threads&utm_medium=social", NONE, CHROME, "Organic Social", "threads", "social", "threads"),
    ("https://example.com/?utm_source=bsky&utm_medium=social", NONE, CHROME, "Organic Social", "bluesky", "social", "bluesky"),
    ("https://example.com/?utm_source=mastodon&utm_medium=social", NONE, CHROME, "Organic Social", "mastodon", "social", "mastodon"),
    ("https://example.com/?utm_source=whatsapp&utm_medium=social", NONE, CHROME, "Organic Social", "whatsapp", "social", "whatsapp"),
    ("https://example.com/?utm_source=telegram&utm_medium=social", NONE, CHROME, "Organic Social", "telegram", "social", "telegram"),
    ("https://example.com/?utm_source=discord&utm_medium=social", NONE, CHROME, "Organic Social", "discord", "social", "discord"),
    ("https://example.com/?utm_source=hn&utm_medium=social", NONE, CHROME, "Organic Social", "hackernews", "social", "hackernews"),
    ("https://example.com/?utm_source=medium&utm_medium=blog", NONE, CHROME, "Organic Social", "medium", "blog", "medium"),
    ("https://example.com/?utm_source=vkontakte&utm_medium=social", NONE, CHROME, "Organic Social", "vk", "social", "vk"),
    ("https://example.com/?utm_source=google&utm_medium=cpc", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?utm_source=google&utm_medium=ppc", NONE, CHROME, "Paid Search", "google", "ppc", "-"),
    ("https://example.com/?utm_source=google&utm_medium=cpm", NONE, CHROME, "Paid Search", "google", "cpm", "-"),
    ("https://example.com/?utm_source=google&utm_medium=organic", NONE, CHROME, "Organic Search", "google", "organic", "-"),
    ("https://example.com/?utm_source=google", NONE, CHROME, "Organic Search", "google", "(not set)", "-"),
    ("https://example.com/?utm_source=google&utm_medium=display", NONE, CHROME, "Display", "google", "display", "-"),
    ("https://example.com/?utm_source=google.co.uk&utm_medium=organic", NONE, CHROME, "Organic Search", "google", "organic", "-"),
    ("https://example.com/?utm_source=adwords&utm_medium=cpc", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?utm_source=bing&utm_medium=cpc", NONE, CHROME, "Paid Search", "bing", "cpc", "-"),
    ("https://example.com/?utm_source=duckduckgo&utm_medium=organic", NONE, CHROME, "Organic Search", "duckduckgo", "organic", "-"),
    ("https://example.com/?utm_source=newsletter&utm_medium=email&utm_campaign=weekly", NONE, CHROME, "Email", "newsletter", "email", "-"),
    ("https://example.com/?utm_source=mailchimp&utm_medium=e-mail", NONE, CHROME, "Email", "mailchimp", "e-mail", "-"),
    ("https://example.com/?utm_source=brevo&utm_medium=e_mail", NONE, CHROME, "Email", "brevo", "e_mail", "-"),
    ("https://example.com/?utm_source=crm&utm_medium=e%20mail", NONE, CHROME, "Email", "crm", "e mail", "-"),
    ("https://example.com/?utm_source=email", NONE, CHROME, "Email", "email", "(not set)", "-"),
    ("https://example.com/?utm_medium=email", NONE, CHROME, "Email", "(not set)", "email", "-"),
    ("https://example.com/?utm_source=gmail&utm_medium=referral", NONE, CHROME, "Referral", "gmail", "referral", "-"),
    ("https://example.com/?utm_source=gmail", NONE, CHROME, "Email", "gmail", "(not set)", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=affiliate", NONE, CHROME, "Affiliates", "partner", "affiliate", "-"),
    ("https://example.com/?utm_source=partner.org&utm_medium=referral", NONE, CHROME, "Referral", "partner.org", "referral", "-"),
    ("https://example.com/?utm_source=ourapp&utm_medium=app", NONE, CHROME, "Referral", "ourapp", "app", "-"),
    ("https://example.com/?utm_source=linktree&utm_medium=link", NONE, CHROME, "Referral", "linktree", "link", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=display", NONE, CHROME, "Display", "adnet", "display", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=banner", NONE, CHROME, "Display", "adnet", "banner", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=cpm", NONE, CHROME, "Display", "adnet", "cpm", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=interstitial", NONE, CHROME, "Display", "adnet", "interstitial", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=expandable", NONE, CHROME, "Display", "adnet", "expandable", "-"),
    ("https://example.com/?utm_source=newsletter&utm_medium=cpc", NONE, CHROME, "Paid Other", "newsletter", "cpc", "-"),
    ("https://example.com/?utm_source=adnet&utm_medium=retargeting", NONE, CHROME, "Paid Other", "adnet", "retargeting", "-"),
    ("https://example.com/?utm_source=sms", NONE, CHROME, "SMS", "sms", "(not set)", "-"),
    ("https://example.com/?utm_source=twilio&utm_medium=sms", NONE, CHROME, "SMS", "twilio", "sms", "-"),
    ("https://example.com/?utm_source=app&utm_medium=push", NONE, CHROME, "Mobile Push Notifications", "app", "push", "-"),
    ("https://example.com/?utm_source=onesignal&utm_medium=web_push", NONE, CHROME, "Mobile Push Notifications", "onesignal", "web_push", "-"),
    ("https://example.com/?utm_source=app&utm_medium=mobile", NONE, CHROME, "Mobile Push Notifications", "app", "mobile", "-"),
    ("https://example.com/?utm_source=app&utm_medium=in-app-notification", NONE, CHROME, "Mobile Push Notifications", "app", "in-app-notification", "-"),
    ("https://example.com/?utm_source=firebase&utm_medium=fcm", NONE, CHROME, "Mobile Push Notifications", "firebase", "fcm", "-"),
    ("https://example.com/?utm_source=spotify&utm_medium=audio", NONE, CHROME, "Audio", "spotify", "audio", "-"),
    ("https://example.com/?utm_source=google&utm_medium=cpc&utm_campaign=PMax%20Cross-Network", NONE, CHROME, "Cross-network", "google", "cpc", "-"),
    ("https://example.com/?utm_source=amazon&utm_medium=cpc", NONE, CHROME, "Paid Shopping", "amazon", "cpc", "-"),
    ("https://example.com/?utm_source=google&utm_medium=cpc&utm_campaign=shopping_q4", NONE, CHROME, "Paid Shopping", "google", "cpc", "-"),
    ("https://example.com/?utm_source=google&utm_medium=cpc&utm_campaign=workshop", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?utm_source=amazon", NONE, CHROME, "Organic Shopping", "amazon", "(not set)", "-"),
    ("https://example.com/?utm_source=blog&utm_medium=post&utm_campaign=eshop", NONE, CHROME, "Organic Shopping", "blog", "post", "-"),
    ("https://example.com/?utm_source=foo&utm_medium=bar", NONE, CHROME, "Unassigned", "foo", "bar", "-"),
    ("https://example.com/?utm_medium=weird", NONE, CHROME, "Unassigned", "(not set)", "weird", "-"),
    ("https://example.com/?utm_source=other.example.org", NONE, CHROME, "Unassigned", "other.example.org", "(not set)", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=video", NONE, CHROME, "Organic Video", "partner", "video", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=sm", NONE, CHROME, "Organic Social", "partner", "sm", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=social-network", NONE, CHROME, "Organic Social", "partner", "social-network", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=social%20media", NONE, CHROME, "Organic Social", "partner", "social media", "-"),
    ("https://example.com/?utm_source=partner&utm_medium=organic", NONE, CHROME, "Organic Search", "partner", "organic", "-"),
    ("https://example.com/?utm_source=chatgpt.com", NONE, CHROME, "AI Assistant", "chatgpt", "(not set)", "-"),
    ("https://example.com/?utm_source=chatgpt.com&utm_medium=referral", NONE, CHROME, "AI Assistant", "chatgpt", "referral", "-"),
    ("https://example.com/?utm_source=perplexity", NONE, CHROME, "AI Assistant", "perplexity", "(not set)", "-"),
    ("https://example.com/?utm_source=claude.ai", NONE, CHROME, "AI Assistant", "claude", "(not set)", "-"),
    ("https://example.com/?utm_source=chatgpt&utm_medium=cpc", NONE, CHROME, "Paid Other", "chatgpt", "cpc", "-"),
    ("https://example.com/?utm_source=deviantart&utm_medium=post", NONE, CHROME, "Organic Social", "deviantart", "post", "deviantart"),
    ("https://example.com/?utm_source=dailymotion", NONE, CHROME, "Organic Video", "dailymotion", "(not set)", "-"),
    ("https://example.com/?utm_source=facebook&utm_medium=social", "https://www.google.com/", CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=newsletter&utm_medium=email", "https://example.com/blog", CHROME, "Email", "newsletter", "email", "-"),
    ("https://example.com/?utm_source=linkedin&utm_medium=cpc&li_fat_id=abc", NONE, CHROME, "Paid Social", "linkedin", "cpc", "linkedin"),
    ("https://example.com/?utm_source=facebook&utm_medium=social", NONE, IG, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?UTM_SOURCE=Facebook&UTM_MEDIUM=CPC", NONE, CHROME, "Paid Social", "facebook", "cpc", "facebook"),
    ("https://example.com/?Utm_Source=linkedin&utm_Medium=social", NONE, CHROME, "Organic Social", "linkedin", "social", "linkedin"),
    ("https://example.com/?utm_source=&utm_source=facebook&utm_medium=social", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=reddit&utm_source=facebook&utm_medium=social", NONE, CHROME, "Organic Social", "reddit", "social", "reddit"),
    ("https://example.com/?utm_source=%20%20&utm_medium=%20", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("/landing?utm_source=linkedin&utm_medium=social", NONE, CHROME, "Organic Social", "linkedin", "social", "linkedin"),
    ("landing.html?utm_source=x&utm_medium=social", NONE, CHROME, "Organic Social", "x", "social", "x"),
    ("https://Example.COM:8443/x?utm_source=x&utm_medium=social", NONE, CHROME, "Organic Social", "x", "social", "x"),
    ("https://example.com./x?utm_source=tiktok&utm_medium=paid", NONE, CHROME, "Paid Social", "tiktok", "paid", "tiktok"),
    ("https://example.com/#utm_source=facebook&utm_medium=social", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("https://example.com/?utm_source=facebook&utm_medium=social#section", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?utm_source=%E2%9C%93&utm_medium=social", NONE, CHROME, "Organic Social", "\u{2713}", "social", "-"),
    ("https://example.com/?utm_source=%ZZbad&utm_medium=social", NONE, CHROME, "Organic Social", "%zzbad", "social", "-"),
    ("https://example.com/?utm_campaign=spring", "https://l.facebook.com/", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    ("https://example.com/?utm_campaign=spring", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    // ---- rule 2: ad click ids
    ("https://example.com/?gclid=Cj0KCQiA", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gbraid=0AAAAA", NONE, SAFARI_IOS, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?wbraid=CkAKCQ", NONE, SAFARI_IOS, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?dclid=CJ3", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?msclkid=f00ba4", NONE, CHROME, "Paid Search", "bing", "cpc", "-"),
    ("https://example.com/?ttclid=E.C.P", NONE, CHROME, "Paid Social", "tiktok", "cpc", "tiktok"),
    ("https://example.com/?li_fat_id=1234-abcd", NONE, CHROME, "Paid Social", "linkedin", "cpc", "linkedin"),
    ("https://example.com/?twclid=2-abc", NONE, CHROME, "Paid Social", "x", "cpc", "x"),
    ("https://example.com/?ScCid=abc", NONE, CHROME, "Paid Social", "snapchat", "cpc", "snapchat"),
    ("https://example.com/?sccid=abc", NONE, CHROME, "Paid Social", "snapchat", "cpc", "snapchat"),
    ("https://example.com/?epik=dj0yJnU9", NONE, CHROME, "Paid Social", "pinterest", "cpc", "pinterest"),
    ("https://example.com/?rdt_cid=123", NONE, CHROME, "Paid Social", "reddit", "cpc", "reddit"),
    ("https://example.com/?GCLID=abc", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gclid=", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gclid=abc", "https://www.google.de/", CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gclid=abc", "https://example.com/cart", CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?msclkid=abc", "https://www.bing.com/", CHROME, "Paid Search", "bing", "cpc", "-"),
    ("https://example.com/?ttclid=abc", NONE, TT_ANDROID, "Paid Social", "tiktok", "cpc", "tiktok"),
    ("https://example.com/?fbclid=IwAR0abc&gclid=abc", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gclid=abc&ttclid=abc", NONE, CHROME, "Paid Search", "google", "cpc", "-"),
    ("https://example.com/?gclid=abc&utm_campaign=shopping", NONE, CHROME, "Paid Shopping", "google", "cpc", "-"),
    ("https://example.com/?fbclid=IwAR0abc", NONE, CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?fbclid=IwAR0abc", "https://l.facebook.com/", CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?fbclid=IwAR0abc", "https://lm.facebook.com/", FB_ANDROID, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?fbclid=PAAa", "https://l.instagram.com/", IG, "Organic Social", "instagram", "social", "instagram"),
    ("https://example.com/?fbclid=PAAa", "https://www.instagram.com/", CHROME, "Organic Social", "instagram", "social", "instagram"),
    ("https://example.com/?fbclid=PAAa", NONE, IG, "Organic Social", "instagram", "social", "instagram"),
    ("https://example.com/?fbclid=PAAa", NONE, IG_ANDROID, "Organic Social", "instagram", "social", "instagram"),
    ("https://example.com/?fbclid=IwAR0abc", NONE, FB_IOS, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?fbclid=IwAR0abc", "https://news.example.net/", CHROME, "Organic Social", "facebook", "social", "facebook"),
    ("https://example.com/?fbclid=IwAR0abc", "https://example.com/", CHROME, "Organic Social", "facebook", "social", "facebook"),
    // ---- rule 3: referrer host, by suffix, with shorteners and app referrers
    (P, "https://www.google.com/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.com/search?q=crm+for+startups", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://WWW.GOOGLE.COM/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.com:443/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.com./", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "  https://www.google.com/  ", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "http://google.com", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.de/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.co.uk/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.com.br/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.google.co.jp/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://news.google.com/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://images.google.fr/", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "https://www.bing.com/", CHROME, "Organic Search", "bing", "organic", "-"),
    (P, "https://cn.bing.com/", CHROME, "Organic Search", "bing", "organic", "-"),
    (P, "https://duckduckgo.com/", CHROME, "Organic Search", "duckduckgo", "organic", "-"),
    (P, "https://search.yahoo.com/", CHROME, "Organic Search", "yahoo", "organic", "-"),
    (P, "https://search.yahoo.co.jp/", CHROME, "Organic Search", "yahoo", "organic", "-"),
    (P, "https://yandex.ru/", CHROME, "Organic Search", "yandex", "organic", "-"),
    (P, "https://yandex.com.tr/", CHROME, "Organic Search", "yandex", "organic", "-"),
    (P, "https://ya.ru/", CHROME, "Organic Search", "yandex", "organic", "-"),
    (P, "https://www.baidu.com/", CHROME, "Organic Search", "baidu", "organic", "-"),
    (P, "https://www.ecosia.org/", CHROME, "Organic Search", "ecosia", "organic", "-"),
    (P, "https://search.brave.com/", CHROME, "Organic Search", "brave", "organic", "-"),
    (P, "https://brave.com/", CHROME, "Referral", "brave.com", "referral", "-"),
    (P, "https://www.facebook.com/", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "https://m.facebook.com/", SAFARI_IOS, "Organic Social", "facebook", "referral", "facebook"),
    (P, "https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "https://lm.facebook.com/", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "https://web.facebook.com/", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "https://www.instagram.com/", CHROME, "Organic Social", "instagram", "referral", "instagram"),
    (P, "https://l.instagram.com/", IG, "Organic Social", "instagram", "referral", "instagram"),
    (P, "https://t.co/abc123", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "https://twitter.com/", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "https://mobile.twitter.com/", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "https://x.com/someone/status/1", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "https://www.linkedin.com/", CHROME, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "https://lnkd.in/dXyZ", CHROME, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "https://www.youtube.com/", CHROME, "Organic Video", "youtube", "referral", "youtube"),
    (P, "https://m.youtube.com/", CHROME, "Organic Video", "youtube", "referral", "youtube"),
    (P, "https://youtu.be/abc", CHROME, "Organic Video", "youtube", "referral", "youtube"),
    (P, "https://www.tiktok.com/", CHROME, "Organic Social", "tiktok", "referral", "tiktok"),
    (P, "https://vm.tiktok.com/ZMabc/", CHROME, "Organic Social", "tiktok", "referral", "tiktok"),
    (P, "https://www.pinterest.com/", CHROME, "Organic Social", "pinterest", "referral", "pinterest"),
    (P, "https://www.pinterest.de/", CHROME, "Organic Social", "pinterest", "referral", "pinterest"),
    (P, "https://uk.pinterest.com/", CHROME, "Organic Social", "pinterest", "referral", "pinterest"),
    (P, "https://www.pinterest.co.uk/", CHROME, "Organic Social", "pinterest", "referral", "pinterest"),
    (P, "https://pin.it/abc", CHROME, "Organic Social", "pinterest", "referral", "pinterest"),
    (P, "https://www.reddit.com/r/startups/", CHROME, "Organic Social", "reddit", "referral", "reddit"),
    (P, "https://old.reddit.com/", CHROME, "Organic Social", "reddit", "referral", "reddit"),
    (P, "https://out.reddit.com/t3_abc", CHROME, "Organic Social", "reddit", "referral", "reddit"),
    (P, "https://www.snapchat.com/", CHROME, "Organic Social", "snapchat", "referral", "snapchat"),
    (P, "https://www.threads.net/", CHROME, "Organic Social", "threads", "referral", "threads"),
    (P, "https://l.threads.net/", CHROME, "Organic Social", "threads", "referral", "threads"),
    (P, "https://bsky.app/profile/x", CHROME, "Organic Social", "bluesky", "referral", "bluesky"),
    (P, "https://mastodon.social/@someone", CHROME, "Organic Social", "mastodon", "referral", "mastodon"),
    (P, "https://fosstodon.org/", CHROME, "Organic Social", "mastodon", "referral", "mastodon"),
    (P, "https://wa.me/", CHROME, "Organic Social", "whatsapp", "referral", "whatsapp"),
    (P, "https://web.whatsapp.com/", CHROME, "Organic Social", "whatsapp", "referral", "whatsapp"),
    (P, "https://t.me/channel", CHROME, "Organic Social", "telegram", "referral", "telegram"),
    (P, "https://discord.com/channels/1", CHROME, "Organic Social", "discord", "referral", "discord"),
    (P, "https://www.quora.com/", CHROME, "Organic Social", "quora", "referral", "quora"),
    (P, "https://www.tumblr.com/", CHROME, "Organic Social", "tumblr", "referral", "tumblr"),
    (P, "https://someone.tumblr.com/", CHROME, "Organic Social", "tumblr", "referral", "tumblr"),
    (P, "https://news.ycombinator.com/item?id=1", CHROME, "Organic Social", "hackernews", "referral", "hackernews"),
    (P, "https://medium.com/@someone/post", CHROME, "Organic Social", "medium", "referral", "medium"),
    (P, "https://someone.medium.com/post", CHROME, "Organic Social", "medium", "referral", "medium"),
    (P, "https://vk.com/", CHROME, "Organic Social", "vk", "referral", "vk"),
    (P, "https://www.twitch.tv/", CHROME, "Organic Video", "twitch", "referral", "twitch"),
    (P, "https://vimeo.com/1", CHROME, "Organic Video", "vimeo", "referral", "vimeo"),
    (P, "https://www.xing.com/", CHROME, "Organic Social", "xing", "referral", "xing"),
    (P, "https://www.producthunt.com/posts/x", CHROME, "Organic Social", "producthunt", "referral", "producthunt"),
    (P, "android-app://com.linkedin.android", CHROME, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "android-app://com.linkedin.android/", CHROME, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "ANDROID-APP://COM.LINKEDIN.ANDROID/", CHROME, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "android-app://com.facebook.katana/", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "android-app://com.instagram.android/", CHROME, "Organic Social", "instagram", "referral", "instagram"),
    (P, "android-app://com.twitter.android/", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "android-app://com.zhiliaoapp.musically/", CHROME, "Organic Social", "tiktok", "referral", "tiktok"),
    (P, "android-app://com.reddit.frontpage/", CHROME, "Organic Social", "reddit", "referral", "reddit"),
    (P, "android-app://org.telegram.messenger/", CHROME, "Organic Social", "telegram", "referral", "telegram"),
    (P, "android-app://com.whatsapp/", CHROME, "Organic Social", "whatsapp", "referral", "whatsapp"),
    (P, "android-app://com.google.android.youtube/", CHROME, "Organic Video", "youtube", "referral", "youtube"),
    (P, "android-app://com.google.android.googlequicksearchbox/https/www.google.com", CHROME, "Organic Search", "google", "organic", "-"),
    (P, "android-app://com.google.android.gm/", CHROME, "Email", "gmail", "email", "-"),
    (P, "android-app://com.microsoft.office.outlook/", CHROME, "Email", "outlook", "email", "-"),
    (P, "android-app://com.openai.chatgpt/", CHROME, "AI Assistant", "chatgpt", "referral", "-"),
    (P, "android-app://com.slack/", CHROME, "Organic Social", "slack", "referral", "slack"),
    (P, "android-app://com.example.reader/", CHROME, "Referral", "com.example.reader", "referral", "-"),
    (P, "ios-app://com.linkedin.linkedin/", SAFARI_IOS, "Organic Social", "linkedin", "referral", "linkedin"),
    (P, "https://chatgpt.com/", CHROME, "AI Assistant", "chatgpt", "referral", "-"),
    (P, "https://chat.openai.com/", CHROME, "AI Assistant", "chatgpt", "referral", "-"),
    (P, "https://www.perplexity.ai/search/abc", CHROME, "AI Assistant", "perplexity", "referral", "-"),
    (P, "https://perplexity.ai/", CHROME, "AI Assistant", "perplexity", "referral", "-"),
    (P, "https://gemini.google.com/app", CHROME, "AI Assistant", "gemini", "referral", "-"),
    (P, "https://claude.ai/chat/1", CHROME, "AI Assistant", "claude", "referral", "-"),
    (P, "https://copilot.microsoft.com/", CHROME, "AI Assistant", "copilot", "referral", "-"),
    (P, "https://chat.deepseek.com/", CHROME, "AI Assistant", "deepseek", "referral", "-"),
    (P, "https://mail.google.com/", CHROME, "Email", "gmail", "email", "-"),
    (P, "https://outlook.live.com/", CHROME, "Email", "outlook", "email", "-"),
    (P, "https://outlook.office.com/mail/", CHROME, "Email", "outlook", "email", "-"),
    (P, "https://mail.yahoo.com/", CHROME, "Email", "yahoo_mail", "email", "-"),
    (P, "https://mail.proton.me/", CHROME, "Email", "proton_mail", "email", "-"),
    (P, "https://blog.partner.org/post", CHROME, "Referral", "partner.org", "referral", "-"),
    (P, "https://news.bbc.co.uk/", CHROME, "Referral", "bbc.co.uk", "referral", "-"),
    (P, "https://www.nytimes.com/", CHROME, "Referral", "nytimes.com", "referral", "-"),
    (P, "https://someone.github.io/", CHROME, "Referral", "someone.github.io", "referral", "-"),
    (P, "https://Partner.ORG:8080/x", CHROME, "Referral", "partner.org", "referral", "-"),
    (P, "http://192.168.1.10/", CHROME, "Referral", "192.168.1.10", "referral", "-"),
    (P, "http://localhost:3000/", CHROME, "Referral", "localhost", "referral", "-"),
    (P, "https://notexample.com/", CHROME, "Referral", "notexample.com", "referral", "-"),
    (P, "https://example.com.evil.net/", CHROME, "Referral", "evil.net", "referral", "-"),
    (P, "https://www.amazon.com/", CHROME, "Organic Shopping", "amazon.com", "referral", "-"),
    (P, "https://www.amazon.de/", CHROME, "Organic Shopping", "amazon.de", "referral", "-"),
    (P, "https://www.etsy.com/", CHROME, "Organic Shopping", "etsy.com", "referral", "-"),
    (P, "https://www.deviantart.com/", CHROME, "Organic Social", "deviantart.com", "referral", "deviantart.com"),
    (P, "https://someone.blogspot.com/", CHROME, "Referral", "someone.blogspot.com", "referral", "-"),
    (P, "https://www.dailymotion.com/", CHROME, "Organic Video", "dailymotion.com", "referral", "-"),
    (P, "https://semalt.com/", CHROME, "Referral", "semalt.com", "referral", "-"),
    (P, "www.facebook.com", CHROME, "Organic Social", "facebook", "referral", "facebook"),
    (P, "t.co/abc", CHROME, "Organic Social", "x", "referral", "x"),
    (P, "https://xn--mller-kva.de/", CHROME, "Referral", "xn--mller-kva.de", "referral", "-"),
    (P, "https://müller.de/", CHROME, "Referral", "xn--mller-kva.de", "referral", "-"),
    (P, "https://www.google.com/", IG, "Organic Search", "google", "organic", "-"),
    (P, "https://www.linkedin.com/", FB_IOS, "Organic Social", "linkedin", "referral", "linkedin"),
    // ---- rule 4: empty referrer, in-app browser in the user agent
    (P, NONE, FB_ANDROID, "Organic Social", "facebook", "social", "facebook"),
    (P, NONE, FB_IOS, "Organic Social", "facebook", "social", "facebook"),
    (P, NONE, MESSENGER, "Organic Social", "facebook", "social", "facebook"),
    (P, NONE, IG, "Organic Social", "instagram", "social", "instagram"),
    (P, NONE, IG_ANDROID, "Organic Social", "instagram", "social", "instagram"),
    (P, NONE, THREADS, "Organic Social", "threads", "social", "threads"),
    (P, NONE, LI, "Organic Social", "linkedin", "social", "linkedin"),
    (P, NONE, TT_ANDROID, "Organic Social", "tiktok", "social", "tiktok"),
    (P, NONE, TT_IOS, "Organic Social", "tiktok", "social", "tiktok"),
    (P, NONE, TT_PLAIN, "Organic Social", "tiktok", "social", "tiktok"),
    (P, NONE, PIN, "Organic Social", "pinterest", "social", "pinterest"),
    (P, NONE, TW, "Organic Social", "x", "social", "x"),
    (P, NONE, TW_ANDROID, "Organic Social", "x", "social", "x"),
    (P, NONE, SNAP, "Organic Social", "snapchat", "social", "snapchat"),
    (P, "", IG, "Organic Social", "instagram", "social", "instagram"),
    (P, "   ", LI, "Organic Social", "linkedin", "social", "linkedin"),
    (P, "null", FB_IOS, "Organic Social", "facebook", "social", "facebook"),
    (P, "about:blank", TT_IOS, "Organic Social", "tiktok", "social", "tiktok"),
    (P, "not a url at all", IG, "Organic Social", "instagram", "social", "instagram"),
    (P, "chrome-extension://abcdef/popup.html", PIN, "Organic Social", "pinterest", "social", "pinterest"),
    ("https://example.com/", NONE, IG, "Organic Social", "instagram", "social", "instagram"),
    // ---- rule 5: Direct; "null", "about:blank", blanks and garbage count as empty
    (P, NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, NONE, NONE, "Direct", "(direct)", "(none)", "-"),
    (P, "", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, " \t\n ", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "null", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "NULL", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "about:blank", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "About:Blank", SAFARI_IOS, "Direct", "(direct)", "(none)", "-"),
    (P, "undefined", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "%%%", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "http://", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "file:///C:/Users/me/offer.html", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "chrome-extension://abcdef/popup.html", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "data:text/html,hello", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "javascript:void(0)", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "android-app://", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "http://[::1", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "\u{0}\u{1}\u{2}", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "😀😀😀", CHROME, "Direct", "(direct)", "(none)", "-"),
    ("not a url", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("", "", "", "Direct", "(direct)", "(none)", "-"),
    ("https://example.com/?", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("https://example.com/?foo=bar&baz", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("https://example.com/?utm_sourc=facebook", NONE, CHROME, "Direct", "(direct)", "(none)", "-"),
    ("?????", "?????", "?????", "Direct", "(direct)", "(none)", "-"),
    (P, NONE, GOOGLEBOT, "Direct", "(direct)", "(none)", "-"),
    // ---- internal navigation: Direct, flagged internal (checked below)
    (P, "https://example.com/", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://www.example.com/blog", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://blog.example.com/", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://EXAMPLE.com:8443/", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://example.com./", CHROME, "Direct", "(direct)", "(none)", "-"),
    (P, "https://example.com/", IG, "Direct", "(direct)", "(none)", "-"),
    ("https://example.com/?utm_content=post-1", "https://example.com/", CHROME, "Direct", "(direct)", "(none)", "-"),
];

/// (page_url, referrer) pairs that are internal navigation on example.com.
const INTERNAL: &[(&str, &str)] = &[
    (P, "https://example.com/"),
    (P, "https://www.example.com/blog"),
    (P, "https://blog.example.com/"),
    (P, "https://EXAMPLE.com:8443/"),
    (P, "https://example.com./"),
    (
        "https://example.com/?utm_content=post-1",
        "https://example.com/",
    ),
];

fn opt(s: &'static str) -> Option<&'static str> {
    (s != NONE).then_some(s)
}

fn classifier() -> Classifier {
    Classifier::new(Catalogue::builtin().clone(), vec!["example.com".to_owned()])
}

fn check(c: &Classifier, row: &Row) -> Result<(), String> {
    let (page, referrer, ua, channel, source, medium, social) = *row;
    let hit = Hit {
        page_url: page,
        referrer: opt(referrer),
        user_agent: opt(ua),
    };
    let t = c.classify(&hit);
    let want_social = (social != "-").then(|| social.to_owned());
    let got = (
        t.channel.as_str(),
        t.source.as_str(),
        t.medium.as_str(),
        &t.social_network,
    );
    let want = (channel, source, medium, &want_social);
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{page:?} ref={referrer:?} ua={ua:.40?}\n   want {want:?}\n    got {got:?}"
        ))
    }
}

#[test]
fn table_of_cases() {
    let c = classifier();
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|row| check(&c, row).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(CASES.len() >= 250, "{} hand-written cases", CASES.len());
}

#[test]
fn internal_navigation_is_flagged_and_opens_no_touch() {
    let c = classifier();
    for (page, referrer) in INTERNAL {
        let t = c.classify(&Hit {
            page_url: page,
            referrer: Some(referrer),
            user_agent: Some(CHROME),
        });
        assert!(
            t.is_internal && !t.opens_touch(),
            "{page} {referrer}: {t:?}"
        );
    }
    let external = c.classify(&Hit {
        page_url: P,
        referrer: Some("https://notexample.com/"),
        user_agent: None,
    });
    assert!(!external.is_internal && external.opens_touch());
    let campaign = c.classify(&Hit {
        page_url: "https://example.com/?utm_source=newsletter&utm_medium=email",
        referrer: Some("https://example.com/"),
        user_agent: None,
    });
    assert!(
        !campaign.is_internal,
        "campaign parameters make internal navigation a touch"
    );
}

#[test]
fn without_site_hosts_the_page_host_is_the_site() {
    let c = Classifier::new(Catalogue::builtin().clone(), Vec::new());
    let t = c.classify(&Hit {
        page_url: "https://shop.acme.io/cart",
        referrer: Some("https://www.shop.acme.io/"),
        user_agent: None,
    });
    assert!(t.is_internal, "{t:?}");
    let t = c.classify(&Hit {
        page_url: "https://shop.acme.io/cart",
        referrer: Some("https://acme.io/"),
        user_agent: None,
    });
    assert!(!t.is_internal, "the parent domain is another site: {t:?}");
    let t = c.classify(&Hit {
        page_url: "/relative",
        referrer: Some("https://acme.io/"),
        user_agent: None,
    });
    assert_eq!((t.channel, t.is_internal), (Channel::Referral, false));
}

#[test]
fn campaign_fields_and_click_id_kind() {
    let c = classifier();
    let t = c.classify(&Hit {
        page_url: "https://example.com/?utm_source=LinkedIn&utm_medium=Paid_Social&utm_campaign=%20Q3%20Launch%20&utm_content=Post-42&utm_term=CRM+Tool&utm_id=cmp_9&li_fat_id=x",
        referrer: Some("https://www.linkedin.com/"),
        user_agent: Some(LI),
    });
    let want = Touch {
        channel: Channel::PaidSocial,
        source: "linkedin".into(),
        medium: "paid_social".into(),
        campaign: Some("q3 launch".into()),
        content: Some("post-42".into()),
        term: Some("crm tool".into()),
        campaign_id: Some("cmp_9".into()),
        click_id_kind: Some("li_fat_id".into()),
        social_network: Some("linkedin".into()),
        is_internal: false,
        is_bot: false,
        is_spam_referrer: false,
    };
    assert_eq!(t, want);
    for (url, kind) in [
        ("https://example.com/?gclid=1", "gclid"),
        ("https://example.com/?gbraid=1", "gbraid"),
        ("https://example.com/?wbraid=1", "wbraid"),
        ("https://example.com/?dclid=1", "dclid"),
        ("https://example.com/?msclkid=1", "msclkid"),
        ("https://example.com/?ttclid=1", "ttclid"),
        ("https://example.com/?twclid=1", "twclid"),
        ("https://example.com/?ScCid=1", "sccid"),
        ("https://example.com/?epik=1", "epik"),
        ("https://example.com/?rdt_cid=1", "rdt_cid"),
        ("https://example.com/?fbclid=1", "fbclid"),
        ("https://example.com/?fbclid=1&msclkid=2", "msclkid"),
        ("https://example.com/?utm_source=x&gclid=1", "gclid"),
    ] {
        let t = c.classify(&Hit {
            page_url: url,
            referrer: None,
            user_agent: None,
        });
        assert_eq!(t.click_id_kind.as_deref(), Some(kind), "{url}");
    }
    let t = c.classify(&Hit {
        page_url: P,
        referrer: Some("https://t.co/x"),
        user_agent: None,
    });
    assert_eq!((t.campaign, t.click_id_kind), (None, None));
}

#[test]
fn bots_and_referrer_spam_are_flagged_not_dropped() {
    let c = classifier();
    for ua in [
        GOOGLEBOT,
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "curl/8.4.0",
        "python-requests/2.31.0",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "GPTBot/1.0 (+https://openai.com/gptbot)",
    ] {
        let t = c.classify(&Hit {
            page_url: P,
            referrer: Some("https://www.google.com/"),
            user_agent: Some(ua),
        });
        assert!(t.is_bot, "{ua}");
        assert_eq!(t.channel, Channel::OrganicSearch, "still classified: {ua}");
    }
    for ua in [
        CHROME, SAFARI_IOS, IG, FB_IOS, LI, TT_ANDROID, PIN, TW, SNAP, THREADS, "",
    ] {
        let t = c.classify(&Hit {
            page_url: P,
            referrer: None,
            user_agent: Some(ua),
        });
        assert!(!t.is_bot, "{ua}");
    }
    for referrer in [
        "https://semalt.com/",
        "http://www.darodar.com/x",
        "https://sub.buttons-for-website.com",
    ] {
        let t = c.classify(&Hit {
            page_url: P,
            referrer: Some(referrer),
            user_agent: Some(CHROME),
        });
        assert!(t.is_spam_referrer, "{referrer}");
        assert_eq!(t.channel, Channel::Referral);
    }
    let t = c.classify(&Hit {
        page_url: P,
        referrer: Some("https://www.google.com/"),
        user_agent: Some(CHROME),
    });
    assert!(!t.is_spam_referrer);
}

/// Every host, shortener and app id in the catalogue file, each as a referrer, and every
/// alias as a utm_source: the catalogue itself is the table.
#[test]
fn every_catalogue_entry_classifies_as_its_source() {
    let c = classifier();
    let file: toml::Value =
        toml::from_str(include_str!("../../../schemas/sources/catalogue.toml")).unwrap();
    let sources = file["source"].as_array().unwrap();
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for s in sources {
        let id = s["id"].as_str().unwrap();
        let kind = s["kind"].as_str().unwrap();
        let social = s
            .get("social_network")
            .and_then(|v| v.as_bool())
            .unwrap_or(matches!(kind, "social" | "video"));
        let (organic, paid, medium) = match kind {
            "social" => ("Organic Social", "Paid Social", "referral"),
            "video" => ("Organic Video", "Paid Video", "referral"),
            "search" => ("Organic Search", "Paid Search", "organic"),
            "shopping" => ("Organic Shopping", "Paid Shopping", "referral"),
            "ai_assistant" => ("AI Assistant", "Paid Other", "referral"),
            "email" => ("Email", "Paid Other", "email"),
            other => panic!("unknown kind {other}"),
        };
        let want_social = social.then(|| id.to_owned());
        let mut expect = |page: String, referrer: Option<String>, channel: &str, medium: &str| {
            let t = c.classify(&Hit {
                page_url: &page,
                referrer: referrer.as_deref(),
                user_agent: Some(CHROME),
            });
            checked += 1;
            if (
                t.channel.as_str(),
                t.source.as_str(),
                t.medium.as_str(),
                &t.social_network,
            ) != (channel, id, medium, &want_social)
            {
                failures.push(format!(
                    "{page} {referrer:?}: want {channel}/{id}/{medium}, got {t:?}"
                ));
            }
        };
        for host in s["hosts"].as_array().unwrap() {
            let host = host.as_str().unwrap();
            let host = match host.strip_suffix(".*") {
                Some(label) => format!("{label}.co.uk"),
                None => host.to_owned(),
            };
            expect(
                P.to_owned(),
                Some(format!("https://{host}/some/path?x=1")),
                organic,
                medium,
            );
            expect(
                P.to_owned(),
                Some(format!("https://www.{}/", host.to_uppercase())),
                organic,
                medium,
            );
            expect(
                format!("{P}?utm_source={host}&utm_medium=cpc"),
                None,
                paid,
                "cpc",
            );
        }
        for app in s["apps"].as_array().unwrap() {
            expect(
                P.to_owned(),
                Some(format!("android-app://{}/", app.as_str().unwrap())),
                organic,
                medium,
            );
        }
        for alias in s["aliases"].as_array().unwrap() {
            let alias = alias.as_str().unwrap().replace(' ', "%20");
            expect(
                format!("{P}?utm_source={alias}&utm_medium=cpc"),
                None,
                paid,
                "cpc",
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 300, "{checked}");
}

#[test]
fn google_on_every_country_domain() {
    let c = classifier();
    let tlds = [
        "com", "de", "co.uk", "com.br", "fr", "es", "it", "nl", "pl", "ca", "com.au", "co.jp",
        "co.in", "ru", "com.tr", "com.mx", "com.ar", "co.za", "se", "no", "dk", "fi", "be", "ch",
        "at", "pt", "ie", "gr", "cz", "hu", "ro", "com.ua", "co.id", "com.sg", "com.hk", "com.tw",
        "co.kr", "co.nz", "com.eg", "com.sa", "ae", "co.il", "com.vn", "com.ph", "com.my",
        "com.pk", "com.ng", "com.co", "cl", "com.pe",
    ];
    for tld in tlds {
        for host in [format!("www.google.{tld}"), format!("google.{tld}")] {
            let t = c.classify(&Hit {
                page_url: P,
                referrer: Some(&format!("https://{host}/")),
                user_agent: Some(CHROME),
            });
            assert_eq!(
                (t.channel, t.source.as_str()),
                (Channel::OrganicSearch, "google"),
                "{host}"
            );
        }
    }
}

#[test]
fn huge_and_hostile_inputs_never_panic() {
    let c = classifier();
    let big = "a".repeat(10_240);
    let big_url = format!("https://example.com/?utm_source={big}&utm_medium={big}");
    let big_ref = format!("https://{}.com/{big}", "sub.".repeat(2_000));
    let big_host = format!("https://{}.google.com/", "a".repeat(10_000));
    let many_params = format!("https://example.com/?{}", "gclid=1&".repeat(1_300));
    let inputs = [
        big.as_str(),
        big_url.as_str(),
        big_ref.as_str(),
        big_host.as_str(),
        many_params.as_str(),
        "https://%00/",
        "http://a..b/",
        "http://.../",
        "android-app://%ff%fe/",
        "https://[:::]/",
        "https://999.999.999.999/",
        "\u{feff}https://google.com",
        "https://xn--/",
        "https://-.-/",
    ];
    for page in inputs {
        for referrer in inputs {
            for ua in [big.as_str(), CHROME, "\u{0}"] {
                let t = c.classify(&Hit {
                    page_url: page,
                    referrer: Some(referrer),
                    user_agent: Some(ua),
                });
                assert!(!t.source.is_empty());
            }
        }
    }
    let t = c.classify(&Hit {
        page_url: &big_url,
        referrer: None,
        user_agent: None,
    });
    assert_eq!(t.source.len(), 10_240);
}
