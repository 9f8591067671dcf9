//! Prompt tokens counted before sending: with the model's own tokenizer for OpenAI
//! model families (`tiktoken-rs`: `o200k_base` for GPT-4o, GPT-4.1, GPT-5 and o-series,
//! `cl100k_base` for GPT-4 and GPT-3.5), else approximately, a token per four characters.
//! Either way each message adds the chat format's framing (OpenAI's cookbook: 3 tokens
//! a message, 3 priming the reply).

use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use super::client::Message;

const PER_MESSAGE: u64 = 3;
const PRIMING: u64 = 3;

/// The prompt tokens of `messages` for `model`, and whether the model's tokenizer
/// counted them (`false`: the four-characters approximation).
pub(super) fn count_prompt(model: &str, messages: &[Message]) -> (u64, bool) {
    let bpe = match get_tokenizer(model) {
        Some(
            tokenizer @ (Tokenizer::O200kBase | Tokenizer::O200kHarmony | Tokenizer::Cl100kBase),
        ) => tiktoken_rs::bpe_for_tokenizer(tokenizer).ok(),
        _ => None,
    };
    let framing = PRIMING + PER_MESSAGE * messages.len() as u64;
    let text: u64 = messages
        .iter()
        .map(|m| match bpe {
            Some(bpe) => bpe.count_ordinary(&m.content) as u64,
            None => approximate(&m.content),
        })
        .sum();
    (framing + text, bpe.is_some())
}

/// A token per four characters, rounded up.
pub(super) fn approximate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(content: &str) -> Vec<Message> {
        vec![Message::new("user", content)]
    }

    #[test]
    fn openai_models_are_counted_with_their_tokenizer() {
        // "hello world" is two tokens in both o200k_base and cl100k_base.
        assert_eq!(count_prompt("gpt-4o-mini", &user("hello world")), (8, true));
        assert_eq!(count_prompt("gpt-4", &user("hello world")), (8, true));
        // Other models: 11 characters, 3 tokens.
        assert_eq!(
            count_prompt("llama3.2:1b", &user("hello world")),
            (9, false)
        );
    }
}
