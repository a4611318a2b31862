//! A columnar index of offers, for ranking large sets fast.
//!
//! Ranking reads a few facts of every offer. In a [`Capability`] those facts
//! sit behind maps and strings scattered over the heap, so ranking 100,000 of
//! them is bound by memory latency. The index keeps them in flat arrays
//! (interned type, sorted feature ids, one column per constraint key) and
//! evaluates each predicate once per *distinct* value, through the very same
//! predicate code as the plain matcher: results are identical, to the bit.
//!
//! An index is immutable; build a new one when the set of offers changes.

use std::collections::HashMap;

use super::Match;
use super::score::{self, Components, Weights};
use crate::capability::Offer;
use crate::query::Eval;
use crate::value::ValueView;
use crate::{ConstraintValue, Query};

/// Offers arranged for fast ranking; see [`Matcher::rank_in`](super::Matcher::rank_in).
#[derive(Debug, Clone, Default)]
pub struct Index {
    offers: Vec<Offer>,
    kinds: Interner,
    kind_of: Vec<u32>,
    features: Interner,
    /// Each offer's feature ids, sorted, as a range into `feature_ids`.
    feature_span: Vec<(u32, u32)>,
    feature_ids: Vec<u32>,
    versions: Vec<semver::Version>,
    version_of: Vec<u32>,
    texts: Interner,
    lists: Vec<Vec<String>>,
    /// One column per constraint key, one slot per offer.
    columns: HashMap<String, Vec<Slot>>,
}

/// One offer's value for one constraint key, with strings and lists interned.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Missing,
    Bool(bool),
    Number(f64),
    Text(u32),
    List(u32),
}

#[derive(Debug, Clone, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}

impl Index {
    /// Indexes offers; ranking keeps their order for offers that tie completely.
    pub fn new(offers: Vec<Offer>) -> Self {
        let mut index = Self::default();
        let mut versions: HashMap<semver::Version, u32> = HashMap::new();
        let mut lists: HashMap<Vec<String>, u32> = HashMap::new();
        let n = offers.len();
        for (row, offer) in offers.iter().enumerate() {
            let cap = &offer.capability;
            index.kind_of.push(index.kinds.intern(cap.kind().as_str()));

            let start = index.feature_ids.len() as u32;
            let mut ids: Vec<u32> = cap
                .features()
                .iter()
                .map(|f| index.features.intern(f))
                .collect();
            ids.sort_unstable();
            index.feature_ids.extend(ids);
            index
                .feature_span
                .push((start, index.feature_ids.len() as u32));

            let v = match versions.get(cap.version()) {
                Some(&v) => v,
                None => {
                    let v = index.versions.len() as u32;
                    versions.insert(cap.version().clone(), v);
                    index.versions.push(cap.version().clone());
                    v
                }
            };
            index.version_of.push(v);

            for (key, value) in cap.constraints() {
                let slot = match value {
                    ConstraintValue::Bool(b) => Slot::Bool(*b),
                    ConstraintValue::Number(x) => Slot::Number(*x),
                    ConstraintValue::Text(t) => Slot::Text(index.texts.intern(t)),
                    ConstraintValue::List(items) => Slot::List(match lists.get(items) {
                        Some(&l) => l,
                        None => {
                            let l = index.lists.len() as u32;
                            lists.insert(items.clone(), l);
                            index.lists.push(items.clone());
                            l
                        }
                    }),
                };
                // Look up before inserting: cloning the key for every offer would dominate the build.
                match index.columns.get_mut(key) {
                    Some(column) => column[row] = slot,
                    None => {
                        let mut column = vec![Slot::Missing; n];
                        column[row] = slot;
                        index.columns.insert(key.clone(), column);
                    }
                }
            }
        }
        index.offers = offers;
        index
    }

    /// The indexed offers, in their original order.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Where `offer` sits in [`offers`](Self::offers), if it is one of this
    /// index's own offers (as every [`Match`] of a ranking over it is), so
    /// that a match leads back to data kept alongside the index in O(1).
    /// An equal offer stored elsewhere is not this index's: `None`.
    pub fn position_of(&self, offer: &Offer) -> Option<usize> {
        let size = std::mem::size_of::<Offer>().max(1);
        let base = self.offers.as_ptr().addr();
        let at = std::ptr::from_ref(offer).addr();
        let offset = at.checked_sub(base)?;
        let i = offset / size;
        (offset % size == 0 && i < self.offers.len()).then_some(i)
    }

    /// Number of offers.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether there are no offers.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Every offer that passes the filters, with its score, in index order.
    pub(super) fn scored<'a>(&'a self, q: &Query, weights: &Weights) -> Vec<Match<'a>> {
        let plan = Plan::new(self, q);
        (0..self.offers.len())
            .filter_map(|row| {
                let score = plan.score(self, q, weights, row)?;
                Some(Match {
                    offer: &self.offers[row],
                    score,
                })
            })
            .collect()
    }
}

