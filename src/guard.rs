//! Guards that decide whether heal may touch a target at all: namespace allow-lists, an
//! opt-in label, and the minimum number of ready replicas that must remain. Pure.

use std::collections::BTreeMap;

/// `KEY=VALUE` that a target must carry as a label before heal acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// Label key.
    pub key: String,
    /// Required value.
    pub value: String,
}

impl std::fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

impl serde::Serialize for LabelRequirement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LabelRequirement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LabelRequirement, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for LabelRequirement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                Ok(LabelRequirement {
                    key: k.to_string(),
                    value: v.to_string(),
                })
            }
            _ => Err(format!(
                "invalid label requirement {s:?}: expected KEY=VALUE, e.g. heal.dev/enabled=true"
            )),
        }
    }
}

/// Whether `value` matches a shell-style pattern with `*` (any run) and `?` (one char).
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Refuse when `namespace` matches none of `patterns` (an empty list allows all).
pub fn check_namespace_allowed(namespace: &str, patterns: &[String]) -> Result<(), String> {
    if patterns.is_empty() || patterns.iter().any(|p| glob_match(p, namespace)) {
        Ok(())
    } else {
        Err(format!(
            "namespace {namespace:?} is not in the allowed namespaces [{}]",
            patterns.join(", ")
        ))
    }
}

/// Refuse when the target's labels do not carry the opt-in label.
pub fn check_label(
    labels: &BTreeMap<String, String>,
    required: &LabelRequirement,
) -> Result<(), String> {
    match labels.get(&required.key) {
        Some(v) if *v == required.value => Ok(()),
        Some(v) => Err(format!(
            "target is not opted in: label {}={v:?}, required {}={:?}",
            required.key, required.key, required.value
        )),
        None => Err(format!(
            "target is not opted in: it has no label {}, required {}={:?}",
            required.key, required.key, required.value
        )),
    }
}

/// Refuse when removing `removing` ready pods from a workload with `ready` ready pods would
/// leave fewer than `min_available`.
pub fn check_min_available(
    workload: &str,
    ready: i64,
    removing: i64,
    min_available: i64,
) -> Result<(), String> {
    let left = ready - removing;
    if left >= min_available {
        Ok(())
    } else {
        Err(format!(
            "{workload} has {ready} ready replica(s); removing {removing} would leave {left}, below --min-available {min_available}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_patterns_use_shell_globs() {
        let pats = vec!["shop-*".to_string(), "payments".to_string()];
        assert!(check_namespace_allowed("shop-eu", &pats).is_ok());
        assert!(check_namespace_allowed("payments", &pats).is_ok());
        let err = check_namespace_allowed("kube-system", &pats).unwrap_err();
        assert!(
            err.contains("kube-system") && err.contains("shop-*"),
            "{err}"
        );
        assert!(check_namespace_allowed("anything", &[]).is_ok());
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "abcd"));
    }

    #[test]
    fn opt_in_label_must_match_exactly() {
        let req: LabelRequirement = "heal.dev/enabled=true".parse().unwrap();
        let mut labels = BTreeMap::new();
        assert!(check_label(&labels, &req).unwrap_err().contains("no label"));
        labels.insert("heal.dev/enabled".to_string(), "false".to_string());
        assert!(check_label(&labels, &req).is_err());
        labels.insert("heal.dev/enabled".to_string(), "true".to_string());
        assert!(check_label(&labels, &req).is_ok());
        assert!("novalue".parse::<LabelRequirement>().is_err());
    }

    #[test]
    fn min_available_refuses_taking_the_last_ready_replica() {
        assert!(check_min_available("deployment/web", 2, 1, 1).is_ok());
        let err = check_min_available("deployment/web", 1, 1, 1).unwrap_err();
        assert!(err.contains("would leave 0"), "{err}");
    }
}
