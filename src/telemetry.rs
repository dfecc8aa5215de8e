//! Logging setup: `tracing` to stderr, human-readable or JSON.

use crate::domain::vocab::text_enum;
use tracing_subscriber::EnvFilter;

text_enum!(
    /// Log line format (`--log-format`).
    LogFormat("log format") { Plain => "plain", Json => "json" }
);

/// `--log-format` takes the same words.
impl clap::ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
