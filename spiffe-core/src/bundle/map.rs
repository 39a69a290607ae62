//! The SPIFFE bundle map (`{"trust_domains": {"<td>": <bundle>, ...}}`),
//! with duplicate keys refused (MAP-2).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::Value;

/// `trust_domains`, kept as (key, raw bundle) pairs in document order,
/// duplicates included, so the caller can refuse them (a plain map would
/// silently keep the last one).
pub(crate) struct Entries(pub(crate) Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of trust-domain name to SPIFFE bundle")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The bundle-map document (MAP-1: `trust_domains` must exist).
#[derive(Deserialize)]
pub(crate) struct BundleMap {
    pub(crate) trust_domains: Entries,
}
