//! Argon2id key derivation from a [`Passphrase`](crate::Passphrase).

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::passphrase::Passphrase;

/// Argon2id cost parameters used to turn a passphrase into an encryption key.
///
/// Every value is checked against fixed bounds, both when building one with
/// [`KdfParams::new`] and when reading one from a file: below the minimums a
/// file would be too cheap to attack, above the maximums a crafted file could
/// make a loader allocate gigabytes or spin for minutes.
///
/// | parameter | minimum | default | maximum |
/// |-----------|---------|---------|---------|
/// | `m_cost` (KiB of memory) | 8 192 (8 MiB) | 19 456 (19 MiB) | 1 048 576 (1 GiB) |
/// | `t_cost` (passes) | 1 | 2 | 16 |
/// | `p_cost` (lanes) | 1 | 1 | 16 |
///
/// The default is OWASP's recommended Argon2id configuration for interactive
/// logins. [`KdfParams::MINIMUM`] is the cheapest accepted setting, meant for
/// tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// Smallest accepted memory cost, in KiB.
    pub const MIN_M_COST: u32 = 8 * 1024;
    /// Largest accepted memory cost, in KiB (1 GiB).
    pub const MAX_M_COST: u32 = 1024 * 1024;
    /// Smallest accepted number of passes.
    pub const MIN_T_COST: u32 = 1;
    /// Largest accepted number of passes.
    pub const MAX_T_COST: u32 = 16;
    /// Smallest accepted parallelism.
    pub const MIN_P_COST: u32 = 1;
    /// Largest accepted parallelism.
    pub const MAX_P_COST: u32 = 16;

    /// The default: 19 456 KiB, 2 passes, 1 lane.
    pub const DEFAULT: Self = Self {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };

    /// The cheapest accepted parameters: 8 192 KiB, 1 pass, 1 lane. For tests.
    pub const MINIMUM: Self = Self {
        m_cost: Self::MIN_M_COST,
        t_cost: Self::MIN_T_COST,
        p_cost: Self::MIN_P_COST,
    };

    /// Builds parameters: `m_cost` in KiB, `t_cost` passes, `p_cost` lanes.
    ///
    /// # Errors
    /// [`Error::InvalidKdfParams`] if any value is outside the bounds above.
    pub fn new(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self> {
        Self::checked(m_cost.into(), t_cost.into(), p_cost.into())
            .map_err(|reason| Error::InvalidKdfParams { reason })
    }

    /// Checks values as read from a file (wider than `u32` so that absurd
    /// numbers are reported as out of bounds rather than as a type error).
    pub(crate) fn checked(m_cost: u64, t_cost: u64, p_cost: u64) -> Result<Self, String> {
        let m = bounded("m_cost", m_cost, Self::MIN_M_COST, Self::MAX_M_COST, " KiB")?;
        let t = bounded("t_cost", t_cost, Self::MIN_T_COST, Self::MAX_T_COST, "")?;
        let p = bounded("p_cost", p_cost, Self::MIN_P_COST, Self::MAX_P_COST, "")?;
        Ok(Self {
            m_cost: m,
            t_cost: t,
            p_cost: p,
        })
    }

    /// Memory cost in KiB.
    #[must_use]
    pub fn m_cost(&self) -> u32 {
        self.m_cost
    }

    /// Number of passes.
    #[must_use]
    pub fn t_cost(&self) -> u32 {
        self.t_cost
    }

    /// Degree of parallelism (lanes).
    #[must_use]
    pub fn p_cost(&self) -> u32 {
        self.p_cost
    }

    /// Each cost raised to at least `floor`'s: never weaker than either.
    /// Re-encrypting with `old.at_least(KdfParams::DEFAULT)` keeps a key's
    /// stronger custom parameters and replaces weaker ones.
    #[must_use]
    pub fn at_least(self, floor: Self) -> Self {
        Self {
            m_cost: self.m_cost.max(floor.m_cost),
            t_cost: self.t_cost.max(floor.t_cost),
            p_cost: self.p_cost.max(floor.p_cost),
        }
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

fn bounded(name: &str, value: u64, min: u32, max: u32, unit: &str) -> Result<u32, String> {
    if value < u64::from(min) {
        return Err(format!(
            "{name} = {value}{unit} is below the minimum of {min}{unit}"
        ));
    }
    match u32::try_from(value) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(format!(
            "{name} = {value}{unit} is above the maximum of {max}{unit}"
        )),
    }
}

/// Length of the salt, in bytes.
pub(crate) const SALT_LEN: usize = 16;
/// Length of the derived encryption key.
pub(crate) const KEY_LEN: usize = 32;
/// Length of the passphrase check value.
pub(crate) const CHECK_LEN: usize = 16;

/// What Argon2id derives from a passphrase: the AEAD key and, from the
/// independent next bytes of the same output, a check value that tells a wrong
/// passphrase apart from a damaged ciphertext.
pub(crate) struct DerivedKey {
    out: Zeroizing<[u8; KEY_LEN + CHECK_LEN]>,
}

impl DerivedKey {
    pub(crate) fn key(&self) -> &[u8] {
        &self.out[..KEY_LEN]
    }

    pub(crate) fn check(&self) -> &[u8] {
        &self.out[KEY_LEN..]
    }
}

/// Runs Argon2id (version 0x13) over the passphrase and salt.
pub(crate) fn derive(
    params: &KdfParams,
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
) -> Result<DerivedKey> {
    let out_len = KEY_LEN + CHECK_LEN;
    let argon_params = Params::new(params.m_cost, params.t_cost, params.p_cost, Some(out_len))
        .map_err(|e| Error::Crypto(format!("argon2 parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut out = Zeroizing::new([0u8; KEY_LEN + CHECK_LEN]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut_slice())
        .map_err(|e| Error::Crypto(format!("argon2: {e}")))?;
    Ok(DerivedKey { out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_raises_each_cost_to_the_floor() {
        let custom = KdfParams::new(64 * 1024, 1, 4).unwrap();
        assert_eq!(
            custom.at_least(KdfParams::DEFAULT),
            KdfParams::new(64 * 1024, 2, 4).unwrap()
        );
        assert_eq!(
            KdfParams::MINIMUM.at_least(KdfParams::DEFAULT),
            KdfParams::DEFAULT
        );
        assert_eq!(
            KdfParams::DEFAULT.at_least(KdfParams::MINIMUM),
            KdfParams::DEFAULT
        );
    }

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(KdfParams::default(), KdfParams::DEFAULT);
        assert!(KdfParams::new(19456, 2, 1).is_ok());
        assert!(KdfParams::new(KdfParams::MAX_M_COST, 16, 16).is_ok());
        for (m, t, p) in [
            (KdfParams::MIN_M_COST - 1, 1, 1),
            (KdfParams::MAX_M_COST + 1, 1, 1),
            (8192, 0, 1),
            (8192, 17, 1),
            (8192, 1, 0),
            (8192, 1, 17),
        ] {
            assert!(
                matches!(KdfParams::new(m, t, p), Err(Error::InvalidKdfParams { .. })),
                "({m}, {t}, {p}) accepted"
            );
        }
        let err = KdfParams::checked(1 << 40, 1, 1).unwrap_err();
        assert!(err.contains("above the maximum"), "{err}");
    }

    #[test]
    fn derivation_depends_on_every_input() {
        let pass = Passphrase::new("pw").unwrap();
        let salt = [1u8; SALT_LEN];
        let base = derive(&KdfParams::MINIMUM, &pass, &salt).unwrap();
        let again = derive(&KdfParams::MINIMUM, &pass, &salt).unwrap();
        assert_eq!(base.out.as_slice(), again.out.as_slice());
        assert_ne!(base.key(), base.check());

        let other_pass = derive(&KdfParams::MINIMUM, &Passphrase::new("pX").unwrap(), &salt);
        let other_salt = derive(&KdfParams::MINIMUM, &pass, &[2u8; SALT_LEN]);
        let other_params = derive(&KdfParams::new(8192, 2, 1).unwrap(), &pass, &salt);
        for other in [other_pass, other_salt, other_params] {
            assert_ne!(other.unwrap().out.as_slice(), base.out.as_slice());
        }
    }
}
