//! Structured logs with `tracing`, to stderr. The filter comes from `--log-level` /
//! `IMGSEARCH_LOG`: a level, or `target=level` directives (`info,imgsearch=debug`).

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid --log-level / IMGSEARCH_LOG \"{value}\": {reason}; use a level (error, warn, info, debug, trace, off) or directives like info,imgsearch=debug")]
    Filter { value: String, reason: String },
}

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Parses the filter (a bare level applies to every target). Unlike `Targets`' own parser,
/// a bare word that is not a level is an error, not a target name: `--log-level loud`
/// should not silently log nothing.
pub fn parse_filter(value: &str) -> Result<Targets, LogError> {
    let err = |reason: String| LogError::Filter {
        value: value.to_string(),
        reason,
    };
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) => (Some(t.trim()), l.trim()),
            None => (None, directive),
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(err(format!("\"{level}\" is not a level")));
        }
        if let Some(t) = target {
            let ok = !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-');
            if !ok {
                return Err(err(format!("\"{t}\" is not a target (module path)")));
            }
        }
    }
    Targets::from_str(value.trim()).map_err(|e| err(e.to_string()))
}

/// Installs the global subscriber: compact lines on stderr, no colours.
pub fn init(value: &str) -> Result<(), LogError> {
    let filter = parse_filter(value)?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn levels_and_directives_parse() {
        for ok in ["info", "debug", "warn", "off", "info,imgsearch=debug"] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        let t = parse_filter("warn,imgsearch=trace").unwrap_or_default();
        assert!(t.would_enable("imgsearch::api", &tracing::Level::TRACE));
        assert!(!t.would_enable("hyper", &tracing::Level::INFO));
        assert_eq!(
            parse_filter("info")
                .map(|t| t.default_level())
                .ok()
                .flatten(),
            Some(LevelFilter::INFO)
        );
        let e = parse_filter("loud").unwrap_err().to_string();
        assert!(e.contains("loud") && e.contains("IMGSEARCH_LOG"), "{e}");
    }
}
