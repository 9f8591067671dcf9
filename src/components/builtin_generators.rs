//! `builtin/demo_generator` and `builtin/echo`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::text::{as_text, field};
use super::{ComponentError, GenerateRequest, Generation, Generator, Registry};
use crate::model::Usage;

pub(super) fn register(registry: &mut Registry) {
    registry.register_generator("builtin/demo_generator", "1", |p| {
        Arc::new(DemoGenerator {
            delay: Duration::from_millis(p.u64_in("delay_ms", 0, 0, 600_000)),
            error_rate: p.f64_in("error_rate", 0.0, 0.0, 1.0),
            wrong_rate: p.f64_in("wrong_rate", 0.0, 0.0, 1.0),
        })
    });
    registry.register_generator("builtin/echo", "1", |p| {
        Arc::new(Echo {
            field: p.string("field"),
        })
    });
}

/// A deterministic stand-in for a model: answers arithmetic questions (`"2+2"`,
/// `"What is 3 * (4 - 1)?"`) as `{"answer": "4"}`, anything else by repeating the
/// question. Everything random is a function of the candidate seed:
/// - `delay_ms`: simulated latency of every call;
/// - `error_rate`: share of calls that fail;
/// - `wrong_rate`: share of answers that are off by 1 to 3 (makes majority votes matter).
struct DemoGenerator {
    delay: Duration,
    error_rate: f64,
    wrong_rate: f64,
}

/// splitmix64: a fast, well-mixed deterministic hash of a seed and a salt.
pub(crate) fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a seed and a salt.
fn unit(seed: u64, salt: u64) -> f64 {
    (mix(seed, salt) >> 11) as f64 / (1u64 << 53) as f64
}

fn question_text(input: &Value) -> String {
    match input {
        Value::Object(map) => ["question", "prompt", "text", "input"]
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_str))
            .map_or_else(|| input.to_string(), str::to_owned),
        other => as_text(other),
    }
}

#[async_trait]
impl Generator for DemoGenerator {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.error_rate > 0.0 && unit(request.seed, 1) < self.error_rate {
            return Err(ComponentError::new(format!(
                "simulated generator failure (error_rate {}, seed {})",
                self.error_rate, request.seed
            )));
        }
        let question = question_text(&request.case.input);
        let evaluated = arithmetic::evaluate_in(&question).map_err(ComponentError::new)?;
        let answer = match evaluated {
            Some(mut value) => {
                if self.wrong_rate > 0.0 && unit(request.seed, 2) < self.wrong_rate {
                    value += 1.0 + (mix(request.seed, 3) % 3) as f64;
                }
                arithmetic::format_number(value)
            }
            None => question.clone(),
        };
        let prompt_tokens = question.split_whitespace().count() as u64;
        Ok(Generation {
            output: json!({ "answer": answer }),
            raw_text: Some(answer),
            finish_reason: Some("stop".to_owned()),
            usage: Usage {
                requests: 1,
                prompt_tokens,
                completion_tokens: 1,
                ..Usage::default()
            },
            transcript: None,
        })
    }
}

/// Returns the case input (or one `field` of it) as the output: useful to evaluate
/// pre-computed outputs carried in the dataset.
struct Echo {
    field: Option<String>,
}

#[async_trait]
impl Generator for Echo {
    async fn generate(&self, request: GenerateRequest<'_>) -> Result<Generation, ComponentError> {
        let output =
            field(&request.case.input, self.field.as_deref()).map_err(ComponentError::new)?;
        Ok(Generation {
            output: output.clone(),
            raw_text: Some(as_text(output)),
            finish_reason: Some("stop".to_owned()),
            usage: Usage::default(),
            transcript: None,
        })
    }
}

/// A small recursive-descent evaluator for `+ - * /`, parentheses, unary minus and
/// decimals, used to find and answer the arithmetic inside a question.
mod arithmetic {
    /// Deepest nesting of parentheses and unary minus signs evaluated. The parser
    /// recurses once per level, so without a bound a question of a million `-` signs
    /// overflows the worker's stack and aborts the whole process.
    pub(super) const MAX_DEPTH: usize = 256;

