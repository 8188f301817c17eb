//! Layered configuration: the struct's `Default` (works locally), then a TOML file, then
//! environment variables. The file is `--config PATH` or `$TOUCHSTREAM_CONFIG`; one file can
//! serve the whole deployment, each binary reading its own table (`[producer]`, `[enricher]`,
//! `[sink]`), and top-level keys several binaries share (`[[sites]]`, see [`SHARED_KEYS`]).
//! Environment variables are `TOUCHSTREAM_<BINARY>__<FIELD>`, with `__` between
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

/// Top-level keys of the config file that several binaries read (`[[sites]]`): a binary that
/// asks for one gets it as if it were in its own table (its own table still wins).
pub const SHARED_KEYS: &[&str] = &["sites"];

/// Loads `T` for `binary` (used in the environment prefix).
pub fn load_config<T>(binary: &str, file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_config_shared(binary, file, &[])
}

/// Like [`load_config`], and also takes the `shared` top-level keys of the file (each one of
/// [`SHARED_KEYS`]) into `T`.
pub fn load_config_shared<T>(
    binary: &str,
    file: Option<&Path>,
    shared: &[&str],
) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    let env_file = std::env::var_os("TOUCHSTREAM_CONFIG").map(PathBuf::from);
    if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path));
        }
        let whole = Figment::from(Toml::file(&path));
        for key in shared {
            if let Ok(value) = whole.find_value(key) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        figment = figment.merge(whole.focus(binary));
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
        // A shared top-level key reaches the binaries that ask for it, under their own table.
        #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
        #[serde(default)]
        struct WithSites {
            name: String,
            sites: Vec<Site>,
        }
        #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
        struct Site {
            id: String,
        }
        let shared = dir.join("shared.toml");
        std::fs::write(
            &shared,
            "[[sites]]\nid = \"a\"\n[[sites]]\nid = \"b\"\n[cfgtest]\nname = \"n\"\n",
        )
        .unwrap();
        let c: WithSites = load_config_shared("cfgtest", Some(&shared), SHARED_KEYS).unwrap();
        assert_eq!(
            c.sites.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(c.name, "n");
        let c: WithSites = load_config("cfgtest", Some(&shared)).unwrap();
        assert!(c.sites.is_empty(), "only binaries that ask get shared keys");
        let err = load_config::<Cfg>("cfgtest", Some(&dir.join("missing.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
        std::fs::write(&file, "[cfgtest.nested]\nretries = \"many\"\n").unwrap();
        let err = load_config::<Cfg>("cfgtest", Some(&file)).unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
    }
}