/// A query resolved against one index: ids instead of strings, and each
/// predicate's verdict memoized per distinct value.
struct Plan<'q> {
    /// No offer can match (an unknown required feature or constraint key).
    impossible: bool,
    kind_ok: Vec<bool>,
    version_ok: Vec<bool>,
    required: Vec<u32>,
    /// Preferred feature ids; `None` for features no offer has.
    preferred: Vec<Option<u32>>,
    constraints: Vec<Resolved<'q>>,
}

struct Resolved<'q> {
    column: &'q [Slot],
    predicate: &'q crate::query::Predicate,
    text_holds: Vec<bool>,
    list_holds: Vec<bool>,
}

impl<'q> Plan<'q> {
    fn new(index: &'q Index, q: &'q Query) -> Self {
        let kind_ok = index
            .kinds
            .names
            .iter()
            .map(|k| crate::CapabilityType::new(k.as_str()).is_ok_and(|t| q.kind().matches(&t)))
            .collect();
        let version_ok = index
            .versions
            .iter()
            .map(|v| q.version().is_none_or(|r| r.matches(v)))
            .collect();
        let required: Option<Vec<u32>> =
            q.required().iter().map(|f| index.features.get(f)).collect();
        let preferred = q
            .preferred()
            .iter()
            .map(|f| index.features.get(f))
            .collect();
        let mut impossible = required.is_none();
        let mut constraints = Vec::with_capacity(q.constraints().len());
        for c in q.constraints() {
            let Some(column) = index.columns.get(&c.key) else {
                // Nobody states this key, so the constraint fails for everyone.
                impossible = true;
                continue;
            };
            let holds = |v: ValueView<'_>| c.predicate.eval(v) == Eval::Holds;
            constraints.push(Resolved {
                column,
                predicate: &c.predicate,
                text_holds: index
                    .texts
                    .names
                    .iter()
                    .map(|t| holds(ValueView::Text(t)))
                    .collect(),
                list_holds: index
                    .lists
                    .iter()
                    .map(|l| holds(ValueView::List(l)))
                    .collect(),
            });
        }
        Self {
            impossible,
            kind_ok,
            version_ok,
            required: required.unwrap_or_default(),
            preferred,
            constraints,
        }
    }

    fn score(&self, index: &Index, q: &Query, weights: &Weights, row: usize) -> Option<f64> {
        if self.impossible
            || !self.kind_ok[index.kind_of[row] as usize]
            || !self.version_ok[index.version_of[row] as usize]
        {
            return None;
        }
        let (start, end) = index.feature_span[row];
        let features = &index.feature_ids[start as usize..end as usize];
        if !self
            .required
            .iter()
            .all(|f| features.binary_search(f).is_ok())
        {
            return None;
        }
        for c in &self.constraints {
            let holds = match c.column[row] {
                Slot::Missing => false,
                Slot::Bool(b) => c.predicate.eval(ValueView::Bool(b)) == Eval::Holds,
                Slot::Number(x) => c.predicate.eval(ValueView::Number(x)) == Eval::Holds,
                Slot::Text(t) => c.text_holds[t as usize],
                Slot::List(l) => c.list_holds[l as usize],
            };
            if !holds {
                return None;
            }
        }
        let cap = &index.offers[row].capability;
        // Metadata lives only in the capability; it is read for the few offers that got this far.
        if !q
            .metadata()
            .iter()
            .filter(|m| m.required)
            .all(|m| score::metadata_eval(m, cap) == Some(Eval::Holds))
        {
            return None;
        }
        Some(weights.combine(&self.components(q, features, row, cap)))
    }

    /// The same arithmetic, in the same order, as [`score::components`].
    fn components(
        &self,
        q: &Query,
        features: &[u32],
        row: usize,
        cap: &crate::Capability,
    ) -> Components {
        let features = (!self.preferred.is_empty()).then(|| {
            let present = self
                .preferred
                .iter()
                .filter(|f| f.is_some_and(|f| features.binary_search(&f).is_ok()))
                .count();
            present as f64 / self.preferred.len() as f64
        });
        let mut sum = 0.0;
        let mut n = 0usize;
        for c in self
            .constraints
            .iter()
            .filter(|c| c.predicate.op.is_ordering())
        {
            if let Slot::Number(x) = c.column[row]
                && let Some(m) = c.predicate.margin(ValueView::Number(x))
            {
                sum += m;
            }
            n += 1;
        }
        let constraints = (n > 0).then(|| sum / n as f64);
        let Components { metadata, .. } = score::metadata_component(q, cap);
        Components {
            features,
            constraints,
            metadata,
        }
    }
}
