//! The problems of one request, bounded: a 422 lists at most [`MAX_DETAILS`] entries.
//!
//! A 64 MiB body of empty cases has tens of millions of problems; describing each one
//! (a path and a message string) would cost far more than the request. Past the cap,
//! problems are only counted, and call sites in loops over client-sized collections
//! describe a problem lazily ([`Problems::report`]) so nothing is formatted for it.

use super::definition::FieldError;

/// Most entries in the `details` of one error response. With more problems, the first
/// `MAX_DETAILS - 1` are listed and the last entry (path `""`) counts the rest.
pub const MAX_DETAILS: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct Problems {
    listed: Vec<FieldError>,
    /// Problems found after `listed` was full.
    omitted: usize,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Records a problem whose path and message are already built.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.report(|| (path.into(), message.into()));
    }

    /// Records a problem, describing it only while the list has room.
    pub fn report(&mut self, describe: impl FnOnce() -> (String, String)) {
        if self.listed.len() < MAX_DETAILS {
            let (path, message) = describe();
            self.listed.push(FieldError { path, message });
        } else {
            self.omitted += 1;
        }
    }

    /// Records problems collected elsewhere (component params, telemetry config).
    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        for error in errors {
            self.push(error.path, error.message);
        }
    }

    /// The details of the error response: at most [`MAX_DETAILS`] entries.
    pub fn into_details(mut self) -> Vec<FieldError> {
        if self.omitted > 0 {
            let spilled = self.listed.split_off(MAX_DETAILS - 1);
            let more = self.omitted + spilled.len();
            self.listed.push(FieldError {
                path: String::new(),
                message: format!(
                    "and {more} more problem{} not listed (at most {} are)",
                    if more == 1 { "" } else { "s" },
                    MAX_DETAILS - 1
                ),
            });
        }
        self.listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_at_most_max_details_and_counts_the_rest() {
        let mut problems = Problems::default();
        let mut described = 0;
        for i in 0..1_000 {
            problems.report(|| {
                described += 1;
                (format!("cases[{i}]"), "is required".to_owned())
            });
        }
        assert_eq!(described, MAX_DETAILS, "nothing is built past the cap");
        let details = problems.into_details();
        assert_eq!(details.len(), MAX_DETAILS);
        assert_eq!(details[98].path, "cases[98]");
        assert_eq!(details[99].path, "");
        assert_eq!(
            details[99].message,
            "and 901 more problems not listed (at most 99 are)"
        );

        let mut few = Problems::default();
        few.push("a", "b");
        assert_eq!(few.into_details().len(), 1);
    }
}
