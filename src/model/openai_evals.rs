//! The resources of the OpenAI Evals API as Themis keeps them: evals, eval runs and
//! uploaded files, each a JSON document under an OpenAI-style id (`eval_…`,
//! `evalrun_…`, `file-…`). Output items are not stored: they are the case records of
//! the Themis run an eval run is, named `outputitem_…` after the run and case index.

use serde_json::Value;

/// Which resource an [`EvalObject`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalKind {
    Eval,
    Run,
    File,
}

impl EvalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalKind::Eval => "eval",
            EvalKind::Run => "eval.run",
            EvalKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "eval" => Some(EvalKind::Eval),
            "eval.run" => Some(EvalKind::Run),
            "file" => Some(EvalKind::File),
            _ => None,
        }
    }

    /// The id prefix OpenAI gives this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            EvalKind::Eval => "eval_",
            EvalKind::Run => "evalrun_",
            EvalKind::File => "file-",
        }
    }

    /// A new random id of this kind: the prefix and 32 lowercase hex digits.
    pub fn new_id(self) -> String {
        format!("{}{}", self.prefix(), uuid::Uuid::new_v4().simple())
    }

    /// Whether `id` has this kind's shape (so a malformed id is never looked up).
    pub fn is_id(self, id: &str) -> bool {
        id.strip_prefix(self.prefix()).is_some_and(is_hex32)
    }
}

pub(crate) fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalObject {
    pub kind: EvalKind,
    pub id: String,
    /// The eval of a run; none for evals and files.
    pub parent_id: Option<String>,
    /// A run's status as last recorded (listings filter on it).
    pub status: Option<String>,
    /// Unix seconds, as OpenAI writes `created_at`.
    pub created_at: i64,
    /// The resource as the API shows it (a run's live fields are filled in when read).
    pub body: Value,
    /// A file's bytes (UTF-8 text: eval files are JSONL); not loaded by listings.
    pub content: Option<String>,
}

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    Asc,
    Desc,
}

/// A page of resources of one kind, in creation order, after a cursor.
#[derive(Debug, Clone)]
pub struct EvalObjectQuery {
    pub kind: EvalKind,
    pub parent_id: Option<String>,
    pub status: Option<String>,
    /// The id of the last object of the previous page.
    pub after: Option<String>,
    pub order: ListOrder,
    pub limit: u32,
}

/// An output item's id: `outputitem_`, the run's 32 hex digits, then the case index in
/// hex, so the item is found from its id alone.
pub fn output_item_id(run_id: &str, case_index: u64) -> String {
    let hex = run_id
        .strip_prefix(EvalKind::Run.prefix())
        .unwrap_or(run_id);
    format!("outputitem_{hex}{case_index:x}")
}

/// The (eval run id, case index) an output item id names.
pub fn parse_output_item_id(id: &str) -> Option<(String, u64)> {
    let rest = id.strip_prefix("outputitem_")?;
    let (run, index) = (rest.get(..32)?, rest.get(32..)?);
    if !is_hex32(run) || index.is_empty() || index.len() > 16 {
        return None;
    }
    let index = u64::from_str_radix(index, 16).ok()?;
    Some((format!("{}{run}", EvalKind::Run.prefix()), index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_item_ids_round_trip() {
        let run = EvalKind::Run.new_id();
        assert!(EvalKind::Run.is_id(&run));
        let item = output_item_id(&run, 300);
        assert_eq!(parse_output_item_id(&item), Some((run, 300)));
        assert_eq!(parse_output_item_id("outputitem_zz"), None);
        assert!(!EvalKind::Eval.is_id("eval_../../x"));
    }
}
