//! When two answers count as the same: normalization and pluggable similarity.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// Decides how alike two answers are, from 0 (unrelated) to 1 (the same).
///
/// Answers whose [normalized](normalize) forms are equal always group
/// together; a similarity only decides whether *different* answers do too.
pub trait Similarity: Send + Sync + fmt::Debug {
    /// How alike `a` and `b` are, in `[0, 1]`.
    fn similarity(&self, a: &Value, b: &Value) -> f64;
}

/// Only normalized-equal answers agree.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exact;

impl Similarity for Exact {
    fn similarity(&self, a: &Value, b: &Value) -> f64 {
        if normalize(a) == normalize(b) {
            1.0
        } else {
            0.0
        }
    }
}

/// How [`Lexical`] compares two bags of words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Measure {
    /// Cosine of the term-frequency vectors.
    #[default]
    Cosine,
    /// Shared distinct words over all distinct words.
    Jaccard,
    /// Shared distinct words over the smaller answer's distinct words.
    Overlap,
}

/// Word-level similarity of answers as text (JSON answers are compared as
/// their canonical JSON text). Words are lowercase alphanumeric runs; common
/// English function words (`the`, `is`, `of`, …) are dropped unless disabled,
/// so that `Paris` and `The capital is Paris` share most of their words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexical {
    /// The measure.
    pub measure: Measure,
    /// Whether to drop common English function words.
    pub drop_stopwords: bool,
}

impl Default for Lexical {
    fn default() -> Self {
        Self {
            measure: Measure::Cosine,
            drop_stopwords: true,
        }
    }
}

const STOPWORDS: [&str; 40] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "i", "in", "is",
    "it", "its", "it's", "of", "on", "or", "so", "that", "the", "their", "there", "this", "to",
    "was", "were", "will", "with", "answer", "think", "believe", "would", "should", "my", "me",
    "we",
];

impl Lexical {
    fn words(&self, value: &Value) -> BTreeMap<String, usize> {
        let text = match value {
            Value::String(s) => s.clone(),
            other => normalize(other).to_string(),
        };
        let mut bag = BTreeMap::new();
        for word in text
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .map(|w| w.trim_matches('\'').to_lowercase())
            .filter(|w| !w.is_empty())
            .filter(|w| !(self.drop_stopwords && STOPWORDS.contains(&w.as_str())))
        {
            *bag.entry(word).or_insert(0) += 1;
        }
        bag
    }
}

impl Similarity for Lexical {
    fn similarity(&self, a: &Value, b: &Value) -> f64 {
        let (a, b) = (self.words(a), self.words(b));
        if a.is_empty() || b.is_empty() {
            return if a.is_empty() && b.is_empty() {
                1.0
            } else {
                0.0
            };
        }
        match self.measure {
            Measure::Cosine => {
                let dot: usize = a
                    .iter()
                    .map(|(w, n)| n * b.get(w).copied().unwrap_or(0))
                    .sum();
                let norm = |bag: &BTreeMap<String, usize>| {
                    bag.values().map(|&n| (n * n) as f64).sum::<f64>().sqrt()
                };
                dot as f64 / (norm(&a) * norm(&b))
            }
            Measure::Jaccard | Measure::Overlap => {
                let (sa, sb): (BTreeSet<&String>, BTreeSet<&String>) =
                    (a.keys().collect(), b.keys().collect());
                let shared = sa.intersection(&sb).count() as f64;
                let denominator = match self.measure {
                    Measure::Jaccard => sa.union(&sb).count(),
                    _ => sa.len().min(sb.len()),
                };
                shared / denominator as f64
            }
        }
    }
}

/// The canonical form used for exact agreement: strings lowercased, trimmed,
/// inner whitespace collapsed and trailing `.`, `!`, `?`, `,`, `;`, `:`
/// dropped; integral numbers written as integers (`1.0` equals `1`); objects
/// with sorted keys; arrays normalized element-wise, order kept.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(normalize_text(s)),
        // Integers stay exact: as f64, those beyond 2^53 would collide.
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map_or_else(|| value.clone(), crate::value::json_number),
        Value::Number(_) => value.clone(),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, normalize(v))).collect();
            let mut out = Map::new();
            for (k, v) in sorted {
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Bool(_) | Value::Null => value.clone(),
    }
}

fn normalize_text(s: &str) -> String {
    let collapsed = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    collapsed
        .trim_end_matches(['.', '!', '?', ',', ';', ':'])
        .trim_end()
        .to_owned()
}

/// The key under which normalized-equal answers group.
pub(crate) fn exact_key(value: &Value) -> String {
    normalize(value).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize(&json!("  Paris.  ")), json!("paris"));
        assert_eq!(
            normalize(&json!("The   Capital\nis Paris!")),
            json!("the capital is paris")
        );
        assert_eq!(normalize(&json!(1.0)), normalize(&json!(1)));
        assert_eq!(
            exact_key(&json!({"b": 1, "a": "X"})),
            exact_key(&json!({"a": "x", "b": 1.0}))
        );
        assert_ne!(exact_key(&json!([1, 2])), exact_key(&json!([2, 1])));
    }

    #[test]
    fn large_integers_stay_distinct() {
        // Both are the same f64; as integers they differ.
        let (a, b) = (
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_992_u64),
        );
        assert_ne!(exact_key(&a), exact_key(&b));
        assert_eq!(Exact.similarity(&a, &b), 0.0);
        assert_ne!(
            exact_key(&json!(-9_007_199_254_740_993_i64)),
            exact_key(&json!(-9_007_199_254_740_992_i64))
        );
        assert_eq!(exact_key(&json!(u64::MAX)), u64::MAX.to_string());
        // An integral float still equals its integer.
        assert_eq!(exact_key(&json!(2.0)), exact_key(&json!(2)));
        assert_eq!(exact_key(&json!(-3.0)), exact_key(&json!(-3)));
    }

    #[test]
    fn lexical_measures() {
        let cos = Lexical::default();
        let paris = json!("Paris");
        let sentence = json!("The capital is Paris");
        let london = json!("London");
        assert!(cos.similarity(&paris, &sentence) >= 0.7);
        assert_eq!(cos.similarity(&paris, &london), 0.0);
        assert!((cos.similarity(&sentence, &sentence) - 1.0).abs() < 1e-12);
        let jac = Lexical {
            measure: Measure::Jaccard,
            drop_stopwords: false,
        };
        assert!((jac.similarity(&paris, &sentence) - 0.25).abs() < 1e-12);
        let ovl = Lexical {
            measure: Measure::Overlap,
            drop_stopwords: false,
        };
        assert_eq!(ovl.similarity(&paris, &sentence), 1.0);
        assert_eq!(Exact.similarity(&paris, &json!("paris.")), 1.0);
        assert_eq!(Exact.similarity(&paris, &sentence), 0.0);
    }
}
