//! `text_similarity`'s metrics, each a score in 0..1 of an output against one reference.
//! BLEU, ROUGE-L and the fuzzy ratio are the builtin metrics' implementations.

use std::collections::HashMap;

use crate::components::metrics_text::{bleu_stats, levenshtein_ratio, rouge_l, rouge_tokens};

/// Texts longer than this (in characters) are refused: several metrics are quadratic.
pub(crate) const MAX_TEXT_CHARS: usize = 20_000;

/// The metrics `text_similarity` takes, as OpenAI names them (`cosine` needs embeddings).
pub(crate) const METRICS: [&str; 10] = [
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
];

pub(crate) fn similarity(metric: &str, output: &str, reference: &str) -> Result<f64, String> {
    if output.chars().count() > MAX_TEXT_CHARS || reference.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "text_similarity compares texts of at most {MAX_TEXT_CHARS} characters"
        ));
    }
    Ok(match metric {
        "fuzzy_match" => {
            let a: Vec<char> = output.chars().collect();
            let b: Vec<char> = reference.chars().collect();
            levenshtein_ratio(&a, &b)
        }
        "bleu" => bleu_stats(output, &[reference.to_owned()], false).score(true),
        "gleu" => gleu(&words(output), &words(reference)),
        "meteor" => meteor(&words(output), &words(reference)),
        "rouge_l" => rouge_l(&rouge_tokens(output), &rouge_tokens(reference)),
        rouge if rouge.starts_with("rouge_") => {
            let n = rouge[6..]
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| format!("unknown evaluation_metric `{metric}`"))?;
            rouge_n(&rouge_tokens(output), &rouge_tokens(reference), n)
        }
        other => return Err(format!("unknown evaluation_metric `{other}`")),
    })
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_default() += 1;
        }
    }
    counts
}

fn overlap(a: &HashMap<&[String], u64>, b: &HashMap<&[String], u64>) -> u64 {
    a.iter()
        .map(|(gram, count)| (*count).min(b.get(gram).copied().unwrap_or(0)))
        .sum()
}

/// ROUGE-N F-measure as Google's `rouge_score` (lower-case, non-alphanumerics split).
fn rouge_n(prediction: &[String], target: &[String], n: usize) -> f64 {
    let (p, t) = (ngrams(prediction, n), ngrams(target, n));
    let (p_total, t_total) = (p.values().sum::<u64>(), t.values().sum::<u64>());
    if p_total == 0 || t_total == 0 {
        return 0.0;
    }
    let matches = overlap(&p, &t) as f64;
    let precision = matches / p_total as f64;
    let recall = matches / t_total as f64;
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

/// Google-BLEU as NLTK's `sentence_gleu`: over all 1- to 4-grams, the smaller of
/// precision and recall.
fn gleu(hypothesis: &[String], reference: &[String]) -> f64 {
    let (mut matches, mut hyp_total, mut ref_total) = (0, 0, 0);
    for n in 1..=4 {
        let (h, r) = (ngrams(hypothesis, n), ngrams(reference, n));
        matches += overlap(&h, &r);
        hyp_total += h.values().sum::<u64>();
        ref_total += r.values().sum::<u64>();
    }
    if hyp_total == 0 || ref_total == 0 {
        return 0.0;
    }
    (matches as f64 / hyp_total as f64).min(matches as f64 / ref_total as f64)
}

/// METEOR with NLTK's parameters (alpha 0.9, beta 3, gamma 0.5) over exact word matches
/// (NLTK also matches stems and WordNet synonyms; Themis does not).
fn meteor(hypothesis: &[String], reference: &[String]) -> f64 {
    let mut used = vec![false; reference.len()];
    // Aligned (hypothesis index, reference index) pairs, left to right.
    let mut aligned = Vec::new();
    for (i, word) in hypothesis.iter().enumerate() {
        if let Some(j) = (0..reference.len()).find(|&j| !used[j] && &reference[j] == word) {
            used[j] = true;
            aligned.push((i, j));
        }
    }
    let matches = aligned.len() as f64;
    if matches == 0.0 {
        return 0.0;
    }
    let precision = matches / hypothesis.len() as f64;
    let recall = matches / reference.len() as f64;
    let fmean = precision * recall / (0.9 * precision + 0.1 * recall);
    let chunks = 1 + aligned
        .windows(2)
        .filter(|w| !(w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1))
        .count();
    let penalty = 0.5 * (chunks as f64 / matches).powi(3);
    fmean * (1.0 - penalty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn identical_texts_score_one_and_disjoint_zero() {
        for metric in METRICS {
            let same =
                similarity(metric, "the cat sat on the mat", "the cat sat on the mat").unwrap();
            assert!(same > 0.99, "{metric}: {same}");
            let none = similarity(metric, "alpha beta", "qqq zzz").unwrap();
            assert!(none < 0.5, "{metric}: {none}");
        }
        assert!(similarity("cosine", "a", "b").is_err());
    }

    #[test]
    fn rouge_and_gleu_match_their_references() {
        // rouge_score: rouge1 F of "the cat was found under the bed" vs "the cat was under the bed".
        let r1 = similarity(
            "rouge_1",
            "the cat was found under the bed",
            "the cat was under the bed",
        )
        .unwrap();
        assert!(
            close(r1, 2.0 * (6.0 / 7.0) * 1.0 / (6.0 / 7.0 + 1.0)),
            "{r1}"
        );
        // NLTK sentence_gleu: 1-4 grams of a 3-word hypothesis against itself plus one word.
        let g = similarity("gleu", "a b c", "a b c d").unwrap();
        assert!(close(g, 6.0 / 10.0), "{g}");
        // METEOR: all words matched in one chunk, recall 3/4.
        let m = similarity("meteor", "a b c", "a b c d").unwrap();
        let fmean = 1.0 * 0.75 / (0.9 * 1.0 + 0.1 * 0.75);
        assert!(
            close(m, fmean * (1.0 - 0.5 * (1.0f64 / 3.0).powi(3))),
            "{m}"
        );
    }
}
