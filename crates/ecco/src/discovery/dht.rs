//! What the DHT holds: the provider-record keys a capability is published
//! under, the key a query looks up, and the quota that keeps peers from
//! stuffing a node's record store. Pure: no I/O, times passed in.

use std::collections::{BTreeMap, HashMap};

use ecco_core::capability::TypePattern;
use ecco_core::{Capability, CapabilityType, Query};
use libp2p::PeerId;

/// Most keys one node publishes provider records under. Type keys come
/// first, then wildcard (`prefix/*`) keys, then type-plus-feature keys.
pub const MAX_PUBLISHED_KEYS: usize = 256;

/// The readable DHT keys of a mesh. Types and features use only
/// `a-z 0-9 - _ . /`, so `+` and `*` cannot be confused with them.
///
/// - `/ecco/<mesh>/provides/<type>`: providers of a type;
/// - `/ecco/<mesh>/provides/<type>+<feature>`: of a type with a feature;
/// - `/ecco/<mesh>/provides/<prefix>/*`: of any type strictly below a prefix.
fn prefix(mesh: &str) -> String {
    format!("/ecco/{mesh}/provides/")
}

/// The key for providers of `kind`.
pub fn type_key(mesh: &str, kind: &CapabilityType) -> Vec<u8> {
    format!("{}{kind}", prefix(mesh)).into_bytes()
}

/// The key for providers of `kind` with `feature`.
pub fn feature_key(mesh: &str, kind: &CapabilityType, feature: &str) -> Vec<u8> {
    format!("{}{kind}+{feature}", prefix(mesh)).into_bytes()
}

/// The key for providers of any type strictly below `parent`.
pub fn below_key(mesh: &str, parent: &CapabilityType) -> Vec<u8> {
    format!("{}{parent}/*", prefix(mesh)).into_bytes()
}

/// Every key `capabilities` are published under, deduplicated, most useful
/// first, at most [`MAX_PUBLISHED_KEYS`].
pub fn provider_keys(mesh: &str, capabilities: &[Capability]) -> Vec<Vec<u8>> {
    let mut types = Vec::new();
    let mut below = Vec::new();
    let mut features = Vec::new();
    for c in capabilities {
        types.push(type_key(mesh, c.kind()));
        let segments: Vec<&str> = c.kind().segments().collect();
        for n in 1..segments.len() {
            if let Ok(parent) = CapabilityType::new(segments[..n].join("/")) {
                below.push(below_key(mesh, &parent));
            }
        }
        for f in c.features() {
            features.push(feature_key(mesh, c.kind(), f));
        }
    }
    let mut seen = std::collections::HashSet::new();
    types
        .into_iter()
        .chain(below)
        .chain(features)
        .filter(|k| seen.insert(k.clone()))
        .take(MAX_PUBLISHED_KEYS)
        .collect()
}

/// The one key to look up for `query`: the type with its first required
/// feature when there is one (the narrowest), else the type, else the
/// wildcard. `None` for `*`: the DHT cannot list every provider.
pub fn lookup_key(mesh: &str, query: &Query) -> Option<Vec<u8>> {
    match query.kind() {
        TypePattern::Any => None,
        TypePattern::Below(parent) => Some(below_key(mesh, parent)),
        TypePattern::Exact(kind) => Some(match query.required().iter().next() {
            Some(feature) => feature_key(mesh, kind, feature),
            None => type_key(mesh, kind),
        }),
    }
}

/// Whether `key` is a well-formed provider key of `mesh`, as a peer must
/// send for this node to store its record.
pub fn is_provider_key(mesh: &str, key: &[u8]) -> bool {
    let Ok(key) = std::str::from_utf8(key) else {
        return false;
    };
    let Some(rest) = key.strip_prefix(&prefix(mesh)) else {
        return false;
    };
    if let Some(parent) = rest.strip_suffix("/*") {
        return CapabilityType::new(parent).is_ok();
    }
    match rest.split_once('+') {
        Some((kind, feature)) => {
            CapabilityType::new(kind).is_ok()
                && Capability::builder(kind, "k", "1.0.0")
                    .feature(feature)
                    .build()
                    .is_ok()
        }
        None => CapabilityType::new(rest).is_ok(),
    }
}

/// Counts the keys each peer holds provider records under in this node's
/// store, so that one peer can fill at most its share.
#[derive(Debug)]
pub struct Quota {
    per_peer: usize,
    max_peers: usize,
    /// Per provider: key -> when its record expires, in ms.
    held: HashMap<PeerId, BTreeMap<Vec<u8>, u64>>,
}

impl Quota {
    /// At most `per_peer` keys per provider, and `max_peers` providers tracked.
    pub fn new(per_peer: usize, max_peers: usize) -> Self {
        Self {
            per_peer,
            max_peers: max_peers.max(1),
            held: HashMap::new(),
        }
    }

