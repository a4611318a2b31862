//! What the DHT holds: the provider-record keys a capability is published
//! under, the key a query looks up, and the quota that keeps peers from
//! stuffing a node's record store. Pure: no I/O, times passed in.

use std::collections::{BTreeSet, HashMap};

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

/// Most addresses kept per provider record stored for another peer, and
/// most bytes they take together: a record's addresses are the sender's
/// to choose, and would otherwise be bounded only by the message size.
pub const MAX_RECORD_ADDRESSES: usize = 8;
/// See [`MAX_RECORD_ADDRESSES`].
pub const MAX_RECORD_ADDRESS_BYTES: usize = 1024;

/// Trims the addresses of a provider record to [`MAX_RECORD_ADDRESSES`]
/// and [`MAX_RECORD_ADDRESS_BYTES`], keeping the first ones.
pub fn trim_addresses(addresses: &mut Vec<libp2p::Multiaddr>) {
    let mut bytes = 0;
    let mut kept = 0;
    for a in addresses.iter() {
        bytes += a.as_ref().len();
        if kept == MAX_RECORD_ADDRESSES || bytes > MAX_RECORD_ADDRESS_BYTES {
            break;
        }
        kept += 1;
    }
    addresses.truncate(kept);
}

/// The provider records other peers hold in this node's store, counted so
/// that none of them can fill it: each provider has at most `per_peer`
/// keys, each key at most `per_key` providers, and all of them together at
/// most `total` records. Records are indexed by expiry, so that lapsed
/// ones are found without a scan and leave the store (libp2p's store
/// drops them only when someone asks for their key).
#[derive(Debug)]
pub struct Quota {
    per_peer: usize,
    per_key: usize,
    total: usize,
    /// (provider, key) -> when the record expires, in ms.
    records: HashMap<(PeerId, Vec<u8>), u64>,
    by_expiry: BTreeSet<(u64, PeerId, Vec<u8>)>,
    keys_of: HashMap<PeerId, usize>,
    providers_of: HashMap<Vec<u8>, usize>,
}

impl Quota {
    /// At most `per_peer` keys per provider, `per_key` providers per key
    /// and `total` records in all.
    pub fn new(per_peer: usize, per_key: usize, total: usize) -> Self {
        Self {
            per_peer,
            per_key,
            total,
            records: HashMap::new(),
            by_expiry: BTreeSet::new(),
            keys_of: HashMap::new(),
            providers_of: HashMap::new(),
        }
    }

    /// Whether to store `provider`'s record under `key`, valid until
    /// `expires_ms`; counts it when so. A renewal of a held record is
    /// always admitted. Call [`Quota::prune`] first, so that lapsed
    /// records make room.
    pub fn admit(&mut self, provider: PeerId, key: &[u8], expires_ms: u64) -> bool {
        let id = (provider, key.to_vec());
        if let Some(expires) = self.records.get_mut(&id) {
            let old = std::mem::replace(expires, expires_ms);
            self.by_expiry.remove(&(old, id.0, id.1.clone()));
            self.by_expiry.insert((expires_ms, id.0, id.1));
            return true;
        }
        let full = self.records.len() >= self.total
            || self.keys_of.get(&provider).copied().unwrap_or(0) >= self.per_peer
            || self.providers_of.get(key).copied().unwrap_or(0) >= self.per_key;
        if full {
            return false;
        }
        *self.keys_of.entry(provider).or_default() += 1;
        *self.providers_of.entry(id.1.clone()).or_default() += 1;
        self.by_expiry.insert((expires_ms, provider, id.1.clone()));
        self.records.insert(id, expires_ms);
        true
    }

    /// Forgets `provider`'s record under `key`: the store did not take it,
    /// or it was removed.
    pub fn release(&mut self, provider: PeerId, key: &[u8]) {
        let id = (provider, key.to_vec());
        if let Some(expires) = self.records.remove(&id) {
            self.by_expiry.remove(&(expires, id.0, id.1));
            self.forget(provider, key);
        }
    }

