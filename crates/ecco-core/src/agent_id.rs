//! The stable identifier of an agent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ValidationError, limits, validate};

/// The stable identifier of an agent, as text.
///
/// On the network this is the base58 form of the agent's libp2p `PeerId`; the
/// domain only needs it to be a short, printable, totally ordered key, which is
/// what ranking tie-breaks and round-robin rotation rely on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    /// Validates an id: 1 to [`limits::MAX_AGENT_ID_LEN`] bytes of printable,
    /// non-whitespace ASCII.
    pub fn new(id: impl Into<String>) -> Result<Self, ValidationError> {
        let id = id.into();
        validate::text("agent", &id, limits::MAX_AGENT_ID_LEN, false)?;
        if let Some((at, found)) = id.char_indices().find(|&(_, c)| !c.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "agent",
                crate::Invalid::BadChar {
                    found,
                    at,
                    allowed: "printable ASCII without spaces",
                },
            ));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, unlike `write_str`, honours width and alignment (`{:<8}`).
        f.pad(&self.0)
    }
}

impl TryFrom<String> for AgentId {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> Self {
        id.0
    }
}

impl std::str::FromStr for AgentId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
