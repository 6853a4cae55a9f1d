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

/// A position in a YAML source text, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

impl Location {
    /// Where `error` happened, when yaml_serde knows.
    pub fn of(error: &Error) -> Option<Location> {
        error.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
    }
}

/// The text of `error` without the trailing " at line L column C" that yaml_serde appends
/// (callers print the location themselves).
pub fn message(error: &Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => text[..i].to_string(),
        _ => text,
    }
}

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// The value under this key of a mapping.
    Key(String),
    /// The key itself (to point at a misspelt or duplicate key rather than its value).
    KeyOf(String),
    /// The element at this index of a sequence.
    Index(usize),
}

impl Segment {
    /// The value under `key`.
    pub fn key(key: impl Into<String>) -> Segment {
        Segment::Key(key.into())
    }
}

/// Find where the node at `path` starts in document number `document` (0-based) of the YAML
/// stream `src`. Returns `None` when the path does not exist. Used to point semantic errors
/// (a cycle, an unknown step) at the line a user must edit.
pub fn locate(src: &str, document: usize, path: &[Segment]) -> Option<Location> {
    use serde::de::DeserializeSeed;
    let doc = yaml_serde::Deserializer::from_str(src).nth(document)?;
    match probe::Probe(path).deserialize(doc) {
        Err(e) if e.to_string().contains(probe::FOUND) => Location::of(&e),
        _ => None,
    }
}

mod probe {
    //! A serde visitor that walks a path and fails on purpose at its end, so that
    //! yaml_serde attaches the position of that node to the error.

    use super::Segment;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    pub(super) const FOUND: &str = "\u{1}found";

    pub(super) struct Probe<'p>(pub(super) &'p [Segment]);

    impl<'de> DeserializeSeed<'de> for Probe<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    fn here<E: de::Error>(path: &[Segment]) -> Result<(), E> {
        if path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }

    /// Deserializes a mapping key as text (or `None` for keys that are not scalars) and
    /// fails on purpose when it equals the wanted key.
    struct KeyProbe<'k>(Option<&'k str>);

    impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
        type Value = Option<String>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for KeyProbe<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if self.0 == Some(v) {
                return Err(E::custom(FOUND));
            }
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    impl<'de> Visitor<'de> for Probe<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any YAML node")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            here(self.0)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            here(self.0)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            here(self.0)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            here(self.0)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            here(self.0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            here(self.0)
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let (wanted, rest, key_itself) = match self.0.split_first() {
                None => return Err(de::Error::custom(FOUND)),
                Some((Segment::Key(k), rest)) => (k.as_str(), rest, false),
                Some((Segment::KeyOf(k), rest)) => (k.as_str(), rest, true),
                Some((Segment::Index(_), _)) => return Ok(()),
            };
            let probe_key = if key_itself { Some(wanted) } else { None };
            while let Some(key) = map.next_key_seed(KeyProbe(probe_key))? {
                if key.as_deref() == Some(wanted) {
                    return map.next_value_seed(Probe(rest));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let (wanted, rest) = match self.0.split_first() {
                None => return Err(de::Error::custom(FOUND)),
                Some((Segment::Index(i), rest)) => (*i, rest),
                Some(_) => return Ok(()),
            };
            let mut i = 0;
            loop {
                if i == wanted {
                    return seq.next_element_seed(Probe(rest)).map(|_| ());
                }
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_points_at_the_node_a_path_names_in_a_later_document() {
        let src = "a: 1\n---\nspec:\n  steps:\n    - name: x\n    - name: y\n      after: [z]\n";
        let path = [
            Segment::key("spec"),
            Segment::key("steps"),
            Segment::Index(1),
            Segment::key("after"),
            Segment::Index(0),
        ];
        assert_eq!(
            locate(src, 1, &path),
            Some(Location {
                line: 7,
                column: 15
            })
        );
        let key = [Segment::key("spec"), Segment::KeyOf("steps".into())];
        assert_eq!(locate(src, 1, &key), Some(Location { line: 4, column: 3 }));
        assert_eq!(locate(src, 1, &[Segment::key("nope")]), None);
    }

    #[test]
    fn message_drops_the_location_suffix_yaml_serde_appends() {
        let err = from_str::<std::collections::BTreeMap<String, u32>>("a: x\n").unwrap_err();
        assert!(!message(&err).contains(" at line "), "{}", message(&err));
        assert_eq!(Location::of(&err).map(|l| l.line), Some(1));
    }
}
