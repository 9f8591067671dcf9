//! A sandbox the operator declares: `local`, or
//! `name=NAME,kind=local|piston|sandbox_fusion[,url=URL][,languages=python+c]`.

use super::local::LOCAL_LANGUAGES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxKind {
    /// bubblewrap on this machine.
    Local,
    /// A Piston service: `POST {url}/api/v2/execute`.
    Piston { url: reqwest::Url },
    /// A SandboxFusion service: `POST {url}/run_code`.
    SandboxFusion { url: reqwest::Url },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub name: String,
    pub kind: SandboxKind,
    /// Languages runs may name, passed to remote services as they are.
    pub languages: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl SandboxSpec {
    /// The bubblewrap sandbox `local` with Python and C.
    pub fn local() -> Self {
        SandboxSpec {
            name: "local".to_owned(),
            kind: SandboxKind::Local,
            languages: LOCAL_LANGUAGES.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    /// Parses one `--sandbox` entry. A leaf parser of operator text: its error is the
    /// message shown (the caller adds the flag and the entry).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "local" {
            return Ok(Self::local());
        }
        let (mut name, mut kind, mut url, mut languages) = (None, None, None, None);
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}`: expected key=value"))?;
            let value = value.trim();
            let slot = match key.trim() {
                "name" => &mut name,
                "kind" => &mut kind,
                "url" => &mut url,
                "languages" => &mut languages,
                other => {
                    return Err(format!(
                        "unknown key `{other}` (known: name, kind, url, languages)"
                    ));
                }
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(format!("`{}` given twice", key.trim()));
            }
        }
        let name = name.ok_or("`name` is required")?;
        if !valid_name(&name) {
            return Err(format!(
                "name `{name}`: use letters, digits, `_`, `-`, `.` (at most 64)"
            ));
        }
        let languages: Option<Vec<String>> = languages.map(|l| {
            l.split('+')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect()
        });
        if let Some(list) = &languages
            && (list.is_empty() || list.iter().any(|l| !valid_name(l)))
        {
            return Err("`languages`: names joined by `+` (`python+c`)".to_owned());
        }
        let kind_name = kind.ok_or("`kind` is required: local, piston or sandbox_fusion")?;
        let parse_url = |url: Option<String>| -> Result<reqwest::Url, String> {
            let url = url.ok_or_else(|| format!("kind {kind_name} needs `url`"))?;
            let parsed = reqwest::Url::parse(&url).map_err(|e| format!("url `{url}`: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!(
                    "url `{url}`: expected http(s)://host[:port][/path]"
                ));
            }
            Ok(parsed)
        };
        let kind = match kind_name.as_str() {
            "local" => {
                if url.is_some() {
                    return Err("kind local takes no `url`".to_owned());
                }
                if let Some(list) = &languages
                    && let Some(other) =
                        list.iter().find(|l| !LOCAL_LANGUAGES.contains(&l.as_str()))
                {
                    return Err(format!(
                        "the local sandbox runs {}, not `{other}`",
                        LOCAL_LANGUAGES.join(" and ")
                    ));
                }
                SandboxKind::Local
            }
            "piston" => SandboxKind::Piston {
                url: parse_url(url)?,
            },
            "sandbox_fusion" => SandboxKind::SandboxFusion {
                url: parse_url(url)?,
            },
            other => {
                return Err(format!(
                    "kind `{other}`: expected local, piston or sandbox_fusion"
                ));
            }
        };
        let languages = languages.unwrap_or_else(|| match kind {
            SandboxKind::Local => Self::local().languages,
            _ => vec!["python".to_owned()],
        });
        Ok(SandboxSpec {
            name,
            kind,
            languages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_remote_declarations() {
        assert_eq!(SandboxSpec::parse("local").unwrap(), SandboxSpec::local());
        let piston = SandboxSpec::parse(
            "name=cluster,kind=piston,url=http://10.0.0.5:2000,languages=python+c",
        )
        .unwrap();
        assert_eq!(piston.name, "cluster");
        assert_eq!(piston.languages, ["python", "c"]);
        assert!(matches!(piston.kind, SandboxKind::Piston { .. }));
        let fusion =
            SandboxSpec::parse("name=f,kind=sandbox_fusion,url=https://sf.example").unwrap();
        assert_eq!(fusion.languages, ["python"]);
        let py_only = SandboxSpec::parse("name=py,kind=local,languages=python").unwrap();
        assert_eq!(py_only.languages, ["python"]);
    }

    #[test]
    fn rejects_bad_declarations_with_the_reason() {
        for (text, needle) in [
            ("kind=piston,url=http://x", "`name` is required"),
            ("name=a,kind=piston", "needs `url`"),
            ("name=a,kind=docker", "expected local, piston"),
            ("name=a,kind=piston,url=ftp://x", "expected http"),
            ("name=a b,kind=local", "name `a b`"),
            ("name=a,kind=local,languages=rust", "not `rust`"),
            ("name=a,kind=local,color=red", "unknown key"),
            ("name=a,name=b,kind=local", "given twice"),
        ] {
            let error = SandboxSpec::parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
