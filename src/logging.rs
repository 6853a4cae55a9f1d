//! How heal and heald talk to a person on stderr: structured log lines (`--log-format
//! json|plain`) and the one-line form of a command-line error. Shared by both binaries'
//! front ends, so neither imports the other's.

use std::io::IsTerminal;

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON lines (the default when stderr is not a terminal).
    Json,
    /// Human-readable lines (coloured only when stderr is a terminal).
    Plain,
}

/// Install the global tracing subscriber, writing to stderr. `filter_env` names the
/// variable that overrides the default filter (`heal=info`). `None` picks plain lines for a
/// terminal and JSON otherwise. A second call changes nothing.
pub fn init(format: Option<LogFormat>, filter_env: &str) {
    let terminal = std::io::stderr().is_terminal();
    let format = format.unwrap_or(if terminal {
        LogFormat::Plain
    } else {
        LogFormat::Json
    });
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("heal=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never in a file or a log collector.
        .with_ansi(terminal)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// A command-line parser error as one line: every paragraph of clap's message (the
/// error, the missing arguments, the allowed values, a tip) but the usage and the
/// "for more information" hint, which the caller replaces.
pub fn usage_error_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    one_line(&text)
}

/// [`usage_error_line`] on clap's rendered text.
pub fn one_line(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n") {
        let lines: Vec<&str> = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let Some(first) = lines.first() else { continue };
        if first.starts_with("Usage:") || first.starts_with("For more information") {
            continue;
        }
        let joined = lines.join(" ");
        parts.push(joined.trim_start_matches("error: ").to_string());
    }
    if parts.is_empty() {
        "invalid arguments".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_arguments_are_named() {
        let text = "error: the following required arguments were not provided:\n  --replicas <N>\n\nUsage: heal scale --replicas <N> <TARGET>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "the following required arguments were not provided: --replicas <N>"
        );
    }

    #[test]
    fn allowed_values_and_tips_are_kept() {
        let text = "error: invalid value 'foo' for '--type <TYPE>'\n  [possible values: merge, json]\n\n  tip: a similar value exists: 'json'\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "invalid value 'foo' for '--type <TYPE>' [possible values: merge, json]; tip: a similar value exists: 'json'"
        );
    }
}
