//! The limits of an agent loop: a run's own (`max_turns`, `max_tool_calls`,
//! `token_limit`, `time_limit_s`, `cost_limit_usd`, `max_tool_output_chars`), each at
//! most the operator's cap ([`AgentCaps`], `--agent-caps`).

use std::time::Duration;

use crate::components::Params;

/// The operator's caps on every agent loop of the instance. A run may ask for less,
/// never more; what it leaves out defaults to the cap (`max_turns` to 10 within it).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCaps {
    pub max_turns: u64,
    pub max_tool_calls: u64,
    /// Prompt plus completion tokens of one loop; `None`: no cap.
    pub token_limit: Option<u64>,
    pub time_limit_s: f64,
    /// `None`: no cap.
    pub cost_limit_usd: Option<f64>,
    /// Characters of one tool result handed to the model (and recorded).
    pub max_tool_output_chars: u64,
}

/// `max_turns` when a run does not say.
const DEFAULT_MAX_TURNS: u64 = 10;

impl Default for AgentCaps {
    fn default() -> Self {
        AgentCaps {
            max_turns: 100,
            max_tool_calls: 500,
            token_limit: None,
            time_limit_s: 3_600.0,
            cost_limit_usd: None,
            max_tool_output_chars: 16_384,
        }
    }
}

impl AgentCaps {
    /// Parses `max_turns=50,max_tool_calls=200,token_limit=100000,time_limit_s=600,
    /// cost_limit_usd=1.5,max_tool_output_chars=8192` (any subset; the rest keep their
    /// defaults).
    pub fn parse(text: &str) -> Result<AgentCaps, String> {
        let mut caps = AgentCaps::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not key=value"))?;
            let int = || {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("{key} must be a positive integer"))
            };
            let float = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0 && *x <= 1e9)
                    .ok_or_else(|| format!("{key} must be a positive number"))
            };
            match key {
                "max_turns" => caps.max_turns = int()?,
                "max_tool_calls" => caps.max_tool_calls = int()?,
                "token_limit" => caps.token_limit = Some(int()?),
                "time_limit_s" => caps.time_limit_s = float()?,
                "cost_limit_usd" => caps.cost_limit_usd = Some(float()?),
                "max_tool_output_chars" => caps.max_tool_output_chars = int()?,
                _ => {
                    return Err(format!(
                        "unknown cap `{key}`; expected max_turns, max_tool_calls, token_limit, \
                         time_limit_s, cost_limit_usd, max_tool_output_chars"
                    ));
                }
            }
        }
        Ok(caps)
    }
}

/// One run's limits on each of its agent loops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub max_turns: u64,
    pub max_tool_calls: u64,
    pub token_limit: Option<u64>,
    pub time_limit: Duration,
    pub cost_limit_usd: Option<f64>,
    pub max_tool_output_chars: usize,
}

/// Reads the limits params, each within the operator's cap. `priced`: the run gave a
/// `price` (a cost limit needs one).
pub(crate) fn read_limits(p: &mut Params<'_>, caps: &AgentCaps, priced: bool) -> Limits {
    let over = |name: &str, cap: String| {
        format!("must be at most {cap} (the operator's cap, --agent-caps {name}=...)")
    };
    let int = |p: &mut Params<'_>, key: &'static str, default: u64, cap: u64| match p.value(key) {
        None => default.min(cap),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= cap => n,
            Some(n) if n > cap => {
                p.error(key, over(key, cap.to_string()));
                cap
            }
            _ => {
                p.error(key, "must be a positive integer");
                default.min(cap)
            }
        },
    };
    let max_turns = int(p, "max_turns", DEFAULT_MAX_TURNS, caps.max_turns);
    let max_tool_calls = int(
        p,
        "max_tool_calls",
        caps.max_tool_calls,
        caps.max_tool_calls,
    );
    let max_tool_output_chars = int(
        p,
        "max_tool_output_chars",
        caps.max_tool_output_chars,
        caps.max_tool_output_chars,
    ) as usize;
    let token_limit = match p.value("token_limit") {
        None => caps.token_limit,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && caps.token_limit.is_none_or(|cap| n <= cap) => Some(n),
            Some(n) if n >= 1 => {
                p.error(
                    "token_limit",
                    over("token_limit", format!("{:?}", caps.token_limit)),
                );
                caps.token_limit
            }
            _ => {
                p.error("token_limit", "must be a positive integer");
                caps.token_limit
            }
        },
    };
    let float = |p: &mut Params<'_>, key: &'static str, cap: Option<f64>| match p.value(key) {
        None => Ok(cap),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 && cap.is_none_or(|cap| x <= cap) => Ok(Some(x)),
            Some(x) if x.is_finite() && x > 0.0 => {
                p.error(
                    key,
                    over(key, cap.map(|c| c.to_string()).unwrap_or_default()),
                );
                Err(())
            }
            _ => {
                p.error(key, "must be a positive number");
                Err(())
            }
        },
    };
    let time_limit_s = float(p, "time_limit_s", Some(caps.time_limit_s))
        .ok()
        .flatten()
        .unwrap_or(caps.time_limit_s);
    let asked_cost = p.value("cost_limit_usd").is_some();
    // The operator's cost cap counts priced runs only: without a price there is no cost.
    let cost_limit_usd = match float(p, "cost_limit_usd", caps.cost_limit_usd) {
        Ok(Some(limit)) if asked_cost && !priced => {
            p.error(
                "cost_limit_usd",
                "needs a price ({\"prompt_per_1k\": x, \"completion_per_1k\": y}) to count cost",
            );
            Some(limit)
        }
        Ok(limit) => limit,
        Err(()) => caps.cost_limit_usd,
    };
    Limits {
        max_turns,
        max_tool_calls,
        token_limit,
        time_limit: Duration::from_secs_f64(time_limit_s),
        cost_limit_usd,
        max_tool_output_chars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(
        params: serde_json::Value,
        caps: &AgentCaps,
        priced: bool,
    ) -> Result<Limits, Vec<String>> {
        let map = params.as_object().unwrap();
        let mut p = Params::new(map);
        let limits = read_limits(&mut p, caps, priced);
        p.finish(limits).map_err(|e| {
            e.into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        })
    }

    #[test]
    fn defaults_and_caps() {
        let caps = AgentCaps::parse("max_turns=5,cost_limit_usd=2,time_limit_s=60").unwrap();
        let limits = read(json!({}), &caps, false).unwrap();
        assert_eq!(limits.max_turns, 5);
        assert_eq!(limits.time_limit, Duration::from_secs(60));
        assert_eq!(limits.max_tool_calls, 500);
        let limits = read(json!({"max_turns": 3, "cost_limit_usd": 0.5}), &caps, true).unwrap();
        assert_eq!((limits.max_turns, limits.cost_limit_usd), (3, Some(0.5)));
        let errors = read(
            json!({"max_turns": 6, "time_limit_s": 61, "cost_limit_usd": 3, "token_limit": 0}),
            &caps,
            true,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("--agent-caps"), "{errors:?}");
        let errors = read(json!({"cost_limit_usd": 1}), &caps, false).unwrap_err();
        assert!(
            errors[0].starts_with("cost_limit_usd: needs a price"),
            "{errors:?}"
        );
        assert!(AgentCaps::parse("max_turns=0").is_err());
        assert!(AgentCaps::parse("bogus=1").is_err());
        assert_eq!(
            read(json!({}), &AgentCaps::default(), false)
                .unwrap()
                .max_turns,
            10
        );
    }
}