    /// Forgets the records that have expired by `now_ms`, and returns them
    /// so that the store drops them too.
    pub fn prune(&mut self, now_ms: u64) -> Vec<(PeerId, Vec<u8>)> {
        let mut expired = Vec::new();
        while let Some(first) = self.by_expiry.first() {
            if first.0 > now_ms {
                break;
            }
            let Some((_, provider, key)) = self.by_expiry.pop_first() else {
                break;
            };
            self.records.remove(&(provider, key.clone()));
            self.forget(provider, &key);
            expired.push((provider, key));
        }
        expired
    }

    fn forget(&mut self, provider: PeerId, key: &[u8]) {
        if let Some(n) = self.keys_of.get_mut(&provider) {
            *n -= 1;
            if *n == 0 {
                self.keys_of.remove(&provider);
            }
        }
        if let Some(n) = self.providers_of.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.providers_of.remove(key);
            }
        }
    }

    /// Keys currently counted for `provider`.
    pub fn held_by(&self, provider: &PeerId) -> usize {
        self.keys_of.get(provider).copied().unwrap_or(0)
    }

    /// Records currently counted, over all providers.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is counted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| Identity::generate().peer_id()).collect()
    }

    #[test]
    fn a_peer_holds_at_most_its_share() {
        let p = peers(2);
        let mut q = Quota::new(2, 10, 100);
        assert!(q.admit(p[0], b"k1", 100));
        assert!(q.admit(p[0], b"k2", 100));
        assert!(!q.admit(p[0], b"k3", 100), "over the share");
        assert!(q.admit(p[0], b"k1", 150), "a renewal is admitted");
        assert!(q.admit(p[1], b"k3", 100), "others are not affected");
        // Once k2 has expired, the share has room again; k1 was renewed.
        let mut expired = q.prune(100);
        expired.sort();
        let mut want = vec![(p[0], b"k2".to_vec()), (p[1], b"k3".to_vec())];
        want.sort();
        assert_eq!(expired, want);
        assert!(q.admit(p[0], b"k3", 200));
        assert_eq!(q.held_by(&p[0]), 2);
        assert_eq!(q.held_by(&p[1]), 0);
    }

    #[test]
    fn a_key_holds_at_most_its_providers_and_the_store_its_total() {
        let p = peers(4);
        let mut q = Quota::new(10, 2, 3);
        assert!(q.admit(p[0], b"k", 100));
        assert!(q.admit(p[1], b"k", 200));
        assert!(!q.admit(p[2], b"k", 100), "the key is full");
        assert!(q.admit(p[2], b"other", 100));
        assert!(!q.admit(p[3], b"third", 100), "the store is full");
        assert_eq!(q.len(), 3);
        // When one record has expired, a newcomer takes its place.
        assert_eq!(q.prune(100).len(), 2);
        assert!(q.admit(p[3], b"k", 300));
        assert!(q.admit(p[3], b"third", 300));
        assert!(!q.admit(p[0], b"k", 300), "p1 and p3 fill the key");
    }

    #[test]
    fn a_released_record_frees_its_room() {
        let p = peers(2);
        let mut q = Quota::new(1, 1, 1);
        assert!(q.admit(p[0], b"k", 100));
        assert!(!q.admit(p[1], b"k", 100));
        q.release(p[0], b"k");
        assert!(q.is_empty());
        assert!(q.admit(p[1], b"k", 100));
        // Releasing what is not held changes nothing.
        q.release(p[0], b"k");
        assert_eq!(q.len(), 1);
        assert!(q.prune(99).is_empty());
        assert_eq!(q.prune(100), [(p[1], b"k".to_vec())]);
        assert!(q.is_empty());
    }

    #[test]
    fn record_addresses_are_trimmed() {
        let addr =
            |i: u16| -> libp2p::Multiaddr { format!("/ip4/10.0.0.1/tcp/{i}").parse().unwrap() };
        let mut few: Vec<_> = (1..4).map(addr).collect();
        trim_addresses(&mut few);
        assert_eq!(few.len(), 3);
        let mut many: Vec<_> = (1..100).map(addr).collect();
        trim_addresses(&mut many);
        assert_eq!(many, (1..=8).map(addr).collect::<Vec<_>>());
        let long: libp2p::Multiaddr = format!("/dns4/{}.example/tcp/1", "a".repeat(200))
            .parse()
            .unwrap();
        let mut big = vec![long; 8];
        trim_addresses(&mut big);
        assert_eq!(big.len(), MAX_RECORD_ADDRESS_BYTES / big[0].as_ref().len());
    }
}
