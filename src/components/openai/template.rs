//! Prompt templates: MiniJinja with strict undefined behaviour.
//!
//! Templates are compiled when params are validated, and any variable a template reads
//! that is not one of the allowed names is reported then, so a typo is a definition
//! error instead of a failure per case. At render time an undefined value (a missing
//! field of the input, say) is an error too; `is defined` tests work as usual.
//!
//! Templates come from clients, so a render is bounded: it gets [`FUEL`] (MiniJinja
//! charges about one unit per instruction and per 64 bytes of data it creates) and may
//! write at most [`MAX_OUTPUT_BYTES`]. A template with statements (`{% ... %}`: loops,
//! macros) or operators that multiply work can still take milliseconds, so those render
//! on tokio's blocking pool instead of an async worker; plain substitutions render in
//! place (a thread hop would cost more than the render).

use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value as Template};
use serde_json::Value;

use crate::components::JudgeRequest;

/// Fuel per render: enough for any realistic prompt (a loop over a few thousand items),
/// small enough that a runaway template fails within a fraction of a second.
pub(super) const FUEL: u64 = 1_000_000;
/// Largest rendered template, in bytes.
pub(super) const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Compiled templates of one component, addressed by the index [`Templates::add`] gave.
pub(super) struct Templates {
    env: Arc<Environment<'static>>,
    /// Per template: whether it can do more than substitute values (renders off the
    /// async workers).
    heavy: Vec<bool>,
    /// Per template: the variables its context holds: those it reads, or `None` for
    /// all (a template that may see more than it names: `debug()` shows the whole
    /// context, statements may include another template).
    reads: Vec<Option<Vec<String>>>,
}

impl Templates {
    pub(super) fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompts are plain text: never HTML-escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        Templates {
            env: Arc::new(env),
            heavy: Vec::new(),
            reads: Vec::new(),
        }
    }

    /// Compiles `source`; the error names the problem (syntax, or a variable outside
    /// `allowed`).
    pub(super) fn add(&mut self, source: &str, allowed: &[&str]) -> Result<usize, String> {
        let name = format!("t{}", self.heavy.len());
        let template = self
            .env
            .template_from_str(source)
            .map_err(|e| describe(&e))?;
        let variables = template.undeclared_variables(false);
        let heavy = is_heavy(source);
        // Only what a template reads is converted for each render.
        let reads = (!heavy && !source.contains("debug")).then(|| {
            variables
                .iter()
                .filter(|v| allowed.contains(&v.as_str()))
                .cloned()
                .collect()
        });
        let mut unknown: Vec<String> = variables
            .into_iter()
            .filter(|var| {
                !allowed.contains(&var.as_str()) && !self.env.globals().any(|(g, _)| g == var)
            })
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(format!(
                "uses undefined variable{} {}; available: {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                allowed.join(", ")
            ));
        }
        // Templates are added while params are read, before the environment is shared.
        Arc::make_mut(&mut self.env)
            .add_template_owned(name, source.to_owned())
            .map_err(|e| describe(&e))?;
        self.heavy.push(heavy);
        self.reads.push(reads);
        Ok(self.heavy.len() - 1)
    }

    /// Whether template `index` reads variable `name` (anywhere, even under a test).
    pub(super) fn uses(&self, index: usize, name: &str) -> bool {
        self.env
            .get_template(&format!("t{index}"))
            .is_ok_and(|t| t.undeclared_variables(false).contains(name))
    }

    /// Renders template `index` with the `(name, value)` variables, off the async workers
    /// when it may be slow. Dropping the future abandons the render; its fuel bounds how
    /// long the blocking thread goes on.
    pub(super) async fn render(
        &self,
        index: usize,
        vars: &[(&str, &Value)],
    ) -> Result<String, String> {
        let context = match self.reads.get(index) {
            Some(Some(reads)) => context(vars, |name| reads.iter().any(|r| r == name)),
            _ => context(vars, |_| true),
        };
        if !self.heavy.get(index).copied().unwrap_or(false) {
            return render_bounded(&self.env, index, &context);
        }
        let env = Arc::clone(&self.env);
        tokio::task::spawn_blocking(move || render_bounded(&env, index, &context))
            .await
            .unwrap_or_else(|e| Err(format!("template render did not finish: {e}")))
    }
}

