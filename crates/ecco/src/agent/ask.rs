//! The query pipeline: discover, match, select, fan out with failover,
//! aggregate.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use ecco_core::aggregation::{Failure, FailureKind, Grouping};
use ecco_core::performance::History;
use ecco_core::selection::SelectionError;
use ecco_core::{
    Aggregation, Aggregator, Capability, Consensus, Match, Offer, Query, Response, Selection,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::discovery::Discovery;
use super::{Agent, lock};
use crate::node::{Answer, NodeError, Request, RequestError};
use crate::{PeerId, agent_id};

/// A known offer and its match score for a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// Who offers it.
    #[serde(serialize_with = "as_base58")]
    pub peer: PeerId,
    /// What is offered.
    pub capability: Capability,
    /// The match score in `[0, 1]`.
    pub score: f64,
}

fn as_base58<S: serde::Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&peer.to_base58())
}

/// What a query gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answered {
    /// The aggregated answer, with the consensus data and each asked
    /// agent's outcome and latency.
    pub consensus: Consensus,
    /// Every candidate, ranked, as the selection saw them: each peer once,
    /// with its best matching offer.
    pub rankings: Vec<Ranked>,
    /// The agents asked, in the order they were asked (failover last).
    #[serde(serialize_with = "all_base58")]
    pub asked: Vec<PeerId>,
    /// How long the query took, discovery included, in milliseconds.
    pub elapsed_ms: f64,
    /// Receipts from the agents that answered and use a registry: what
    /// [`Agent::feedback`](super::Agent::feedback) reports with.
    pub receipts: Vec<ecco_registry::Receipt>,
}

