//! The mapping of Segment calls onto touchstream events, as data: `schemas/mappings/segment.toml`
//! (compiled in), or a file of the same shape, with each site's `track` rules on top.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;
use touchstream_model::TrackRule;

const BUILTIN: &str = include_str!("../../../../schemas/mappings/segment.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    default_currency: String,
    fields: Fields,
    #[serde(default)]
    track: BTreeMap<String, TrackRule>,
}

/// Where each touchstream field of a track call is read from among its properties.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    pub order_id: Vec<String>,
    pub revenue: Vec<String>,
    pub currency: Vec<String>,
    pub signup_kind: Vec<String>,
    pub method: Vec<String>,
    pub asset_id: Vec<String>,
    pub asset_kind: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Mapping {
    pub default_currency: String,
    pub fields: Fields,
    /// By lower-cased name.
    track: HashMap<String, TrackRule>,
}

impl Mapping {
    pub fn builtin() -> &'static Mapping {
        static BUILT: OnceLock<Mapping> = OnceLock::new();
        BUILT.get_or_init(|| {
            #[allow(clippy::expect_used)]
            Mapping::parse(BUILTIN).expect("the built-in Segment mapping is valid")
        })
    }

    pub fn from_path(path: &Path) -> anyhow::Result<Mapping> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("segment mapping {}: {e}", path.display()))?;
        Mapping::parse(&text)
            .map_err(|e| anyhow::anyhow!("segment mapping {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Mapping> {
        let file: File = toml::from_str(text)?;
        anyhow::ensure!(
            is_currency_code(&file.default_currency),
            "default_currency {:?} is not an ISO 4217 code",
            file.default_currency
        );
        for (name, rule) in &file.track {
            rule.check(name).map_err(anyhow::Error::msg)?;
        }
        Ok(Mapping {
            default_currency: file.default_currency.to_ascii_uppercase(),
            fields: file.fields,
            track: file
                .track
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        })
    }

    /// This mapping with `overrides` (a site's own rules) replacing or adding names.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, TrackRule>) -> Mapping {
        let mut m = self.clone();
        for (k, v) in overrides {
            m.track.insert(k.to_lowercase(), v.clone());
        }
        m
    }

    /// The rule for a track call named `name`, if any.
    pub fn rule(&self, name: &str) -> Option<&TrackRule> {
        self.track
            .get(name)
            .or_else(|| self.track.get(&name.to_lowercase()))
    }
}

fn is_currency_code(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic())
}

/// ISO 4217 minor-unit exponent: 2 unless listed.
pub fn currency_exponent(code: &str) -> u32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: &[&str] = &["CLF", "UYW"];
    let code = code.to_ascii_uppercase();
    if ZERO.contains(&code.as_str()) {
        0
    } else if THREE.contains(&code.as_str()) {
        3
    } else if FOUR.contains(&code.as_str()) {
        4
    } else {
        2
    }
}

/// An amount in major units (a JSON number or a numeric string) in minor units, rounded to
/// the nearest (half away from zero). Works on the decimal text, never on a binary float
/// product: 19.99 EUR is 1999 cents, not 1998.
pub fn to_minor_units(amount: &Value, exponent: u32) -> Result<i64, String> {
    let text = match amount {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err("expected a number in major units (like 19.99)".into()),
    };
    decimal_to_minor(&text, exponent)
        .ok_or_else(|| format!("{text:?} is not an amount in major units (like 19.99)"))
}

fn decimal_to_minor(text: &str, exponent: u32) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp10) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    // Position of the decimal point in `digits` once scaled to minor units.
    let point = i64::try_from(int_part.len()).ok()? + i64::from(exp10) + i64::from(exponent);
    if point > 19 + i64::try_from(digits.len()).ok()? {
        return None;
    }
    let mut value: i64 = 0;
    for i in 0..point.max(0) {
        let d = digits.get(i as usize).copied().unwrap_or(0);
        value = value.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    let next = if point < 0 {
        0
    } else {
        digits.get(point as usize).copied().unwrap_or(0)
    };
    if next >= 5 {
        value = value.checked_add(1)?;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;
    use touchstream_model::EventType;

    use super::*;

    #[test]
    fn major_units_become_minor_units_without_float_error() {
        // 19.99 * 100 is 1998.9999999999998 in binary floating point.
        assert_eq!(to_minor_units(&json!(19.99), 2), Ok(1999));
        assert_eq!(to_minor_units(&json!(0.29), 2), Ok(29));
        assert_eq!(to_minor_units(&json!(4.35), 2), Ok(435));
        assert_eq!(to_minor_units(&json!(20), 2), Ok(2000));
        assert_eq!(to_minor_units(&json!("49.5"), 2), Ok(4950));
        assert_eq!(to_minor_units(&json!(1500), 0), Ok(1500));
        assert_eq!(to_minor_units(&json!(12.3456), 3), Ok(12346));
        assert_eq!(to_minor_units(&json!(0.005), 2), Ok(1));
        assert_eq!(to_minor_units(&json!(0.004), 2), Ok(0));
        assert_eq!(to_minor_units(&json!(1.5e3), 2), Ok(150000));
        assert_eq!(to_minor_units(&json!("2.5E-1"), 2), Ok(25));
        assert_eq!(to_minor_units(&json!(-3.10), 2), Ok(-310));
        assert!(to_minor_units(&json!("12,50"), 2).is_err());
        assert!(to_minor_units(&json!("."), 2).is_err());
        assert!(to_minor_units(&json!(true), 2).is_err());
        assert!(to_minor_units(&json!(1e300), 2).is_err());
        assert_eq!(currency_exponent("jpy"), 0);
        assert_eq!(currency_exponent("KWD"), 3);
        assert_eq!(currency_exponent("EUR"), 2);
    }

    #[test]
    fn the_builtin_table_and_site_overrides() {
        let m = Mapping::builtin();
        assert_eq!(m.default_currency, "USD");
        assert_eq!(
            m.rule("Order Completed").unwrap().event_type,
            EventType::Purchase
        );
        assert_eq!(
            m.rule("order completed").unwrap().event_type,
            EventType::Purchase
        );
        let signup = m.rule("Webinar Registered").unwrap();
        assert_eq!(
            (signup.event_type, signup.signup_kind.as_deref()),
            (EventType::Signup, Some("webinar"))
        );
        assert_eq!(
            m.rule("Whitepaper Downloaded").unwrap().event_type,
            EventType::Download
        );
        assert!(m.rule("Product Viewed").is_none());
        let mut site = BTreeMap::new();
        site.insert(
            "Quote Requested".to_string(),
            TrackRule {
                event_type: EventType::Signup,
                signup_kind: Some("quote".into()),
                method: None,
                asset_kind: None,
            },
        );
        site.insert(
            "Signed Up".to_string(),
            TrackRule {
                event_type: EventType::Custom,
                signup_kind: None,
                method: None,
                asset_kind: None,
            },
        );
        let o = m.with_overrides(&site);
        assert_eq!(
            o.rule("Quote Requested").unwrap().signup_kind.as_deref(),
            Some("quote")
        );
        assert_eq!(o.rule("Signed Up").unwrap().event_type, EventType::Custom);
        assert_eq!(m.rule("Signed Up").unwrap().event_type, EventType::Signup);
        let bad = "default_currency = \"USD\"\n[fields]\norder_id=[]\nrevenue=[]\ncurrency=[]\nsignup_kind=[]\nmethod=[]\nasset_id=[]\nasset_kind=[]\n[track.\"Page Seen\"]\nevent_type = \"click\"\n";
        assert!(
            Mapping::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("Page Seen")
        );
    }
}
