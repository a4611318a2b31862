//! Groups agreeing answers: exact groups first, then single-linkage over a similarity.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::Response;
use super::similarity::{self, Exact, Lexical, Similarity};
use crate::{AgentId, Invalid, ValidationError};

/// How answers are grouped into agreeing clusters.
///
/// Normalized-equal answers always agree. With a similarity other than
/// [`Exact`], two groups also agree when their similarity is at least
/// `threshold`, and agreement is transitive (single linkage), so the
/// clusters do not depend on the order in which answers arrived.
#[derive(Debug, Clone)]
pub struct Grouping {
    similarity: Arc<dyn Similarity>,
    threshold: f64,
    exact: bool,
}

impl Default for Grouping {
    fn default() -> Self {
        Self::exact()
    }
}

impl Grouping {
    /// Agreement means normalized equality.
    pub fn exact() -> Self {
        Self {
            similarity: Arc::new(Exact),
            threshold: 1.0,
            exact: true,
        }
    }

    /// Agreement by [`Lexical`] cosine similarity at `threshold`, in `(0, 1]`.
    pub fn lexical(threshold: f64) -> Result<Self, ValidationError> {
        Self::with(Arc::new(Lexical::default()), threshold)
    }

    /// Agreement by any similarity at `threshold`, in `(0, 1]`.
    pub fn with(similarity: Arc<dyn Similarity>, threshold: f64) -> Result<Self, ValidationError> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(ValidationError::new(
                "grouping.threshold",
                Invalid::OutOfRange {
                    value: threshold,
                    range: "(0, 1]",
                },
            ));
        }
        Ok(Self {
            similarity,
            threshold,
            exact: false,
        })
    }

    /// The threshold at which answers agree.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Whether two answers agree under this grouping.
    pub fn agree(&self, a: &Value, b: &Value) -> bool {
        similarity::exact_key(a) == similarity::exact_key(b)
            || (!self.exact && self.similarity.similarity(a, b) >= self.threshold)
    }
}

/// A set of agents whose answers agree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// The representative answer, as one of its agents gave it.
    pub answer: Value,
    /// The agents, in ascending id order.
    pub agents: Vec<AgentId>,
    /// The sum of the agents' [weights](crate::performance::weight).
    pub weight: f64,
    /// The cluster's share of the successful responses, by count or by
    /// weight depending on the strategy, in `[0, 1]`.
    pub support: f64,
    /// Indices of the members in the responses, in ascending order.
    #[serde(skip)]
    pub(crate) members: Vec<usize>,
}

/// Clusters the successful responses; the result is sorted by descending
/// count, then weight, then best member score, then smallest agent id.
pub(crate) fn clusters(
    responses: &[Response],
    grouping: &Grouping,
    by_weight: bool,
) -> Vec<Cluster> {
    // 1. Exact groups, in first-seen order.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, r) in responses.iter().enumerate() {
        let Some(value) = r.value() else { continue };
        let key = similarity::exact_key(value);
        match index.get(&key) {
            Some(&g) => groups[g].push(i),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![i]);
            }
        }
    }

    // 2. Single linkage across groups (union-find), skipped for exact grouping.
    let mut parent: Vec<usize> = (0..groups.len()).collect();
    if !grouping.exact {
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                let (va, vb) = (
                    responses[groups[a][0]].value(),
                    responses[groups[b][0]].value(),
                );
                if let (Some(va), Some(vb)) = (va, vb)
                    && grouping.similarity.similarity(va, vb) >= grouping.threshold
                {
                    let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut by_root: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    for g in 0..groups.len() {
        let root = find(&mut parent, g);
        by_root[root].push(g);
    }

    // 3. One cluster per root, represented by its largest exact group.
    let successes = responses.iter().filter(|r| r.value().is_some()).count() as f64;
    let total_weight: f64 = responses
        .iter()
        .filter(|r| r.value().is_some())
        .map(Response::weight)
        .sum();
    let mut out: Vec<Cluster> = by_root
        .into_iter()
        .filter(|gs| !gs.is_empty())
        .map(|gs| {
            let best_group = gs
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    groups[a]
                        .len()
                        .cmp(&groups[b].len())
                        .then_with(|| {
                            best_score(responses, &groups[a])
                                .total_cmp(&best_score(responses, &groups[b]))
                        })
                        .then_with(|| {
                            min_agent(responses, &groups[b]).cmp(&min_agent(responses, &groups[a]))
                        })
                })
                .unwrap_or(gs[0]);
            let speaker = best_member(responses, &groups[best_group]);
            let mut members: Vec<usize> =
                gs.iter().flat_map(|&g| groups[g].iter().copied()).collect();
            members.sort_unstable();
            let mut agents: Vec<AgentId> = members
                .iter()
                .map(|&i| responses[i].agent.clone())
                .collect();
            agents.sort();
            let weight: f64 = members.iter().map(|&i| responses[i].weight()).sum();
            let support = if by_weight {
                weight / total_weight
            } else {
                members.len() as f64 / successes
            };
            Cluster {
                answer: responses[speaker].value().cloned().unwrap_or(Value::Null),
                agents,
                weight,
                support,
                members,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let primary = if by_weight {
            b.weight.total_cmp(&a.weight)
        } else {
            b.members.len().cmp(&a.members.len())
        };
        primary
            .then_with(|| b.members.len().cmp(&a.members.len()))
            .then_with(|| b.weight.total_cmp(&a.weight))
            .then_with(|| {
                best_score(responses, &b.members).total_cmp(&best_score(responses, &a.members))
            })
            .then_with(|| a.agents.first().cmp(&b.agents.first()))
    });
    out
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn best_score(responses: &[Response], members: &[usize]) -> f64 {
    members
        .iter()
        .map(|&i| responses[i].score)
        .fold(f64::NEG_INFINITY, f64::max)
}

fn min_agent<'a>(responses: &'a [Response], members: &[usize]) -> Option<&'a AgentId> {
    members.iter().map(|&i| &responses[i].agent).min()
}

/// The member with the highest score, ties to the smallest agent id.
fn best_member(responses: &[Response], members: &[usize]) -> usize {
    members
        .iter()
        .copied()
        .min_by(|&a, &b| {
            responses[b]
                .score
                .total_cmp(&responses[a].score)
                .then_with(|| responses[a].agent.cmp(&responses[b].agent))
        })
        .unwrap_or(members[0])
}