fn all_base58<S: serde::Serializer>(peers: &[PeerId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(peers.iter().map(|p| p.to_base58()))
}

/// Why a query could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Too few agents match, or the strategy picks too few.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// The local node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A query being set up; [`Ask::send`] runs it. Defaults: `top-n:3`,
/// `majority-vote`, `min_agents` 1, a 30 s overall deadline (also each
/// agent's), 5 s of discovery.
#[derive(Debug)]
#[must_use = "a query does nothing until it is sent"]
pub struct Ask {
    agent: Agent,
    query: Query,
    selection: Selection,
    aggregation: Aggregation,
    grouping: Grouping,
    min_agents: usize,
    timeout: Duration,
    per_agent: Option<Duration>,
    discovery: Duration,
    candidates: usize,
    fresh_lookup: bool,
}

type Call = BoxFuture<'static, (usize, Result<Answer, RequestError>, Duration)>;

/// The calls of one query in flight.
struct Fanout {
    node: crate::node::Node,
    payload: Value,
    per_agent: Duration,
    calls: FuturesUnordered<Call>,
    /// Indices of the rankings still waited for.
    pending: BTreeSet<usize>,
    asked: Vec<PeerId>,
}

impl Fanout {
    fn launch(&mut self, i: usize, ranked: &Ranked) {
        let request = Request::new(ranked.capability.kind().clone(), self.payload.clone());
        let (node, peer, per_agent) = (self.node.clone(), ranked.peer, self.per_agent);
        self.asked.push(peer);
        self.pending.insert(i);
        self.calls.push(Box::pin(async move {
            let started = Instant::now();
            // Within the time, so that the agent stops when this stops waiting.
            let result = node.request_within(peer, request, per_agent).await;
            (i, result, started.elapsed())
        }));
    }
}

impl Ask {
    pub(super) fn new(agent: Agent, query: Query) -> Self {
        Self {
            agent,
            query,
            selection: Selection::TopN(std::num::NonZeroUsize::MIN.saturating_add(2)),
            aggregation: Aggregation::MajorityVote,
            grouping: Grouping::exact(),
            min_agents: 1,
            timeout: Duration::from_secs(30),
            per_agent: None,
            discovery: Duration::from_secs(5),
            candidates: 0,
            fresh_lookup: false,
        }
    }

    /// Which agents to ask.
    pub fn select(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// How to combine their answers.
    pub fn aggregate(mut self, aggregation: Aggregation) -> Self {
        self.aggregation = aggregation;
        self
    }

    /// How answers are grouped into agreeing clusters (default: exact).
    pub fn grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// At least this many agents must answer; failed ones are replaced by
    /// the next candidates while there are any.
    pub fn min_agents(mut self, n: usize) -> Self {
        self.min_agents = n;
        self
    }

    /// The overall deadline, from `send` to the result (default 30 s).
    /// Each agent is told how long it has; no request lasts longer than
    /// `Limits::max_request_timeout` (10 min by default), on this node and
    /// on the agent's: raise it on both for longer calls.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Each agent's deadline (default: the overall one).
    pub fn per_agent_timeout(mut self, timeout: Duration) -> Self {
        self.per_agent = Some(timeout);
        self
    }

    /// How long discovery may wait for enough candidates (within the overall
    /// deadline). It ends sooner when the selection's count (and
    /// [`candidates`](Self::candidates)) are known, or, with the DHT or a
    /// registry, once their lookup is over and `min_agents` are known: the
    /// lookup asked the mesh for every provider, so fewer agents than
    /// `top-n` wants do not make a query sit out the whole wait. A lookup
    /// that reached nobody (a node that knows no peer yet, as a LAN node
    /// before mDNS has found its neighbours) does not count: the wait goes
    /// on for the agents that announcements and mDNS bring. A lookup
    /// of the same query that finished within the last 30 s stands for a
    /// new one (what it found is in the directory, kept current by
    /// announcements) unless fewer than `min_agents` are known, or the
    /// query asks for a [`fresh_lookup`](Self::fresh_lookup).
    pub fn discovery_wait(mut self, wait: Duration) -> Self {
        self.discovery = wait;
        self
    }

    /// Discovery waits for a new DHT lookup and registry search (within the
    /// discovery wait), even when enough agents are known or the same query
    /// looked up lately: for when agents may have come since that only a
    /// lookup would find (those not connected to this node's mesh, which
    /// announcements do not reach). Without the DHT and a registry there
    /// is nothing to look up, and this changes nothing.
    pub fn fresh_lookup(mut self) -> Self {
        self.fresh_lookup = true;
        self
    }

    /// Looks for at least this many candidates before asking (within the
    /// discovery wait), beyond what the selection and `min_agents` need:
    /// more candidates mean more room for failover.
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = n;
        self
    }

    /// Runs the query with `payload` as every agent's input.
    pub async fn send(self, payload: Value) -> Result<Answered, QueryError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let needed = self.min_agents.max(1);
        let count = self.selection.count();
        let want = count.unwrap_or(1).max(needed).max(self.candidates);
        // `all` wants every agent there is: discovery also waits for the
        // DHT lookup and the registry search, not only for the first ones.
        let discovery = Discovery {
            want,
            enough: needed,
            finish_lookup: count.is_none() || self.fresh_lookup,
            reuse_lookup: !self.fresh_lookup,
            wait: self.discovery.min(self.timeout),
        };
        let rankings = best_per_peer(self.agent.discover_until(&self.query, discovery).await?);
        let (chosen, mut reserve) = self.choose(&rankings)?;

        let mut fanout = Fanout {
            node: self.agent.node().clone(),
            payload,
            per_agent: self.per_agent.unwrap_or(self.timeout),
            calls: FuturesUnordered::new(),
            pending: BTreeSet::new(),
            asked: Vec::new(),
        };
        for &i in &chosen {
            fanout.launch(i, &rankings[i]);
        }
        let mut expected = chosen.len();
        let mut aggregator = self.aggregator(expected, &[]);
        let mut successes = 0;
        let mut receipts = Vec::new();
        loop {
            if fanout.calls.is_empty() {
                break;
            }
            let next = tokio::select! {
                () = tokio::time::sleep_until(deadline) => None,
                next = fanout.calls.next() => next,
            };
            let Some((i, result, latency)) = next else {
                // The overall deadline: whoever has not answered timed out.
                for &i in &fanout.pending {
                    let failure = Failure::new(
                        FailureKind::Timeout,
                        format!("no answer within the query's {:?}", self.timeout),
                    );
                    aggregator.push(self.response(&rankings[i], Err(failure), None));
                    self.record(&rankings[i], None);
                }
                break;
            };
            fanout.pending.remove(&i);
            let ranked = &rankings[i];
            let (outcome, success) = match result {
                Ok(answer) => {
                    successes += 1;
                    receipts.extend(answer.receipt.map(|r| *r));
                    (Ok(answer.result), Some(latency))
                }
                Err(e) => (Err(Failure::new(e.kind(), e.detail())), None),
            };
            // The response carries the agent's record from before this
            // call, so that weighing does not count the call in itself.
            aggregator.push(self.response(ranked, outcome, Some(latency)));
            self.record(ranked, success);
            // Failover: replace failures while too few can still succeed.
            let mut grew = false;
            while successes + fanout.pending.len() < needed
                && let Some(next) = reserve.pop_front()
            {
                fanout.launch(next, &rankings[next]);
                expected += 1;
                grew = true;
            }
            if grew {
                aggregator = self.aggregator(expected, aggregator.responses());
            }
            if aggregator.progress() == ecco_core::aggregation::Progress::Decided {
                // Dropping the other calls cancels them. They are reported,
                // but not held against their agents: nothing went wrong.
                for &i in &fanout.pending {
                    let failure =
                        Failure::new(FailureKind::Cancelled, "the result was decided without it");
                    aggregator.push(self.response(&rankings[i], Err(failure), None));
                }
                break;
            }
        }
        self.agent.save_memory_soon();
        Ok(Answered {
            consensus: aggregator.finish(),
            rankings,
            asked: fanout.asked,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            receipts,
        })
    }

    /// The selection, as indices into `rankings`, and the rest in rank
    /// order as the failover reserve.
    fn choose(&self, rankings: &[Ranked]) -> Result<(Vec<usize>, VecDeque<usize>), QueryError> {
        let offers: Vec<Offer> = rankings
            .iter()
            .map(|r| Offer::new(agent_id(&r.peer), r.capability.clone()))
            .collect();
        let matches: Vec<Match<'_>> = offers
            .iter()
            .zip(rankings)
            .map(|(offer, r)| Match {
                offer,
                score: r.score,
            })
            .collect();
        let picked = {
            let memory = lock(&self.agent.inner.memory);
            lock(&self.agent.inner.selector).select(
                &self.selection,
                &self.query,
                &matches,
                &*memory as &dyn History,
                self.min_agents,
            )?
        };
        let at = positions(&offers);
        let chosen: Vec<usize> = picked
            .iter()
            .filter_map(|m| at.get(&std::ptr::from_ref(m.offer)).copied())
            .collect();
        let taken: BTreeSet<usize> = chosen.iter().copied().collect();
        let reserve = (0..rankings.len()).filter(|i| !taken.contains(i)).collect();
        Ok((chosen, reserve))
    }

    fn aggregator(&self, expected: usize, so_far: &[Response]) -> Aggregator {
        let mut aggregator = Aggregator::new(self.aggregation.clone())
            .grouping(self.grouping.clone())
            .expect(expected);
        for r in so_far {
            aggregator.push(r.clone());
        }
        aggregator
    }

    fn response(
        &self,
        ranked: &Ranked,
        outcome: Result<Value, Failure>,
        latency: Option<Duration>,
    ) -> Response {
        let agent = agent_id(&ranked.peer);
        let before = lock(&self.agent.inner.memory).performance(&agent).copied();
        let mut response = match outcome {
            Ok(value) => Response::answer(agent, value),
            Err(failure) => Response::failed(agent, failure),
        }
        .with_score(ranked.score);
        if let Some(latency) = latency {
            response = response.with_latency(latency);
        }
        if let Some(before) = before {
            response = response.with_performance(before);
        }
        response
    }

    fn record(&self, ranked: &Ranked, success: Option<Duration>) {
        let agent = agent_id(&ranked.peer);
        let mut memory = lock(&self.agent.inner.memory);
        match success {
            Some(latency) => memory.success(&agent, latency),
            None => memory.failure(&agent),
        }
    }
}

/// Each peer once, with its best offer: a peer with several matching
/// capabilities is one agent, asked and counted once. `ranked` is best
/// first, so the first offer of each peer is its best.
fn best_per_peer(ranked: Vec<Ranked>) -> Vec<Ranked> {
    let mut seen = std::collections::HashSet::new();
    ranked.into_iter().filter(|r| seen.insert(r.peer)).collect()
}

/// Where each offer sits in `offers`, by address: a match refers to its
/// offer, and this finds the offer's position without a linear search.
fn positions(offers: &[Offer]) -> std::collections::HashMap<*const Offer, usize> {
    offers
        .iter()
        .enumerate()
        .map(|(i, o)| (std::ptr::from_ref(o), i))
        .collect()
}
