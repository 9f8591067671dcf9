//! `multi`'s `calculate_output`: arithmetic over the sub-graders' scores by name
//! (`0.5 * fuzzy + 0.5 * label`), with `+ - * /`, parentheses, unary minus and the
//! functions `min`, `max`, `abs`, `floor`, `ceil`, `exp`, `sqrt`, `log`.

use std::collections::BTreeMap;

const MAX_FORMULA_BYTES: usize = 4096;
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Number(f64),
    Name(String),
    Neg(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

const FUNCTIONS: [&str; 8] = ["min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log"];

pub(crate) fn parse(source: &str) -> Result<Expr, String> {
    if source.len() > MAX_FORMULA_BYTES {
        return Err(format!("longer than {MAX_FORMULA_BYTES} bytes"));
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser { tokens, pos: 0 };
    let expr = parser.sum(0)?;
    if parser.pos != parser.tokens.len() {
        return Err(format!("unexpected `{}`", parser.tokens[parser.pos]));
    }
    Ok(expr)
}

impl Expr {
    /// Names the formula reads.
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            Expr::Number(_) => {}
            Expr::Name(n) => out.push(n.clone()),
            Expr::Neg(e) => e.names(out),
            Expr::Binary(_, a, b) => {
                a.names(out);
                b.names(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.names(out)),
        }
    }

    pub(crate) fn eval(&self, scores: &BTreeMap<String, f64>) -> Result<f64, String> {
        Ok(match self {
            Expr::Number(x) => *x,
            Expr::Name(n) => *scores
                .get(n)
                .ok_or_else(|| format!("no grader named `{n}`"))?,
            Expr::Neg(e) => -e.eval(scores)?,
            Expr::Binary(op, a, b) => {
                let (a, b) = (a.eval(scores)?, b.eval(scores)?);
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => a / b,
                }
            }
            Expr::Call(f, args) => {
                let values = args
                    .iter()
                    .map(|a| a.eval(scores))
                    .collect::<Result<Vec<_>, _>>()?;
                let one = || values.first().copied().unwrap_or(f64::NAN);
                match f.as_str() {
                    "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "abs" => one().abs(),
                    "floor" => one().floor(),
                    "ceil" => one().ceil(),
                    "exp" => one().exp(),
                    "sqrt" => one().sqrt(),
                    _ => one().ln(),
                }
            }
        })
    }
}

fn tokenize(source: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if "+-*/(),".contains(c) {
            tokens.push(c.to_string());
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else {
            return Err(format!("unexpected character `{c}`"));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.peek() == Some(token) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{token}`"))
        }
    }

    fn sum(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let mut left = self.product(depth)?;
        while let Some(op @ ("+" | "-")) = self.peek() {
            let op = op.chars().next().unwrap_or('+');
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product(depth)?));
        }
        Ok(left)
    }

    fn product(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        while let Some(op @ ("*" | "/")) = self.peek() {
            let op = op.chars().next().unwrap_or('*');
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if self.peek() == Some("-") {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary(depth + 1)?)));
        }
        self.atom(depth)
    }

    fn atom(&mut self, depth: usize) -> Result<Expr, String> {
        let token = self
            .peek()
            .ok_or_else(|| "unexpected end".to_owned())?
            .to_owned();
        self.pos += 1;
        if token == "(" {
            let inner = self.sum(depth + 1)?;
            self.expect(")")?;
            return Ok(inner);
        }
        if let Ok(x) = token.parse::<f64>() {
            return Ok(Expr::Number(x));
        }
        if token
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
        {
            if self.peek() == Some("(") {
                if !FUNCTIONS.contains(&token.as_str()) {
                    return Err(format!("unknown function `{token}`"));
                }
                self.pos += 1;
                let mut args = vec![self.sum(depth + 1)?];
                while self.peek() == Some(",") {
                    self.pos += 1;
                    args.push(self.sum(depth + 1)?);
                }
                self.expect(")")?;
                return Ok(Expr::Call(token, args));
            }
            return Ok(Expr::Name(token));
        }
        Err(format!("unexpected `{token}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_weighted_formulas() {
        let scores: BTreeMap<String, f64> = [("a".to_owned(), 1.0), ("b_2".to_owned(), 0.5)].into();
        let e = parse("0.5 * a + 0.5 * b_2").unwrap();
        assert_eq!(e.eval(&scores).unwrap(), 0.75);
        assert_eq!(
            parse("min(a, b_2) - -1").unwrap().eval(&scores).unwrap(),
            1.5
        );
        assert_eq!(parse("(a + b_2) / 2").unwrap().eval(&scores).unwrap(), 0.75);
        assert!(parse("a +").is_err());
        assert!(parse("system(a)").is_err());
        assert!(parse("c").unwrap().eval(&scores).is_err());
        assert!(parse(&"(".repeat(200)).is_err());
    }
}
