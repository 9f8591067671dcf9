//! Text-overlap metrics: `builtin/f1`, `builtin/bleu`, `builtin/rouge_l`,
//! `builtin/levenshtein_ratio`.
//!
//! Each compares the parsed output's text with the expected output (a string, or a list
//! of strings for several references); `field` narrows both sides first. Scores are in
//! [0, 1]. Work is bounded: texts longer than [`MAX_COMPARE_UNITS`] tokens (ROUGE-L) or
//! characters (Levenshtein) are a score error, not minutes of CPU.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::{Value, json};

use super::builtin_metrics::normalized_tokens;
use super::text::{as_text, field};
use super::{ComponentError, Metric, MetricScore, Registry};
use crate::model::{BLEU_MAX_ORDER, BleuStats, Case};

/// Longest sequence the quadratic metrics (ROUGE-L, Levenshtein) compare: 5,000 units
/// is at most 25 million table cells per case.
pub(super) const MAX_COMPARE_UNITS: usize = 5_000;

/// Where `builtin/bleu` puts its sufficient statistics in the score details; the run
/// aggregates sum them into corpus BLEU.
pub(crate) use crate::model::BLEU_DETAILS_KEY;

pub(super) fn register(registry: &mut Registry) {
    registry.register_metric("builtin/f1", "1", |p| {
        let tokenize = p.string("tokenize");
        let squad = match tokenize.as_deref() {
            None | Some("whitespace") => false,
            Some("squad") => true,
            Some(_) => {
                p.error("tokenize", "must be \"whitespace\" or \"squad\"");
                false
            }
        };
        Arc::new(F1 {
            field: p.string("field"),
            squad,
        })
    });
    registry.register_metric("builtin/bleu", "1", |p| {
        Arc::new(Bleu {
            field: p.string("field"),
            lowercase: p.bool("lowercase", false),
        })
    });
    registry.register_metric("builtin/rouge_l", "1", |p| {
        Arc::new(RougeL {
            field: p.string("field"),
        })
    });
    registry.register_metric("builtin/levenshtein_ratio", "1", |p| {
        Arc::new(LevenshteinRatio {
            field: p.string("field"),
            case_sensitive: p.bool("case_sensitive", true),
        })
    });
}

/// The output's text and the reference texts (one, or each string of a list).
fn texts(
    parsed: &Value,
    case: &Case,
    path: Option<&str>,
) -> Result<(String, Vec<String>), ComponentError> {
    let expected = field(&case.expected_output, path)
        .map_err(|e| ComponentError::new(format!("expected_output: {e}")))?;
    let references = match expected {
        Value::Array(items) if !items.is_empty() => items.iter().map(as_text).collect(),
        Value::Array(_) => {
            return Err(ComponentError::new(
                "expected_output: the list of references is empty",
            ));
        }
        other => vec![as_text(other)],
    };
    let actual = as_text(field(parsed, path).unwrap_or(&Value::Null));
    Ok((actual, references))
}

/// Token F1 over the token multisets. `whitespace` (the default, the framework's
/// `builtin/f1`): lowercase and split on whitespace. `squad` (what `builtin/token_f1`
/// does): also strip punctuation and the articles a/an/the. Both empty scores 1.
struct F1 {
    field: Option<String>,
    squad: bool,
}

