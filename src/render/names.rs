//! Kubernetes name and label rules, label sanitising, and the YAML scalar quoting every
//! rendered value goes through.

use std::fmt::Write as _;

/// Longest label value Kubernetes accepts.
pub const LABEL_VALUE_MAX: usize = 63;

/// Check a DNS-1123 label (namespaces, step names): 1–63 lower-case alphanumerics or `-`,
/// starting and ending with an alphanumeric.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "is {} characters long, at most 63 are allowed",
            s.len()
        ));
    }
    label_chars(s)
}

/// Check a DNS-1123 subdomain (most object names) of at most `max` characters.
pub fn check_dns_subdomain(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max {
        return Err(format!(
            "is {} characters long, at most {max} are allowed",
            s.len()
        ));
    }
    for part in s.split('.') {
        if part.is_empty() {
            return Err("must not contain empty '.'-separated parts".into());
        }
        label_chars(part)?;
    }
    Ok(())
}

fn label_chars(s: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}: only lower-case letters, digits and '-' are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Whether `s` is a valid Kubernetes label value as it stands.
pub fn is_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    s.len() <= LABEL_VALUE_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a valid label key: an optional DNS subdomain prefix and `/`, then a name
/// of 1–63 alphanumerics, `-`, `_` or `.` starting and ending with an alphanumeric.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && check_dns_subdomain(p, 253).is_err()
    {
        return false;
    }
    !name.is_empty() && is_label_value(name)
}

/// Turn any string into a valid label value. A value that already is one is kept; any other
/// keeps a readable prefix of its allowed characters and gains a hash of the whole raw value,
/// so distinct raw values stay distinct. The raw value belongs in an annotation.
pub fn label_value(raw: &str) -> String {
    if is_label_value(raw) {
        return raw.to_string();
    }
    let hash = format!("{:016x}", fnv1a64(raw.as_bytes()));
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(LABEL_VALUE_MAX - hash.len() - 1)
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if cleaned.is_empty() {
        hash
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// A lock name for a target: `heal-<namespace>-<kind>-<name>`, lower case, with anything but
/// letters, digits, `-` and `.` replaced by `-`; cluster-scoped targets use `cluster` as
/// namespace. Names longer than 253 characters keep a prefix and gain a hash.
pub fn mutex_name(namespace: &str, kind: &str, name: &str) -> String {
    let ns = if namespace.is_empty() {
        "cluster"
    } else {
        namespace
    };
    let raw = format!("heal-{ns}-{kind}-{name}");
    let cleaned: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.len() <= 253 {
        return cleaned;
    }
    let hash = format!("{:016x}", fnv1a64(raw.as_bytes()));
    format!("{}-{hash}", &cleaned[..253 - hash.len() - 1])
}

/// Longest error message shown: values in messages come from alerts and may be huge.
pub const MESSAGE_MAX_CHARS: usize = 400;

/// Cut a message that quotes untrusted values to a readable length.
pub fn shorten(message: String) -> String {
    if message.chars().count() <= MESSAGE_MAX_CHARS {
        return message;
    }
    let cut: String = message.chars().take(MESSAGE_MAX_CHARS).collect();
    format!("{cut}... (cut from {} bytes)", message.len())
}

/// 64-bit FNV-1a: a small, stable, dependency-free hash for names (not for security).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Quote `s` as a YAML double-quoted scalar that reads back as exactly `s`.
///
/// The output is pure ASCII: printable ASCII is kept, `"` and `\` are escaped, and every
/// other character is written as an escape (`\n`, `\t`, `\uXXXX`, `\UXXXXXXXX`). Escaping
/// everything outside ASCII matters because a YAML 1.1 parser folds NEL, LS and PS inside a
/// quoted scalar like line breaks, and rejects some other characters outright. A JSON string
/// literal is not enough: its surrogate-pair escapes are invalid YAML.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_with_their_size() {
        assert_eq!(shorten("short".into()), "short");
        let long = shorten("x".repeat(5000));
        assert!(
            long.len() < 500 && long.ends_with("(cut from 5000 bytes)"),
            "{long}"
        );
    }

    #[test]
    fn valid_label_values_are_kept_as_they_are() {
        assert_eq!(label_value("high-cpu"), "high-cpu");
        assert_eq!(label_value("4b1c9e0d6a2f7e31"), "4b1c9e0d6a2f7e31");
        assert_eq!(label_value(""), "");
    }

    #[test]
    fn invalid_label_values_become_valid_and_distinct() {
        let a = label_value("High CPU {{x}}");
        let b = label_value("High CPU {{y}}");
        assert!(is_label_value(&a), "{a}");
        assert!(is_label_value(&b), "{b}");
        assert_ne!(a, b);
        assert!(a.starts_with("High-CPU"), "{a}");
        let long = label_value(&"x".repeat(1 << 20));
        assert!(is_label_value(&long) && long.len() <= 63, "{long}");
        assert!(is_label_value(&label_value("\"\n---\n")));
    }

    #[test]
    fn label_keys_follow_the_prefix_and_name_rules() {
        assert!(is_label_key("heal.dev/policy"));
        assert!(is_label_key("app.kubernetes.io/managed-by"));
        assert!(!is_label_key("Heal.dev/policy"));
        assert!(!is_label_key("heal.dev/"));
        assert!(!is_label_key("a b"));
    }

    #[test]
    fn mutex_names_are_keyed_on_namespace_kind_and_name() {
        assert_eq!(
            mutex_name("shop", "deployment", "web"),
            "heal-shop-deployment-web"
        );
        assert_eq!(
            mutex_name("", "node", "worker-1"),
            "heal-cluster-node-worker-1"
        );
        assert_eq!(
            mutex_name("shop", "rollouts.argoproj.io", "web"),
            "heal-shop-rollouts.argoproj.io-web"
        );
        assert!(mutex_name("a", "b", &"c".repeat(400)).len() <= 253);
    }

    #[test]
    fn dns_names_are_checked_with_a_reason() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("Web").unwrap_err().contains("'W'"));
        assert!(check_dns_label("-web").is_err());
        assert!(check_dns_label(&"a".repeat(64)).unwrap_err().contains("64"));
        assert!(check_dns_subdomain("web.shop", 253).is_ok());
        assert!(check_dns_subdomain("web..shop", 253).is_err());
    }

    #[test]
    fn quoted_scalars_read_back_as_the_original_string() {
        for s in [
            "plain",
            "quote \" and backslash \\",
            "new\nline\r\ttab",
            "---\n...\n- a: b",
            "{{workflow.parameters.x}} $(params.x)",
            "nel\u{85} ls\u{2028} ps\u{2029} bom\u{feff} nul\u{0}",
            "emoji 😀 and ü",
            "# not a comment: &anchor *alias !tag",
        ] {
            let quoted = yaml_quote(s);
            assert!(quoted.is_ascii());
            let back: String = crate::yaml::from_str(&quoted).expect("valid YAML");
            assert_eq!(back, s, "{quoted}");
        }
    }
}
