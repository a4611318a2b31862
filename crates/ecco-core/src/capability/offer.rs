//! An agent's capability: what the matcher ranks.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::Capability;
use crate::AgentId;

/// One capability offered by one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Who offers it.
    pub agent: AgentId,
    /// What is offered.
    pub capability: Capability,
}

impl Offer {
    /// Pairs an agent with one of its capabilities.
    pub fn new(agent: AgentId, capability: Capability) -> Self {
        Self { agent, capability }
    }

    /// The stable identity order used to break ranking ties and to rotate
    /// round-robin: agent id, then type, then name, then version.
    pub fn cmp_identity(&self, other: &Self) -> Ordering {
        self.agent
            .cmp(&other.agent)
            .then_with(|| self.capability.kind().cmp(other.capability.kind()))
            .then_with(|| self.capability.name().cmp(other.capability.name()))
            .then_with(|| self.capability.version().cmp(other.capability.version()))
    }
}
