//! What provider calls cost: the operator's price table (`--prices FILE`, TOML or JSON)
//! per declared provider and model, over a bundled table of well-known hosted models
//! (dated: prices change, the operator's file is the authority). A run's own `price`
//! param, where given, is used instead of both and reported as the run's.

use std::path::Path;

use serde::Deserialize;

use super::providers::ProviderSpec;
use crate::components::DeclarationError;
use crate::model::PriceSource;

/// The bundled table: OpenAI's published list prices on the date it names.
const BUNDLED: &str = include_str!("prices.toml");

/// Highest price per 1M tokens, in USD: far above any model's, low enough that cost sums
/// over millions of tokens stay finite.
pub(crate) const MAX_PRICE_PER_1M: f64 = 1e9;

/// USD per 1M tokens of one model, and the discount its batch API gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input_per_1m: f64,
    /// Prompt tokens the provider served from its prompt cache; the input price when
    /// not given.
    pub cached_input_per_1m: Option<f64>,
    pub output_per_1m: f64,
    /// The fraction taken off both prices for requests sent through the provider's
    /// batch API (0.5: half price); 0 when not given.
    pub batch_discount: f64,
}

impl ModelPrice {
    /// The cost in USD of one answer: cached prompt tokens at the cached input price,
    /// the rest of the prompt at the input price, the completion at the output price.
    pub(crate) fn cost(&self, prompt: u64, cached: u64, completion: u64, batch: bool) -> f64 {
        let cached = cached.min(prompt);
        let usd = ((prompt - cached) as f64 * self.input_per_1m
            + cached as f64 * self.cached_input()
            + completion as f64 * self.output_per_1m)
            / 1e6;
        if batch {
            usd * (1.0 - self.batch_discount)
        } else {
            usd
        }
    }

    pub(crate) fn cached_input(&self) -> f64 {
        self.cached_input_per_1m.unwrap_or(self.input_per_1m)
    }

    fn check(&self, at: &str) -> Result<(), String> {
        let fields = [
            ("input_per_1m", Some(self.input_per_1m)),
            ("cached_input_per_1m", self.cached_input_per_1m),
            ("output_per_1m", Some(self.output_per_1m)),
        ];
        for (name, value) in fields {
            if let Some(x) = value
                && !(0.0..=MAX_PRICE_PER_1M).contains(&x)
            {
                return Err(format!(
                    "{at}: {name} must be a number from 0 to {MAX_PRICE_PER_1M} (USD per 1M tokens)"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.batch_discount) {
            return Err(format!(
                "{at}: batch_discount must be at least 0 and below 1 (0.5 is half price)"
            ));
        }
        Ok(())
    }
}

/// One row of a price table: a model of a provider, named by its declared name or its
/// base URL. `model = "*"` prices every model of that provider not listed by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PriceEntry {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    pub model: String,
    pub input_per_1m: f64,
    #[serde(default)]
    pub cached_input_per_1m: Option<f64>,
    pub output_per_1m: f64,
    #[serde(default)]
    pub batch_discount: f64,
}

impl PriceEntry {
    fn price(&self) -> ModelPrice {
        ModelPrice {
            input_per_1m: self.input_per_1m,
            cached_input_per_1m: self.cached_input_per_1m,
            output_per_1m: self.output_per_1m,
            batch_discount: self.batch_discount,
        }
    }
}

/// A price table file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    /// When the prices were taken from the providers' price lists (shown, not used).
    #[serde(default)]
    date: Option<String>,
    /// `false` leaves the bundled table out: models not in this file have no price.
    #[serde(default = "yes")]
    defaults: bool,
    #[serde(default)]
    price: Vec<PriceEntry>,
}

fn yes() -> bool {
    true
}

/// The prices an instance applies: the operator's table, then the bundled one.
#[derive(Debug, Clone)]
pub struct PriceTable {
    operator: Vec<PriceEntry>,
    operator_date: Option<String>,
    bundled: Vec<PriceEntry>,
    bundled_date: String,
}

impl Default for PriceTable {
    /// The bundled table alone.
    fn default() -> Self {
        let file: PriceFile = toml::from_str(BUNDLED).unwrap_or_else(|_| PriceFile {
            date: None,
            defaults: true,
            price: Vec::new(),
        });
        PriceTable {
            operator: Vec::new(),
            operator_date: None,
            bundled: file.price,
            bundled_date: file.date.unwrap_or_default(),
        }
    }
}

/// A price found for a model, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoundPrice {
    pub price: ModelPrice,
    pub source: PriceSource,
}

