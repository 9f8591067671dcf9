//! `builtin/choice_letter`, `builtin/math_answer`, `builtin/code_text`: answer
//! extraction for multiple choice, math and code tasks.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;

use super::metrics_choice_math::last_boxed;
use super::text::{as_text, field};
use super::{ComponentError, Parser, Registry};

pub(super) fn register(registry: &mut Registry) {
    registry.register_parser("builtin/choice_letter", "1", |p| {
        let letters = p
            .string("letters")
            .unwrap_or_else(|| "ABCDEFGHIJ".to_owned());
        if letters.is_empty()
            || letters.len() > 26
            || !letters.chars().all(|c| c.is_ascii_uppercase())
        {
            p.error(
                "letters",
                "must be 1 to 26 upper-case letters, like \"ABCD\"",
            );
        }
        Arc::new(ChoiceLetter {
            field: p.string("field"),
            letters,
        })
    });
    registry.register_parser("builtin/math_answer", "1", |p| {
        Arc::new(MathAnswer {
            field: p.string("field"),
        })
    });
    registry.register_parser("builtin/code_text", "1", |p| {
        Arc::new(CodeText {
            field: p.string("field"),
            language: p.string("language").map(|l| l.to_lowercase()),
        })
    });
}

/// The chosen letter among `letters` (default A–J): the last explicit "answer is X" /
/// "answer: (X)"; else the whole text when it is just a letter ("(b).");
/// else the last standalone upper-case letter (so the article "a" is not read as A).
/// No letter is a parse error.
struct ChoiceLetter {
    field: Option<String>,
    letters: String,
}

impl Parser for ChoiceLetter {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        static EXPLICIT: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?i)answer\s*(?:is|:)?\s*(?:option\s*)?[:(\[]?\s*\b([A-Z])\b")
                .expect("choice rule")
        });
        static STANDALONE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"\b([A-Z])\b").expect("standalone rule"));
        let text = as_text(field(value, self.field.as_deref()).map_err(ComponentError::new)?);
        let allowed = |s: &str| -> Option<String> {
            let letter = s.to_uppercase();
            self.letters.contains(letter.as_str()).then_some(letter)
        };
        let explicit = EXPLICIT
            .captures_iter(&text)
            .filter_map(|c| allowed(c.get(1)?.as_str()))
            .last();
        let bare = || {
            let trimmed =
                text.trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace());
            (trimmed.chars().count() == 1)
                .then(|| allowed(trimmed))
                .flatten()
        };
        let standalone = || {
            STANDALONE
                .captures_iter(&text)
                .filter_map(|c| allowed(c.get(1)?.as_str()))
                .last()
        };
        explicit
            .or_else(bare)
            .or_else(standalone)
            .map(Value::String)
            .ok_or_else(|| {
                ComponentError::new(format!("no choice letter ({}) in the output", self.letters))
            })
    }
}

/// The final answer of a math solution: the last `\boxed{...}` (nested braces
/// allowed), else the last number in the text (`1,234.5`, `-3`, `2/3`), else the
/// trimmed text.
struct MathAnswer {
    field: Option<String>,
}

impl Parser for MathAnswer {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+").expect("number rule")
        });
        let text = as_text(field(value, self.field.as_deref()).map_err(ComponentError::new)?);
        if let Some(boxed) = last_boxed(&text) {
            return Ok(Value::String(boxed.trim().to_owned()));
        }
        let answer = NUMBER
            .find_iter(&text)
            .last()
            .map(|m| m.as_str().trim_end_matches(',').to_owned())
            .unwrap_or_else(|| text.trim().to_owned());
        Ok(Value::String(answer))
    }
}

/// The first fenced code block (```` ``` ````), or the first one tagged `language`
/// when set. An object output is read from its `solution`, `code` or `answer` field
/// (as the framework does). Text without any fence is the code itself, trimmed; a
/// `language` that no block has is a parse error.
struct CodeText {
    field: Option<String>,
    language: Option<String>,
}

impl Parser for CodeText {
    fn parse(&self, value: &Value) -> Result<Value, ComponentError> {
        static FENCE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?s)```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```").expect("fence rule")
        });
        let mut source = field(value, self.field.as_deref()).map_err(ComponentError::new)?;
        if self.field.is_none()
            && let Some(inner) = ["solution", "code", "answer"]
                .iter()
                .find_map(|k| source.get(k))
        {
            source = inner;
        }
        let text = as_text(source);
        let mut blocks = FENCE.captures_iter(&text).peekable();
        if blocks.peek().is_none() {
            return Ok(Value::String(text.trim().to_owned()));
        }
        blocks
            .find(|c| {
                self.language.as_deref().is_none_or(|wanted| {
                    c.get(1)
                        .is_some_and(|tag| tag.as_str().eq_ignore_ascii_case(wanted))
                })
            })
            .and_then(|c| c.get(2))
            .map(|code| Value::String(code.as_str().trim_end().to_owned()))
            .ok_or_else(|| {
                ComponentError::new(format!(
                    "no ```{} code block in the output",
                    self.language.as_deref().unwrap_or_default()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn letter(text: &str) -> Result<Value, ComponentError> {
        ChoiceLetter {
            field: None,
            letters: "ABCD".into(),
        }
        .parse(&json!(text))
    }

    #[test]
    fn choice_letter_prefers_the_explicit_answer() {
        assert_eq!(
            letter("The answer is B, as a result of X.").unwrap(),
            json!("B")
        );
        assert_eq!(letter("Answer: (c)").unwrap(), json!("C"));
        assert_eq!(letter(" (d). ").unwrap(), json!("D"));
        assert_eq!(letter("I pick a... no, A then C").unwrap(), json!("C"));
        assert!(letter("none of these").is_err());
        // E is not among ABCD.
        assert!(letter("E").is_err());
    }

    #[test]
    fn math_answer_takes_the_last_box_or_number() {
        let p = MathAnswer { field: None };
        assert_eq!(
            p.parse(&json!(r"so \boxed{1} or rather \boxed{\frac{1}{2}}"))
                .unwrap(),
            json!(r"\frac{1}{2}")
        );
        assert_eq!(
            p.parse(&json!("3 apples plus 4 gives 1,234.5 total."))
                .unwrap(),
            json!("1,234.5")
        );
        assert_eq!(p.parse(&json!("it is -2/3")).unwrap(), json!("-2/3"));
        assert_eq!(p.parse(&json!(" no idea ")).unwrap(), json!("no idea"));
    }

    #[test]
    fn code_text_takes_the_first_block() {
        let any = CodeText {
            field: None,
            language: None,
        };
        let text = "Here:\n```python\nprint(1)\n```\nand\n```rust\nfn main() {}\n```";
        assert_eq!(any.parse(&json!(text)).unwrap(), json!("print(1)"));
        let rust = CodeText {
            field: None,
            language: Some("rust".into()),
        };
        assert_eq!(rust.parse(&json!(text)).unwrap(), json!("fn main() {}"));
        let go = CodeText {
            field: None,
            language: Some("go".into()),
        };
        assert!(go.parse(&json!(text)).is_err());
        assert_eq!(any.parse(&json!("  x = 1 ")).unwrap(), json!("x = 1"));
        assert_eq!(
            any.parse(&json!({"code": "```\nx\n```"})).unwrap(),
            json!("x")
        );
    }
}
