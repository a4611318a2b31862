//! Negotiation: before work is sent, a client asks a provider for an offer
//! and accepts it, counters it, or declines. Rounds are bounded; the
//! provider decides. The messages travel as requests on the request protocol
//! (see `docs/PROTOCOL.md`); this module holds the types and the default
//! provider rule, free of I/O.

use std::collections::BTreeMap;

use ecco_core::{Capability, ConstraintValue};
use serde::{Deserialize, Serialize};

/// Most rounds (the first request for an offer counts as one); a step
/// beyond it is declined.
pub const MAX_ROUNDS: u32 = 4;

/// The constraint read as the price.
pub const PRICE: &str = "price";
/// The constraint read as the expected latency, in milliseconds.
pub const LATENCY_MS: &str = "latency_ms";

/// What is agreed on: a price, an expected latency, and any other terms the
/// capability declares (its other constraints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// The price, in the capability's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// The expected latency, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Other terms, by constraint name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, ConstraintValue>,
}

impl Terms {
    /// The terms a capability declares: its `price` and `latency_ms`
    /// constraints, and the others as they are.
    pub fn declared(capability: &Capability) -> Self {
        let mut terms = Terms::default();
        for (key, value) in capability.constraints() {
            match (key.as_str(), value) {
                (PRICE, ConstraintValue::Number(n)) => terms.price = Some(*n),
                (LATENCY_MS, ConstraintValue::Number(n)) => terms.latency_ms = Some(*n),
                _ => {
                    terms.other.insert(key.clone(), value.clone());
                }
            }
        }
        terms
    }
}

/// A client's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Asks for an offer (round 1).
    Ask,
    /// Proposes other terms.
    Counter {
        /// This step's round, 2 or more.
        round: u32,
        /// The terms proposed.
        terms: Terms,
    },
    /// Accepts these terms (the provider's last offer, as a rule).
    Accept {
        /// The terms accepted.
        terms: Terms,
    },
    /// Ends the negotiation.
    Decline,
}

impl Step {
    /// The step's round: 1 for `Ask`, as stated for `Counter`, 0 for the
    /// closing steps (which are always allowed).
    pub fn round(&self) -> u32 {
        match self {
            Step::Ask => 1,
            Step::Counter { round, .. } => *round,
            Step::Accept { .. } | Step::Decline => 0,
        }
    }
}

/// A provider's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// An offer; `last` says no better one will come.
    Offer {
        /// The terms offered.
        terms: Terms,
        /// Whether this is the final offer.
        last: bool,
    },
    /// Agreed on these terms: send the work.
    Agreed {
        /// The terms agreed.
        terms: Terms,
    },
    /// No deal.
    Declined {
        /// Why, for people.
        reason: String,
    },
}

/// The provider's rule when its agent sets none: offer the declared terms,
/// agree to exactly those, answer a counter with them as the last offer.
pub fn default_rule(capability: Option<&Capability>, step: &Step) -> Reply {
    let Some(capability) = capability else {
        return Reply::Declined {
            reason: "this agent does not offer that capability".to_owned(),
        };
    };
    let declared = Terms::declared(capability);
    match step {
        Step::Ask => Reply::Offer {
            terms: declared,
            last: false,
        },
        Step::Counter { .. } => Reply::Offer {
            terms: declared,
            last: true,
        },
        Step::Accept { terms } if *terms == declared => Reply::Agreed { terms: declared },
        Step::Accept { .. } => Reply::Declined {
            reason: "those are not the terms offered".to_owned(),
        },
        Step::Decline => Reply::Declined {
            reason: "declined by the client".to_owned(),
        },
    }
}

/// Checks the round bound, before any rule runs.
pub fn check_round(step: &Step) -> Result<(), Reply> {
    if step.round() > MAX_ROUNDS {
        return Err(Reply::Declined {
            reason: format!("negotiations end after {MAX_ROUNDS} rounds"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capability {
        "llm/chat m@1.0.0 price=0.01 latency_ms=300 region=eu"
            .parse()
            .unwrap()
    }

    #[test]
    fn declared_terms_come_from_the_constraints() {
        let t = Terms::declared(&cap());
        assert_eq!(t.price, Some(0.01));
        assert_eq!(t.latency_ms, Some(300.0));
        assert_eq!(t.other.len(), 1);
    }

    #[test]
    fn the_default_rule_holds_to_the_declared_terms() {
        let c = cap();
        let declared = Terms::declared(&c);
        assert_eq!(
            default_rule(Some(&c), &Step::Ask),
            Reply::Offer {
                terms: declared.clone(),
                last: false
            }
        );
        let cheaper = Terms {
            price: Some(0.005),
            ..declared.clone()
        };
        assert_eq!(
            default_rule(
                Some(&c),
                &Step::Counter {
                    round: 2,
                    terms: cheaper.clone()
                }
            ),
            Reply::Offer {
                terms: declared.clone(),
                last: true
            }
        );
        assert!(matches!(
            default_rule(Some(&c), &Step::Accept { terms: cheaper }),
            Reply::Declined { .. }
        ));
        assert_eq!(
            default_rule(
                Some(&c),
                &Step::Accept {
                    terms: declared.clone()
                }
            ),
            Reply::Agreed { terms: declared }
        );
        assert!(matches!(
            default_rule(None, &Step::Ask),
            Reply::Declined { .. }
        ));
    }

    #[test]
    fn rounds_are_bounded() {
        let counter = |round| Step::Counter {
            round,
            terms: Terms::default(),
        };
        assert!(check_round(&counter(MAX_ROUNDS)).is_ok());
        assert!(check_round(&counter(MAX_ROUNDS + 1)).is_err());
        assert!(
            check_round(&Step::Accept {
                terms: Terms::default()
            })
            .is_ok()
        );
    }
}
