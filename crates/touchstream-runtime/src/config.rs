//! Layered configuration: the struct's `Default` (works locally), then a TOML file, then
//! environment variables. The file is `--config PATH` or `$TOUCHSTREAM_CONFIG`; one file can
//! serve the whole deployment, each binary reading its own table (`[producer]`, `[enricher]`,
//! `[sink]`). Environment variables are `TOUCHSTREAM_<BINARY>__<FIELD>`, with `__` between
//! nested fields, e.g. `TOUCHSTREAM_SINK__CLICKHOUSE__URL=http://ch:8123`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
}

/// Loads `T` for `binary` (used in the environment prefix).
pub fn load_config<T>(binary: &str, file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    let env_file = std::env::var_os("TOUCHSTREAM_CONFIG").map(PathBuf::from);
    if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path));
        }
        figment = figment.merge(Figment::from(Toml::file(path)).focus(binary));
    }
    let prefix = format!("TOUCHSTREAM_{}__", binary.to_ascii_uppercase());
    figment = figment.merge(Env::prefixed(&prefix).split("__"));
    figment
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))
}

#[cfg(test)]
mod tests {
    // figment's test Jail returns its own large error type.
    #![allow(clippy::unwrap_used, clippy::result_large_err)]
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Nested {
        url: String,
        retries: u32,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cfg {
        name: String,
        nested: Nested,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                name: "default".into(),
                nested: Nested {
                    url: "http://localhost".into(),
                    retries: 3,
                },
            }
        }
    }

    #[test]
    fn layers_defaults_file_and_env() {
        let dir = std::env::temp_dir().join(format!("ts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[cfgtest]\nname = \"from-file\"\n[cfgtest.nested]\nretries = 5\n[other]\nname = 1\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOUCHSTREAM_CFGTEST__NESTED__URL", "http://env:1");
            let c: Cfg = load_config("cfgtest", Some(&file)).unwrap();
            assert_eq!(
                c,
                Cfg {
                    name: "from-file".into(),
                    nested: Nested {
                        url: "http://env:1".into(),
                        retries: 5
                    }
                }
            );
            Ok(())
        });
        let err = load_config::<Cfg>("cfgtest", Some(&dir.join("missing.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
        std::fs::write(&file, "[cfgtest.nested]\nretries = \"many\"\n").unwrap();
        let err = load_config::<Cfg>("cfgtest", Some(&file)).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
    }
}