pub(super) fn multiset_f1(actual: &[String], expected: &[String]) -> f64 {
    if actual.is_empty() || expected.is_empty() {
        return if actual.is_empty() && expected.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in expected {
        *counts.entry(token).or_default() += 1;
    }
    let mut common = 0usize;
    for token in actual {
        if let Some(count) = counts.get_mut(token.as_str())
            && *count > 0
        {
            *count -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / actual.len() as f64;
    let recall = common as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

impl F1 {
    fn tokens(&self, text: &str) -> Vec<String> {
        if self.squad {
            normalized_tokens(text)
        } else {
            text.to_lowercase()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        }
    }
}

impl Metric for F1 {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, references) = texts(parsed, case, self.field.as_deref())?;
        let actual = self.tokens(&actual);
        let best = references
            .iter()
            .map(|r| multiset_f1(&actual, &self.tokens(r)))
            .fold(0.0, f64::max);
        Ok(MetricScore::of(best))
    }
}

/// sacreBLEU's default `13a` tokenizer (mteval-v13a.pl).
pub(super) fn tokenize_13a(text: &str) -> Vec<String> {
    static RULES: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
        let rule = |pattern: &str, replacement: &'static str| {
            (Regex::new(pattern).expect("13a rule"), replacement)
        };
        [
            // Punctuation and symbols become tokens of their own.
            rule(r"([{-~\[-` -&(-+:-@/])", " ${1} "),
            // Period and comma, unless preceded by a digit.
            rule(r"([^0-9])([.,])", "${1} ${2} "),
            // Period and comma, unless followed by a digit.
            rule(r"([.,])([^0-9])", " ${1} ${2}"),
            // Dash after a digit.
            rule(r"([0-9])(-)", "${1} ${2} "),
        ]
    });
    let mut line = text
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (pattern, replacement) in RULES.iter() {
        line = pattern.replace_all(&line, *replacement).into_owned();
    }
    line.split_whitespace().map(str::to_owned).collect()
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_default() += 1;
        }
    }
    counts
}

/// BLEU statistics of one hypothesis against its references, as sacreBLEU counts them:
/// n-gram matches clipped by the most any one reference has, reference length the
/// closest to the hypothesis (the shorter on a tie).
pub(super) fn bleu_stats(hypothesis: &str, references: &[String], lowercase: bool) -> BleuStats {
    let fold = |s: &str| {
        if lowercase {
            tokenize_13a(&s.to_lowercase())
        } else {
            tokenize_13a(s)
        }
    };
    let hyp = fold(hypothesis);
    let refs: Vec<Vec<String>> = references.iter().map(|r| fold(r)).collect();
    let sys_len = hyp.len() as u64;
    let ref_len = refs
        .iter()
        .map(|r| r.len() as u64)
        .min_by_key(|len| (len.abs_diff(sys_len), *len))
        .unwrap_or(0);
    let mut stats = BleuStats {
        sys_len,
        ref_len,
        ..Default::default()
    };
    for n in 1..=BLEU_MAX_ORDER {
        let mut max_ref: HashMap<&[String], u64> = HashMap::new();
        for r in &refs {
            for (gram, count) in ngram_counts(r, n) {
                let slot = max_ref.entry(gram).or_default();
                *slot = (*slot).max(count);
            }
        }
        let hyp_counts = ngram_counts(&hyp, n);
        stats.total[n - 1] = (hyp.len() + 1).saturating_sub(n) as u64;
        stats.correct[n - 1] = hyp_counts
            .iter()
            .map(|(gram, count)| (*count).min(max_ref.get(gram).copied().unwrap_or(0)))
            .sum();
    }
    stats
}

/// Sentence BLEU (sacreBLEU defaults: 13a tokenizer, `exp` smoothing, effective order,
/// case-sensitive unless `lowercase`), in 0..1. The details carry the statistics the
/// run aggregates sum into corpus BLEU (`corpus_bleu` in the metric's aggregate).
struct Bleu {
    field: Option<String>,
    lowercase: bool,
}

impl Metric for Bleu {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, references) = texts(parsed, case, self.field.as_deref())?;
        let stats = bleu_stats(&actual, &references, self.lowercase);
        Ok(MetricScore {
            score: stats.score(true),
            details: json!({ BLEU_DETAILS_KEY: stats }),
        })
    }
}

/// Length of the longest common subsequence, in O(len(a) * len(b)) time and
/// O(len(b)) memory.
fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

