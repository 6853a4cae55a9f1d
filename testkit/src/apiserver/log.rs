//! The request log: every request the server saw, in arrival order, with its answer.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// HTTP method (`GET`, `PATCH`, ...).
    pub method: String,
    /// Path without the query (`/apis/apps/v1/namespaces/default/deployments/web`).
    pub path: String,
    /// Decoded query parameters (the last value wins when a key repeats).
    pub query: BTreeMap<String, String>,
    /// The query string as sent.
    pub raw_query: String,
    /// `Content-Type`, with parameters.
    pub content_type: Option<String>,
    /// `Accept`.
    pub accept: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// The body: parsed JSON, or YAML for `application/apply-patch+yaml`; `None` when
    /// empty or unparsable (see `raw_body`).
    pub body: Option<Value>,
    /// The body as text, when there was one.
    pub raw_body: Option<String>,
    /// HTTP status answered; `0` when the connection was reset without an answer.
    pub status: u16,
    /// Whether an injected fault (or chaos) produced the answer.
    pub injected: bool,
}

impl Recorded {
    /// A query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Whether this is an API discovery request (`/api`, `/apis`, `/api/v1`,
    /// `/apis/{group}`, `/apis/{group}/{version}`) or an OpenAPI fetch.
    pub fn is_discovery(&self) -> bool {
        let segs: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] => self.method == "GET",
            ["openapi", ..] => true,
            _ => false,
        }
    }

    /// `PATCH /path?query -> 200`.
    pub fn summary(&self) -> String {
        let q = if self.raw_query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.raw_query)
        };
        let ct = self
            .content_type
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let fault = if self.injected { " (injected)" } else { "" };
        format!(
            "{} {}{q}{ct} -> {}{fault}",
            self.method, self.path, self.status
        )
    }
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        if let Some(b) = &self.body {
            let text = b.to_string();
            let cut: String = text.chars().take(400).collect();
            write!(f, "\n      body: {cut}")?;
            if cut.len() < text.len() {
                write!(f, "...")?;
            }
        }
        Ok(())
    }
}

/// The whole log, one request per line, for assertion messages.
pub fn render(log: &[Recorded]) -> String {
    if log.is_empty() {
        return "  (no requests)".to_string();
    }
    log.iter()
        .enumerate()
        .map(|(i, r)| format!("  {i:>3}. {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}
