use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use touchstream_kafka::{KafkaConfig, Topics};
use touchstream_model::SiteConfig;
use touchstream_runtime::{LogConfig, OpsConfig};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnricherConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group_id: String,
    /// Stable per instance (fences a zombie of the same instance after a restart); two
    /// instances in one group need two ids. Default: `touchstream-enricher-<hostname>`.
    pub transactional_id: Option<String>,
    /// How long the group waits for a silent instance before handing its partitions to the
    /// others. It must outlast a move of the group coordinator (the brokers'
    /// `broker.session.timeout.ms`, 9 s by default, plus an election), or every broker loss that
    /// takes the coordinator makes every instance drop its partitions, rejoin and restore them
    /// again. It is also how long the partitions of a killed instance wait before they move
    /// (membership is dynamic: an instance that stops cleanly leaves the group at once).
    pub session_timeout_ms: u32,
    /// The site's own hosts: referrers on them are internal navigation. For events of a site
    /// not in `sites` (the `default` site of a single-site deployment).
    pub site_hosts: Vec<String>,
    /// The deployment's sites (the shared top-level `[[sites]]` of the config file): each
    /// site's events are classified with its own `hosts`.
    pub sites: Vec<SiteConfig>,
    /// Replace the compiled-in source catalogue.
    pub catalogue_path: Option<PathBuf>,
    pub attribution: AttributionConfig,
    /// Records per transaction at most.
    pub batch_max_records: usize,
    /// How long a transaction collects records at most.
    pub batch_max_ms: u64,
    pub ops: OpsConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionConfig {
    pub lookback_days: u32,
    pub time_decay_half_life_days: f64,
    pub session_timeout_minutes: u32,
    /// Events up to this much older than the newest event of their device give exactly the
    /// result they would have on time; older ones are attributed best effort and flagged.
    pub allowed_lateness_minutes: u32,
    /// Touches credited per conversion at most (the newest inside the lookback); four times
    /// as many are kept per person at most, bounding state size.
    pub max_touches_per_visitor: usize,
    /// Conversions a user keeps to re-credit when another device's records arrive late (the
    /// oldest are let go first); a device that is its own person keeps those within the
    /// allowed lateness.
    pub max_conversions_per_person: usize,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group_id: "touchstream-enricher".into(),
            transactional_id: None,
            session_timeout_ms: 15_000,
            site_hosts: Vec::new(),
            sites: Vec::new(),
            catalogue_path: None,
            attribution: AttributionConfig::default(),
            batch_max_records: 20_000,
            batch_max_ms: 200,
            ops: OpsConfig::on_port(9101),
            log: LogConfig::default(),
        }
    }
}

impl Default for AttributionConfig {
    fn default() -> Self {
        Self {
            lookback_days: 30,
            time_decay_half_life_days: 7.0,
            session_timeout_minutes: 30,
            allowed_lateness_minutes: 60,
            max_touches_per_visitor: 64,
            max_conversions_per_person: 32,
        }
    }
}

impl EnricherConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        touchstream_model::site::check_sites(&self.sites).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.batch_max_records > 0,
            "batch_max_records must be positive"
        );
        anyhow::ensure!(
            self.session_timeout_ms >= 3_000,
            "session_timeout_ms must be at least 3000 (three heartbeats)"
        );
        anyhow::ensure!(
            self.attribution.lookback_days > 0,
            "attribution.lookback_days must be positive"
        );
        anyhow::ensure!(
            self.attribution.max_touches_per_visitor > 0,
            "attribution.max_touches_per_visitor must be positive"
        );
        anyhow::ensure!(
            self.attribution.max_conversions_per_person > 0,
            "attribution.max_conversions_per_person must be positive"
        );
        anyhow::ensure!(
            self.attribution.time_decay_half_life_days > 0.0,
            "attribution.time_decay_half_life_days must be positive"
        );
        Ok(())
    }

    pub fn transactional_id(&self) -> String {
        self.transactional_id.clone().unwrap_or_else(|| {
            let host =
                std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
            format!("touchstream-enricher-{}", host.trim())
        })
    }
}
