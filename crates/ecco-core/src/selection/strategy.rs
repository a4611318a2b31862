//! The selection strategies and their text form (`top-n:3`).

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A selection strategy; see the [module documentation](super).
///
/// Text form: `all`, `top-n:N`, `round-robin:N`, `random:N`, `weighted:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Selection {
    /// Every match.
    All,
    /// The N best.
    TopN(NonZeroUsize),
    /// N at a time, in rotation.
    RoundRobin(NonZeroUsize),
    /// N uniformly at random.
    Random(NonZeroUsize),
    /// N at random, weighted by score and performance.
    Weighted(NonZeroUsize),
}

impl Selection {
    /// How many agents the strategy picks at most (`None` for `all`).
    pub fn count(&self) -> Option<usize> {
        match self {
            Self::All => None,
            Self::TopN(n) | Self::RoundRobin(n) | Self::Random(n) | Self::Weighted(n) => {
                Some(n.get())
            }
        }
    }

    /// The strategy's name, without its count.
    pub fn name(&self) -> &'static str {
        match self {
            Self::All => "all",
            Self::TopN(_) => "top-n",
            Self::RoundRobin(_) => "round-robin",
            Self::Random(_) => "random",
            Self::Weighted(_) => "weighted",
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count() {
            Some(n) => write!(f, "{}:{n}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// Why a selection strategy's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseSelectionError(String);

impl FromStr for Selection {
    type Err = ParseSelectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, count) = match s.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (s, None),
        };
        let known = "all, top-n:N, round-robin:N, random:N, weighted:N";
        let make: fn(NonZeroUsize) -> Self = match name {
            "all" => {
                return match count {
                    None => Ok(Self::All),
                    Some(_) => Err(ParseSelectionError("`all` takes no count".to_owned())),
                };
            }
            "top-n" => Self::TopN,
            "round-robin" => Self::RoundRobin,
            "random" => Self::Random,
            "weighted" => Self::Weighted,
            _ => {
                return Err(ParseSelectionError(format!(
                    "unknown selection strategy `{name}`; use one of {known}"
                )));
            }
        };
        let count = count.ok_or_else(|| {
            ParseSelectionError(format!("`{name}` needs a count, as in `{name}:3`"))
        })?;
        let n = count.parse::<NonZeroUsize>().map_err(|_| {
            ParseSelectionError(format!("`{count}` is not a positive count for `{name}`"))
        })?;
        Ok(make(n))
    }
}

impl TryFrom<String> for Selection {
    type Error = ParseSelectionError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Selection> for String {
    fn from(s: Selection) -> Self {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in ["all", "top-n:3", "round-robin:1", "random:2", "weighted:10"] {
            assert_eq!(s.parse::<Selection>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_text_is_explained() {
        let e = |s: &str| s.parse::<Selection>().unwrap_err().to_string();
        assert_eq!(
            e("best"),
            "unknown selection strategy `best`; use one of all, top-n:N, round-robin:N, random:N, weighted:N"
        );
        assert_eq!(e("top-n"), "`top-n` needs a count, as in `top-n:3`");
        assert_eq!(e("top-n:0"), "`0` is not a positive count for `top-n`");
        assert_eq!(e("random:x"), "`x` is not a positive count for `random`");
        assert_eq!(e("all:2"), "`all` takes no count");
    }
}