fn bounded<T>(items: Vec<T>, what: &str, metric: &str) -> Result<Vec<T>, ComponentError> {
    if items.len() > MAX_COMPARE_UNITS {
        return Err(ComponentError::new(format!(
            "{what} has {} units; {metric} compares at most {MAX_COMPARE_UNITS}",
            items.len()
        )));
    }
    Ok(items)
}

/// ROUGE-L F-measure as Google's `rouge_score` computes it (no stemming): lowercase,
/// non-alphanumerics become spaces, LCS of the tokens; the best over references.
struct RougeL {
    field: Option<String>,
}

pub(super) fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn rouge_l(prediction: &[String], target: &[String]) -> f64 {
    if prediction.is_empty() || target.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(target, prediction) as f64;
    let precision = lcs / prediction.len() as f64;
    let recall = lcs / target.len() as f64;
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

impl Metric for RougeL {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, references) = texts(parsed, case, self.field.as_deref())?;
        let prediction = bounded(rouge_tokens(&actual), "the output", "rouge_l")?;
        let mut best = 0.0f64;
        for reference in &references {
            let target = bounded(rouge_tokens(reference), "a reference", "rouge_l")?;
            best = best.max(rouge_l(&prediction, &target));
        }
        Ok(MetricScore::of(best))
    }
}

/// python-Levenshtein's `ratio`: `1 - indel_distance / (len(a) + len(b))` over
/// characters, i.e. `2 * LCS / (len(a) + len(b))`; two empty texts score 1.
struct LevenshteinRatio {
    field: Option<String>,
    case_sensitive: bool,
}

pub(super) fn levenshtein_ratio(a: &[char], b: &[char]) -> f64 {
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    2.0 * lcs_len(a, b) as f64 / total as f64
}

