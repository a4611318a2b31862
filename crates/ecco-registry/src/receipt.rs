//! Interaction receipts: an agent's signed statement that it served a client.
//!
//! Feedback must carry one, so that a client can only rate an agent it really
//! talked to, and only once per interaction.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ecco_identity::{Domain, Identity, PeerId, verify_with_peer_id};
use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
use utoipa::ToSchema;

/// The signature domain of receipts.
pub const DOMAIN: Domain = Domain::from_static("ecco/receipt/v1");

/// Longest interaction id accepted, in bytes.
pub const MAX_INTERACTION_LEN: usize = 64;
/// Longest capability type accepted in a receipt, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 128;

/// A receipt, signed by `agent` for one interaction with `client`.
///
/// The signed bytes are the fields joined by newlines, in this order:
/// `agent`, `client`, `interaction`, `capability`, `issued_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The agent that served (the one that may be rated).
    pub agent: String,
    /// The client it served (the only one that may rate it).
    pub client: String,
    /// A random id for the interaction, unique per agent (1 to 64 bytes, no NUL).
    pub interaction: String,
    /// The capability type the request named (1 to 128 bytes, no NUL).
    pub capability: String,
    /// When the agent answered, Unix milliseconds.
    pub issued_at_ms: i64,
    /// The agent's Ed25519 signature, base64url without padding.
    pub signature: String,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A field is empty or too long, or a peer id does not parse.
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    /// The signature is not the agent's.
    #[error("the receipt's signature is not the agent's")]
    BadSignature,
}

impl Receipt {
    /// Issues a receipt for an interaction `identity` just served.
    #[must_use]
    pub fn issue(
        identity: &Identity,
        client: &PeerId,
        capability: &str,
        issued_at_ms: i64,
    ) -> Self {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        let mut receipt = Self {
            agent: identity.peer_id().to_base58(),
            client: client.to_base58(),
            interaction: B64.encode(id),
            capability: capability.to_owned(),
            issued_at_ms,
            signature: String::new(),
        };
        receipt.signature = B64.encode(identity.sign(DOMAIN, &receipt.signed_bytes()));
        receipt
    }

    /// Checks the fields and that the agent signed them.
    ///
    /// # Errors
    /// [`ReceiptError`] saying which check failed.
    pub fn verify(&self) -> Result<(PeerId, PeerId), ReceiptError> {
        let agent: PeerId = self
            .agent
            .parse()
            .map_err(|_| ReceiptError::Malformed("agent is not a peer id"))?;
        let client: PeerId = self
            .client
            .parse()
            .map_err(|_| ReceiptError::Malformed("client is not a peer id"))?;
        // PostgreSQL cannot store NUL in TEXT; refused here so that every
        // backend answers alike.
        if self.interaction.is_empty()
            || self.interaction.len() > MAX_INTERACTION_LEN
            || self.interaction.contains('\0')
        {
            return Err(ReceiptError::Malformed(
                "interaction must be 1 to 64 bytes, without NUL",
            ));
        }
        if self.capability.is_empty()
            || self.capability.len() > MAX_CAPABILITY_LEN
            || self.capability.contains('\0')
        {
            return Err(ReceiptError::Malformed(
                "capability must be 1 to 128 bytes, without NUL",
            ));
        }
        if self.issued_at_ms < 0 {
            return Err(ReceiptError::Malformed("issued_at_ms must not be negative"));
        }
        let signature = B64
            .decode(&self.signature)
            .map_err(|_| ReceiptError::Malformed("signature is not base64url"))?;
        verify_with_peer_id(&agent, DOMAIN, &self.signed_bytes(), &signature)
            .map_err(|_| ReceiptError::BadSignature)?;
        Ok((agent, client))
    }

    fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.agent, self.client, self.interaction, self.capability, self.issued_at_ms
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_receipt_verifies_and_names_both_sides() {
        let agent = Identity::generate();
        let client = Identity::generate().peer_id();
        let receipt = Receipt::issue(&agent, &client, "llm/chat", 1_700_000_000_000);
        assert_eq!(receipt.verify(), Ok((agent.peer_id(), client)));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let agent = Identity::generate();
        let client = Identity::generate().peer_id();
        let good = Receipt::issue(&agent, &client, "llm/chat", 1);
        let other = Identity::generate().peer_id().to_base58();
        let tampered = [
            Receipt {
                client: other.clone(),
                ..good.clone()
            },
            Receipt {
                interaction: "forged".into(),
                ..good.clone()
            },
            Receipt {
                capability: "llm/other".into(),
                ..good.clone()
            },
            Receipt {
                issued_at_ms: 2,
                ..good.clone()
            },
        ];
        for receipt in tampered {
            assert_eq!(
                receipt.verify(),
                Err(ReceiptError::BadSignature),
                "{receipt:?}"
            );
        }
        // Claiming another agent signed it fails too.
        let wrong_agent = Receipt {
            agent: other,
            ..good
        };
        assert_eq!(wrong_agent.verify(), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn malformed_receipts_say_what_is_wrong() {
        let agent = Identity::generate();
        let good = Receipt::issue(&agent, &agent.peer_id(), "x", 1);
        let bad = Receipt {
            agent: "not-a-peer".into(),
            ..good.clone()
        };
        assert!(matches!(bad.verify(), Err(ReceiptError::Malformed(_))));
        let bad = Receipt {
            signature: "***".into(),
            ..good
        };
        assert!(matches!(bad.verify(), Err(ReceiptError::Malformed(_))));
    }
}
