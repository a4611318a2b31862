//! Property tests for domain-separated signatures.

use std::sync::OnceLock;

use ecco_identity::{Domain, Error, Identity, verify, verify_with_peer_id};
use proptest::prelude::*;

const DOMAIN: Domain = Domain::from_static("ecco/proptest/v1");
const OTHER: Domain = Domain::from_static("ecco/proptest/v2");

fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(Identity::generate)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..512)) {
        let id = identity();
        let sig = id.sign(DOMAIN, &msg);
        prop_assert!(verify(&id.public(), DOMAIN, &msg, &sig).is_ok());
        prop_assert!(verify_with_peer_id(&id.peer_id(), DOMAIN, &msg, &sig).is_ok());
        prop_assert!(matches!(
            verify(&id.public(), OTHER, &msg, &sig),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn any_single_bit_flip_of_the_message_fails(
        msg in proptest::collection::vec(any::<u8>(), 1..512),
        bit in any::<prop::sample::Index>(),
    ) {
        let id = identity();
        let sig = id.sign(DOMAIN, &msg);
        let bit = bit.index(msg.len() * 8);
        let mut flipped = msg.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(matches!(
            verify(&id.public(), DOMAIN, &flipped, &sig),
            Err(Error::BadSignature)
        ));
    }

    #[test]
    fn any_single_bit_flip_of_the_signature_fails(
        msg in proptest::collection::vec(any::<u8>(), 0..64),
        bit in 0usize..512,
    ) {
        let id = identity();
        let mut sig = id.sign(DOMAIN, &msg);
        sig[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(matches!(
            verify(&id.public(), DOMAIN, &msg, &sig),
            Err(Error::BadSignature)
        ));
    }
}