impl Metric for LevenshteinRatio {
    fn score(&self, parsed: &Value, case: &Case) -> Result<MetricScore, ComponentError> {
        let (actual, references) = texts(parsed, case, self.field.as_deref())?;
        let chars = |s: &str| -> Vec<char> {
            if self.case_sensitive {
                s.chars().collect()
            } else {
                s.to_lowercase().chars().collect()
            }
        };
        let actual = bounded(chars(&actual), "the output", "levenshtein_ratio")?;
        let mut best = 0.0f64;
        for reference in &references {
            let reference = bounded(chars(reference), "a reference", "levenshtein_ratio")?;
            best = best.max(levenshtein_ratio(&actual, &reference));
        }
        Ok(MetricScore::of(best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn tokenizer_13a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("It wasn't 1,000.5 km-long, \"ok\"."),
            toks("It wasn't 1,000.5 km-long , \" ok \" .")
        );
        assert_eq!(tokenize_13a("3-4 &amp; co"), toks("3 - 4 & co"));
    }

    #[test]
    fn sentence_bleu_matches_sacrebleu() {
        // sacrebleu test/test_sentence_bleu.py (example from sacreBLEU issue #98):
        // sentence BLEU, smooth_method='exp', tokenize='13a', effective_order=True
        // == 8.493 (0..100 scale, tolerance 1e-3).
        let reference = "producţia de zahăr brut se exprimă în zahăr alb;";
        let system = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;";
        let score = bleu_stats(system, &[reference.to_owned()], false).score(true);
        assert!((score * 100.0 - 8.493).abs() < 1e-3, "{score}");
        // Same file, example from issue #141: no matching unigram scores 0.0.
        let zero = bleu_stats("this is a cat", &["okay thanks".to_owned()], false);
        assert_eq!(zero.score(true), 0.0);
    }

    #[test]
    fn corpus_bleu_of_summed_stats_matches_sacrebleu() {
        // sacrebleu test/test_bleu.py, test_corpus_bleu (the README example, two
        // reference streams, default settings) == 48.530827.
        let refs = [
            ["The dog bit the man.", "The dog had bit the man."],
            ["It was not unexpected.", "No one was surprised."],
            ["The man bit him first.", "The man had bitten the dog."],
        ];
        let hyps = [
            "The dog bit the man.",
            "It wasn't surprising.",
            "The man had just bitten him.",
        ];
        let mut total = BleuStats::default();
        for (hyp, refs) in hyps.iter().zip(refs) {
            let refs: Vec<String> = refs.iter().map(|r| (*r).to_owned()).collect();
            total.add(&bleu_stats(hyp, &refs, false));
        }
        assert!((total.score(false) * 100.0 - 48.530_827).abs() < 1e-6);
        // Same file: empty hypotheses score 0.
        let mut empty = BleuStats::default();
        for refs in refs {
            let refs: Vec<String> = refs.iter().map(|r| (*r).to_owned()).collect();
            empty.add(&bleu_stats("", &refs, false));
        }
        assert_eq!(empty.score(false), 0.0);
    }

    #[test]
    fn rouge_l_matches_rouge_score() {
        // google-research rouge_score, rouge_scorer_test.py testRougeL-style case:
        // target "testing one two", prediction "testing": P 1, R 1/3, F 0.5.
        let f = rouge_l(&rouge_tokens("testing"), &rouge_tokens("testing one two"));
        assert!((f - 0.5).abs() < 1e-12);
        // Hand-worked: LCS("the cat sat on the mat", "the cat on a mat") = "the cat on
        // mat" = 4; P = 4/5, R = 4/6, F = 2*0.8*0.6667/1.4667 = 0.727272...
        let f = rouge_l(
            &rouge_tokens("The cat on a mat."),
            &rouge_tokens("the cat sat on the mat"),
        );
        assert!((f - 8.0 / 11.0).abs() < 1e-12, "{f}");
        assert_eq!(rouge_l(&[], &rouge_tokens("x")), 0.0);
    }

    #[test]
    fn levenshtein_ratio_matches_python_levenshtein() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        // python-Levenshtein's documented examples: ratio('Hello world!', 'Holly
        // grail!') == 0.583333..., ratio('Brian', 'Jesus') == 0.0.
        let r = levenshtein_ratio(&chars("Hello world!"), &chars("Holly grail!"));
        assert!((r - 7.0 / 12.0).abs() < 1e-12, "{r}");
        assert_eq!(levenshtein_ratio(&chars("Brian"), &chars("Jesus")), 0.0);
        assert_eq!(levenshtein_ratio(&[], &[]), 1.0);
    }

    #[test]
    fn f1_whitespace_is_the_frameworks() {
        let ws = F1 {
            field: None,
            squad: false,
        };
        // The framework's f1 keeps punctuation and articles: "the" and "cat." count.
        // tokens: [the, cat.] vs [cat]: no common token.
        assert_eq!(multiset_f1(&ws.tokens("The cat."), &ws.tokens("cat")), 0.0);
        // [a, b, c] vs [a, b]: P 2/3, R 1, F 0.8.
        assert!((multiset_f1(&ws.tokens("A b c"), &ws.tokens("a B")) - 0.8).abs() < 1e-12);
        let squad = F1 {
            field: None,
            squad: true,
        };
        assert_eq!(
            multiset_f1(&squad.tokens("The cat."), &squad.tokens("cat")),
            1.0
        );
    }

    #[test]
    fn quadratic_metrics_are_bounded() {
        let case = Case {
            case_id: "c".into(),
            input: Value::Null,
            expected_output: json!("a"),
            metadata: Value::Null,
        };
        let long = json!("x".repeat(MAX_COMPARE_UNITS + 1));
        let lev = LevenshteinRatio {
            field: None,
            case_sensitive: true,
        };
        assert!(lev.score(&long, &case).is_err());
        let words = json!("w ".repeat(MAX_COMPARE_UNITS + 1));
        assert!(RougeL { field: None }.score(&words, &case).is_err());
    }
}