impl PriceTable {
    /// Reads `--prices FILE`: JSON when the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, DeclarationError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeclarationError::Invalid(format!("--prices {}: {e}", path.display())))?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, json)
            .map_err(|e| DeclarationError::Invalid(format!("--prices {}: {e}", path.display())))
    }

    /// Parses a price table's text (TOML, or JSON when `json`).
    pub fn parse(text: &str, json: bool) -> Result<Self, String> {
        let file: PriceFile = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        for (i, entry) in file.price.iter().enumerate() {
            let at = format!("price[{i}] ({})", entry.model);
            if entry.provider.is_some() == entry.base_url.is_some() {
                return Err(format!("{at}: give exactly one of provider or base_url"));
            }
            if entry.model.is_empty() {
                return Err(format!("{at}: model must not be empty"));
            }
            entry.price().check(&at)?;
        }
        let mut table = PriceTable {
            operator: file.price,
            operator_date: file.date,
            ..PriceTable::default()
        };
        if !file.defaults {
            table.bundled.clear();
        }
        Ok(table)
    }

    /// The date of the bundled table.
    pub fn bundled_date(&self) -> &str {
        &self.bundled_date
    }

    /// The date the operator's file gives, if any.
    pub fn operator_date(&self) -> Option<&str> {
        self.operator_date.as_deref()
    }

    /// Checks that every provider the operator's table names is declared.
    pub(crate) fn check_providers(
        &self,
        providers: &[ProviderSpec],
    ) -> Result<(), DeclarationError> {
        for entry in &self.operator {
            if let Some(name) = &entry.provider
                && !providers.iter().any(|p| &p.name == name)
            {
                return Err(DeclarationError::Invalid(format!(
                    "--prices: provider `{name}` (model {}) is not declared",
                    entry.model
                )));
            }
        }
        Ok(())
    }

    /// The price of `model` at `base_url` (normalised), served by `provider` when that
    /// is declared: the operator's entry, else the bundled one.
    pub fn lookup(
        &self,
        provider: Option<&ProviderSpec>,
        base_url: &str,
        model: &str,
    ) -> Option<FoundPrice> {
        let at_provider = |entry: &PriceEntry| match (&entry.provider, &entry.base_url) {
            (Some(name), _) => provider.is_some_and(|p| &p.name == name),
            (None, Some(url)) => {
                super::providers::normalize_base_url(url).as_deref() == Some(base_url)
            }
            (None, None) => false,
        };
        let find = |entries: &[PriceEntry]| {
            let mut candidates = entries.iter().filter(|e| at_provider(e));
            let named = candidates.clone().find(|e| names_model(&e.model, model));
            named
                .or_else(|| candidates.find(|e| e.model == "*"))
                .map(PriceEntry::price)
        };
        if let Some(price) = find(&self.operator) {
            return Some(FoundPrice {
                price,
                source: PriceSource::Operator,
            });
        }
        find(&self.bundled).map(|price| FoundPrice {
            price,
            source: PriceSource::Default,
        })
    }
}

/// Whether a table's `entry` names `model`: the same name, or a dated snapshot of it
/// (`gpt-4o-mini-2024-07-18` for `gpt-4o-mini`).
fn names_model(entry: &str, model: &str) -> bool {
    if entry == model {
        return true;
    }
    let Some(rest) = model.strip_prefix(entry).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> ProviderSpec {
        ProviderSpec::new("openai", "https://api.openai.com/v1").unwrap()
    }

    #[test]
    fn the_bundled_table_parses_and_prices_snapshots() {
        let table = PriceTable::default();
        assert!(!table.bundled_date().is_empty());
        let found = table
            .lookup(None, "https://api.openai.com/v1", "gpt-4o-mini-2024-07-18")
            .expect("priced");
        assert_eq!(found.source, PriceSource::Default);
        assert_eq!(found.price.input_per_1m, 0.15);
        assert_eq!(found.price.batch_discount, 0.5);
        assert!(
            table
                .lookup(None, "http://localhost:11434/v1", "gpt-4o-mini")
                .is_none()
        );
        assert!(
            table
                .lookup(None, "https://api.openai.com/v1", "gpt-4o-mini-x")
                .is_none()
        );
    }

    #[test]
    fn the_operator_table_comes_first_by_name_then_wildcard() {
        let toml = r#"
            date = "2026-12-01"
            [[price]]
            provider = "openai"
            model = "gpt-4o-mini"
            input_per_1m = 1.0
            cached_input_per_1m = 0.5
            output_per_1m = 2.0
            batch_discount = 0.5
            [[price]]
            base_url = "http://gpu:8000/v1/"
            model = "*"
            input_per_1m = 0.01
            output_per_1m = 0.02
        "#;
        let table = PriceTable::parse(toml, false).unwrap();
        let spec = openai();
        let found = table
            .lookup(Some(&spec), &spec.base_url, "gpt-4o-mini")
            .unwrap();
        assert_eq!(found.source, PriceSource::Operator);
        // 1M prompt tokens of which 500k cached, 1M completion: 0.5 + 0.25 + 2.
        assert_eq!(found.price.cost(1_000_000, 500_000, 1_000_000, false), 2.75);
        assert_eq!(found.price.cost(1_000_000, 500_000, 1_000_000, true), 1.375);
        // Not in the file: the bundled price.
        let gpt4o = table.lookup(Some(&spec), &spec.base_url, "gpt-4o").unwrap();
        assert_eq!(gpt4o.source, PriceSource::Default);
        let local = table.lookup(None, "http://gpu:8000/v1", "llama").unwrap();
        assert_eq!(local.price.output_per_1m, 0.02);
        let json = r#"{"defaults": false, "price": [{"base_url": "http://h/v1", "model": "m",
            "input_per_1m": 1, "output_per_1m": 1}]}"#;
        let only = PriceTable::parse(json, true).unwrap();
        assert!(only.lookup(Some(&spec), &spec.base_url, "gpt-4o").is_none());
    }

    #[test]
    fn bad_tables_name_the_problem() {
        for (text, needle) in [
            (
                "[[price]]\nmodel = \"m\"\ninput_per_1m = 1\noutput_per_1m = 1",
                "exactly one",
            ),
            (
                "[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_1m = -1\noutput_per_1m = 1",
                "input_per_1m",
            ),
            (
                "[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_1m = 1\noutput_per_1m = 1\nbatch_discount = 1",
                "batch_discount",
            ),
            (
                "[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_1m = 1\noutput_per_1m = 1\ncolour = 1",
                "colour",
            ),
        ] {
            let error = PriceTable::parse(text, false).unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
        let table = PriceTable::parse(
            "[[price]]\nprovider = \"nobody\"\nmodel = \"m\"\ninput_per_1m = 1\noutput_per_1m = 1",
            false,
        )
        .unwrap();
        assert!(table.check_providers(&[openai()]).is_err());
    }
}