    /// The value of the arithmetic in `text`: `Ok(None)` when there is none (or it does
    /// not evaluate), an error when it nests deeper than [`MAX_DEPTH`].
    pub(super) fn evaluate_in(text: &str) -> Result<Option<f64>, String> {
        // The longest run of characters that can belong to an expression.
        let allowed = |c: char| c.is_ascii_digit() || "+-*/(). ".contains(c);
        let mut best = "";
        let mut start = None;
        for (i, c) in text
            .char_indices()
            .chain(std::iter::once((text.len(), '#')))
        {
            match (allowed(c), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    let candidate = text[s..i].trim().trim_end_matches('.');
                    if candidate.chars().any(|c| c.is_ascii_digit()) && candidate.len() > best.len()
                    {
                        best = candidate;
                    }
                    start = None;
                }
                _ => {}
            }
        }
        if !best.chars().any(|c| "+-*/".contains(c)) {
            return Ok(None);
        }
        let tokens: Vec<char> = best.chars().filter(|c| !c.is_whitespace()).collect();
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
            too_deep: false,
        };
        let value = parser.expr();
        if parser.too_deep {
            return Err(format!(
                "the arithmetic in the question nests deeper than {MAX_DEPTH} levels"
            ));
        }
        Ok(value.filter(|v| parser.pos == parser.tokens.len() && v.is_finite()))
    }

    pub(super) fn format_number(value: f64) -> String {
        if value.fract() == 0.0 && value.abs() < 1e15 {
            format!("{}", value as i64)
        } else {
            let s = format!("{value:.6}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }

    struct Parser {
        tokens: Vec<char>,
        pos: usize,
        /// Current nesting of `factor` calls.
        depth: usize,
        /// Set when `depth` exceeded [`MAX_DEPTH`]; parsing then unwinds with `None`.
        too_deep: bool,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.tokens.get(self.pos).copied()
        }

        fn expr(&mut self) -> Option<f64> {
            let mut value = self.term()?;
            while let Some(op @ ('+' | '-')) = self.peek() {
                self.pos += 1;
                let rhs = self.term()?;
                value = if op == '+' { value + rhs } else { value - rhs };
            }
            Some(value)
        }

        fn term(&mut self) -> Option<f64> {
            let mut value = self.factor()?;
            while let Some(op @ ('*' | '/')) = self.peek() {
                self.pos += 1;
                let rhs = self.factor()?;
                value = if op == '*' { value * rhs } else { value / rhs };
            }
            Some(value)
        }

        fn factor(&mut self) -> Option<f64> {
            if self.depth >= MAX_DEPTH {
                self.too_deep = true;
                return None;
            }
            self.depth += 1;
            let value = self.factor_inner();
            self.depth -= 1;
            value
        }

        fn factor_inner(&mut self) -> Option<f64> {
            match self.peek()? {
                '-' => {
                    self.pos += 1;
                    Some(-self.factor()?)
                }
                '(' => {
                    self.pos += 1;
                    let value = self.expr()?;
                    (self.peek() == Some(')')).then(|| self.pos += 1)?;
                    Some(value)
                }
                _ => {
                    let start = self.pos;
                    while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                        self.pos += 1;
                    }
                    let number: String = self.tokens[start..self.pos].iter().collect();
                    number.parse().ok()
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn evaluates_questions() {
            assert_eq!(evaluate_in("2+2"), Ok(Some(4.0)));
            assert_eq!(evaluate_in("What is 3 * (4 - 1)?"), Ok(Some(9.0)));
            assert_eq!(evaluate_in("-2 + 10 / 4"), Ok(Some(0.5)));
            assert_eq!(evaluate_in("What is the capital of France?"), Ok(None));
            assert_eq!(evaluate_in("in 2024"), Ok(None));
            assert_eq!(evaluate_in("1/0"), Ok(None));
            assert_eq!(format_number(4.0), "4");
            assert_eq!(format_number(0.5), "0.5");
            assert_eq!(format_number(1.0 / 3.0), "0.333333");
        }

        #[test]
        fn deep_nesting_is_an_error_not_a_stack_overflow() {
            let minus = format!("{}1", "-".repeat(1_000_000));
            let e = evaluate_in(&minus).unwrap_err();
            assert!(e.contains("deeper than 256"), "{e}");
            let parens = format!("{}1+1{}", "(".repeat(100_000), ")".repeat(100_000));
            assert!(evaluate_in(&parens).is_err());
            // Nesting up to the bound still evaluates.
            let ok = format!("{}1+1{}", "(".repeat(200), ")".repeat(200));
            assert_eq!(evaluate_in(&ok), Ok(Some(2.0)));
            assert_eq!(evaluate_in(&format!("{}2", "-".repeat(200))), Ok(Some(2.0)));
        }
    }
}