/// Whether a template can do more than substitute values: statements (loops, macros,
/// `set` blocks), repetition (`"x" * n`), ranges.
fn is_heavy(source: &str) -> bool {
    source.contains("{%") || source.contains('*') || source.contains("range")
}

/// Renders with the environment's fuel and at most [`MAX_OUTPUT_BYTES`] of output.
fn render_bounded(
    env: &Environment<'static>,
    index: usize,
    context: &Template,
) -> Result<String, String> {
    let template = env
        .get_template(&format!("t{index}"))
        .map_err(|e| describe(&e))?;
    let mut out = Capped {
        buffer: Vec::new(),
        overflowed: false,
    };
    match template.render_captured_to(context.clone(), &mut out) {
        Ok(_) => String::from_utf8(out.buffer).map_err(|e| e.to_string()),
        Err(_) if out.overflowed => {
            Err(format!("template output exceeds {MAX_OUTPUT_BYTES} bytes"))
        }
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(format!(
            "template ran out of fuel (more than {FUEL} units of work: loops or data too large)"
        )),
        Err(e) => Err(describe(&e)),
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT_BYTES`] (the render then stops).
struct Capped {
    buffer: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("template output too large"));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The render context: the `(name, value)` pairs that `keep` accepts, converted
/// straight from the borrowed JSON values (no copy of the JSON first).
fn context(vars: &[(&str, &Value)], keep: impl Fn(&str) -> bool) -> Template {
    Template::from(minijinja::value::Serde(Vars { vars, keep }))
}

/// `(name, value)` pairs serialized as a map.
struct Vars<'a, F> {
    vars: &'a [(&'a str, &'a Value)],
    keep: F,
}

impl<F: Fn(&str) -> bool> serde::Serialize for Vars<'_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.vars.iter().filter(|(name, _)| (self.keep)(name)) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Variables the judges' templates (rubric, system, criteria) can use.
pub(super) const JUDGE_VARIABLES: [&str; 7] = [
    "input",
    "expected_output",
    "output",
    "case_id",
    "dataset_id",
    "metadata",
    "transcript",
];

/// A judge request's fields as template variables, named as in [`JUDGE_VARIABLES`].
pub(super) struct JudgeVars<'a> {
    request: &'a JudgeRequest<'a>,
    case_id: Value,
    dataset_id: Value,
    /// An agent's transcript as readable text (`null` for outputs of other generators).
    transcript: Value,
}

impl<'a> JudgeVars<'a> {
    pub(super) fn new(request: &'a JudgeRequest<'a>) -> Self {
        JudgeVars {
            request,
            case_id: Value::String(request.case.case_id.clone()),
            dataset_id: Value::String(request.dataset_id.to_owned()),
            transcript: request
                .transcript
                .map_or(Value::Null, |t| Value::String(t.render())),
        }
    }

    pub(super) fn pairs(&self) -> [(&'static str, &Value); 7] {
        let case = self.request.case;
        [
            ("input", &case.input),
            ("expected_output", &case.expected_output),
            ("output", self.request.parsed),
            ("case_id", &self.case_id),
            ("dataset_id", &self.dataset_id),
            ("metadata", &case.metadata),
            ("transcript", &self.transcript),
        ]
    }
}

/// A case value as prompt text: strings as they are, JSON pretty-printed.
pub(super) fn prompt_text(value: &Value) -> String {
    match value {
        Value::Null => "(none given)".to_owned(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A one-line description of a template error with its line, if known.
fn describe(error: &minijinja::Error) -> String {
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(line) = error.line() {
        message.push_str(&format!(" (line {line})"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VARS: &[&str] = &["input", "case_id"];

    #[tokio::test]
    async fn renders_json_values() {
        let mut t = Templates::new();
        let i = t
            .add(
                "Q: {{ input.question }} ({{ case_id }}) {{ input | tojson }}\n",
                VARS,
            )
            .unwrap();
        let input = json!({"question": "2+2 <b>"});
        let case_id = json!("c1");
        let out = t
            .render(i, &[("input", &input), ("case_id", &case_id)])
            .await
            .unwrap();
        assert_eq!(
            out,
            "Q: 2+2 <b> (c1) {\"question\": \"2+2 \\u003cb\\u003e\"}"
        );
    }

    /// A template's context holds what it reads, except where it could see more.
    #[tokio::test]
    async fn contexts_hold_the_variables_a_template_reads() {
        let mut t = Templates::new();
        let input = json!({"question": "q"});
        let case_id = json!("c1");
        let vars = [("input", &input), ("case_id", &case_id)];
        let reads_input = t.add("{{ input.question }}", VARS).unwrap();
        let tests_case_id = t.add("{{ case_id is defined }}", VARS).unwrap();
        let missing_field = t.add("{{ input.answer }}", VARS).unwrap();
        let shows_all = t.add("{{ debug() }}", VARS).unwrap();
        assert_eq!(
            t.reads[reads_input].as_deref(),
            Some(&["input".to_owned()][..])
        );
        assert_eq!(t.render(reads_input, &vars).await.unwrap(), "q");
        assert_eq!(t.render(tests_case_id, &vars).await.unwrap(), "True");
        assert!(
            t.render(missing_field, &vars).await.is_err(),
            "still strict"
        );
        assert_eq!(t.reads[shows_all], None);
        let all = t.render(shows_all, &vars).await.unwrap();
        assert!(all.contains("case_id") && all.contains("input"), "{all}");
    }

    #[tokio::test]
    async fn rejects_bad_syntax_and_unknown_variables_at_compile_time() {
        let mut t = Templates::new();
        assert!(
            t.add("{{ input.question ", VARS)
                .unwrap_err()
                .contains("syntax")
        );
        let e = t
            .add("{{ inptu }} {{ range(3) | list }}", VARS)
            .unwrap_err();
        assert!(
            e.contains("inptu") && e.contains("available: input, case_id"),
            "{e}"
        );
        // Variables a template sets itself are not unknown ones: it compiles and renders.
        let set = t.add("{% set x = 1 %}{{ x }}{{ input }}", VARS).unwrap();
        let input = json!("q");
        let rendered = t.render(set, &[("input", &input)]).await;
        assert_eq!(rendered.unwrap(), "1q");
    }

    #[tokio::test]
    async fn undefined_values_fail_at_render_time() {
        let mut t = Templates::new();
        let i = t.add("{{ input.missing }}", VARS).unwrap();
        let input = json!({"question": "q"});
        let e = t.render(i, &[("input", &input)]).await.unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let j = t
            .add(
                "{% if input.missing is defined %}x{% else %}y{% endif %}",
                VARS,
            )
            .unwrap();
        assert_eq!(t.render(j, &[("input", &input)]).await.unwrap(), "y");
    }

    #[tokio::test]
    async fn runaway_templates_run_out_of_fuel_quickly() {
        let mut t = Templates::new();
        let loops = t
            .add(
                "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
                VARS,
            )
            .unwrap();
        let repeat = t.add("{{ 'x' * 1000000000 }}", VARS).unwrap();
        let input = json!(null);
        for i in [loops, repeat] {
            let started = std::time::Instant::now();
            let e = t.render(i, &[("input", &input)]).await.unwrap_err();
            assert!(e.contains("ran out of fuel"), "{e}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }
    }

    #[tokio::test]
    async fn output_is_capped() {
        let mut t = Templates::new();
        // Within the fuel, beyond the output cap: 2 MiB of a 1 KiB string.
        let i = t
            .add("{% for i in range(2048) %}{{ input }}{% endfor %}", VARS)
            .unwrap();
        let input = json!("y".repeat(1024));
        let e = t.render(i, &[("input", &input)]).await.unwrap_err();
        assert!(e.contains("exceeds 1048576 bytes"), "{e}");
        let light = t.add("{{ input }}", VARS).unwrap();
        assert!(!t.heavy[light] && t.heavy[i]);
        assert_eq!(
            t.render(light, &[("input", &input)]).await.unwrap(),
            "y".repeat(1024)
        );
    }
}
