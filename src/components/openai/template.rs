//! Prompt templates: MiniJinja with strict undefined behaviour.
//!
//! Templates are compiled when params are validated, and any variable a template reads
//! that is not one of the allowed names is reported then, so a typo is a definition
//! error instead of a failure per case. At render time an undefined value (a missing
//! field of the input, say) is an error too; `is defined` tests work as usual.

use minijinja::{Environment, UndefinedBehavior, Value as Template};
use serde_json::Value;

/// Compiled templates of one component, addressed by the index [`Templates::add`] gave.
pub(super) struct Templates {
    env: Environment<'static>,
    count: usize,
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompts are plain text: never HTML-escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Templates { env, count: 0 }
    }

    /// Compiles `source`; the error names the problem (syntax, or a variable outside
    /// `allowed`).
    pub fn add(&mut self, source: &str, allowed: &[&str]) -> Result<usize, String> {
        let name = format!("t{}", self.count);
        let template = self
            .env
            .template_from_str(source)
            .map_err(|e| describe(&e))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
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
        self.env
            .add_template_owned(name, source.to_owned())
            .map_err(|e| describe(&e))?;
        self.count += 1;
        Ok(self.count - 1)
    }

    pub fn render(&self, index: usize, context: &Template) -> Result<String, String> {
        let template = self
            .env
            .get_template(&format!("t{index}"))
            .map_err(|e| describe(&e))?;
        template.render(context).map_err(|e| describe(&e))
    }
}

/// The render context from `(name, value)` pairs of JSON values.
pub(super) fn context(vars: &[(&str, &Value)]) -> Template {
    let map: serde_json::Map<String, Value> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), (*value).clone()))
        .collect();
    Template::from(minijinja::value::Serde(Value::Object(map)))
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

    #[test]
    fn renders_json_values() {
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
            .render(i, &context(&[("input", &input), ("case_id", &case_id)]))
            .unwrap();
        assert_eq!(
            out,
            "Q: 2+2 <b> (c1) {\"question\": \"2+2 \\u003cb\\u003e\"}"
        );
    }

    #[test]
    fn rejects_bad_syntax_and_unknown_variables_at_compile_time() {
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
        assert!(t.add("{% set x = 1 %}{{ x }}{{ input }}", VARS).is_ok());
    }

    #[test]
    fn undefined_values_fail_at_render_time() {
        let mut t = Templates::new();
        let i = t.add("{{ input.missing }}", VARS).unwrap();
        let input = json!({"question": "q"});
        let e = t.render(i, &context(&[("input", &input)])).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let j = t
            .add(
                "{% if input.missing is defined %}x{% else %}y{% endif %}",
                VARS,
            )
            .unwrap();
        assert_eq!(t.render(j, &context(&[("input", &input)])).unwrap(), "y");
    }
}