    /// Whether to store `provider`'s record under `key`, valid until
    /// `expires_ms`; counts it when so. A renewal of a held key is always
    /// admitted.
    pub fn admit(&mut self, provider: PeerId, key: &[u8], now_ms: u64, expires_ms: u64) -> bool {
        if !self.held.contains_key(&provider) {
            if self.held.len() >= self.max_peers {
                self.prune(now_ms);
            }
            if self.held.len() >= self.max_peers {
                return false;
            }
        }
        let keys = self.held.entry(provider).or_default();
        keys.retain(|_, expires| *expires > now_ms);
        if !keys.contains_key(key) && keys.len() >= self.per_peer {
            return false;
        }
        keys.insert(key.to_vec(), expires_ms);
        true
    }

    /// Forgets what has expired.
    pub fn prune(&mut self, now_ms: u64) {
        self.held.retain(|_, keys| {
            keys.retain(|_, expires| *expires > now_ms);
            !keys.is_empty()
        });
    }

    /// Keys currently counted for `provider`.
    pub fn held_by(&self, provider: &PeerId) -> usize {
        self.held.get(provider).map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn cap(text: &str) -> Capability {
        text.parse().unwrap()
    }

    fn text(keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter()
            .map(|k| String::from_utf8(k.clone()).unwrap())
            .collect()
    }

    #[test]
    fn a_capability_is_published_per_type_wildcard_and_feature() {
        let keys = provider_keys(
            "m",
            &[
                cap("llm/chat/fast a@1.0.0 +summarize +translate"),
                cap("llm/chat b@1.0.0 +summarize"),
            ],
        );
        assert_eq!(
            text(&keys),
            [
                "/ecco/m/provides/llm/chat/fast",
                "/ecco/m/provides/llm/chat",
                "/ecco/m/provides/llm/*",
                "/ecco/m/provides/llm/chat/*",
                "/ecco/m/provides/llm/chat/fast+summarize",
                "/ecco/m/provides/llm/chat/fast+translate",
                "/ecco/m/provides/llm/chat+summarize",
            ]
        );
        for k in &keys {
            assert!(is_provider_key("m", k), "{k:?}");
            assert!(!is_provider_key("other", k));
        }
    }

    #[test]
    fn publication_is_capped() {
        let caps: Vec<Capability> = (0..60)
            .map(|i| {
                Capability::builder(format!("t{i}/x"), "n", "1.0.0")
                    .features((0..10).map(|f| format!("f{f}")))
                    .build()
                    .unwrap()
            })
            .collect();
        let keys = provider_keys("m", &caps);
        assert_eq!(keys.len(), MAX_PUBLISHED_KEYS);
        // Every type key made it; feature keys fill the rest.
        assert!(text(&keys[..60]).iter().all(|k| !k.contains('+')));
    }

    #[test]
    fn a_query_looks_up_its_narrowest_key() {
        let q = |s: &str| s.parse::<Query>().unwrap();
        let key = |s: &str| lookup_key("m", &q(s)).map(|k| String::from_utf8(k).unwrap());
        assert_eq!(
            key("llm/chat").as_deref(),
            Some("/ecco/m/provides/llm/chat")
        );
        assert_eq!(
            key("llm/chat +translate +summarize").as_deref(),
            Some("/ecco/m/provides/llm/chat+summarize")
        );
        assert_eq!(key("llm/*").as_deref(), Some("/ecco/m/provides/llm/*"));
        assert_eq!(key("*"), None);
    }

    #[test]
    fn foreign_and_malformed_keys_are_not_stored() {
        for bad in [
            &b"/ecco/m/provides/"[..],
            b"/ecco/m/provides/Upper",
            b"/ecco/m/provides/a+",
            b"/ecco/m/provides/a+b+c",
            b"/ecco/m/provides/a//b",
            b"/ecco/m/provides//*",
            b"/other/m/provides/a",
            b"\xff\xfe",
        ] {
            assert!(!is_provider_key("m", bad), "{bad:?}");
        }
    }

    #[test]
    fn a_peer_holds_at_most_its_share() {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let mut q = Quota::new(2, 10);
        assert!(q.admit(a, b"k1", 0, 100));
        assert!(q.admit(a, b"k2", 0, 100));
        assert!(!q.admit(a, b"k3", 0, 100), "over the share");
        assert!(q.admit(a, b"k1", 50, 150), "a renewal is admitted");
        assert!(q.admit(b, b"k3", 0, 100), "others are not affected");
        // Once k2 has expired, a's share has room again.
        assert!(q.admit(a, b"k3", 100, 200));
        assert_eq!(q.held_by(&a), 2);
    }

    #[test]
    fn the_number_of_providers_is_bounded() {
        let peers: Vec<PeerId> = (0..3).map(|_| Identity::generate().peer_id()).collect();
        let mut q = Quota::new(5, 2);
        assert!(q.admit(peers[0], b"k", 0, 100));
        assert!(q.admit(peers[1], b"k", 0, 200));
        assert!(!q.admit(peers[2], b"k", 0, 100), "full");
        // When one's records have expired, a newcomer takes its place.
        assert!(q.admit(peers[2], b"k", 100, 300));
        assert_eq!(q.held_by(&peers[0]), 0);
    }
}
