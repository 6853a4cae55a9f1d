//! The one place YAML is read and written (yaml_serde, the maintained serde_yaml successor).

use serde::{Serialize, de::DeserializeOwned};

/// A YAML syntax or shape error, with the location yaml_serde reports.
pub type Error = yaml_serde::Error;

/// Parse one YAML document into `T`.
pub fn from_str<T: DeserializeOwned>(s: &str) -> Result<T, Error> {
    yaml_serde::from_str(s)
}

/// Parse every document of a multi-document YAML stream into `T`.
pub fn from_str_multi<T: DeserializeOwned>(s: &str) -> Result<Vec<T>, Error> {
    let mut out = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(s) {
        out.push(T::deserialize(doc)?);
    }
    Ok(out)
}

/// Serialize `value` as a YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, Error> {
    yaml_serde::to_string(value)
}
