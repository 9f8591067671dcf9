//! `GET /runs/{id}` bodies and ETags, and the ones of runs executing here kept per
//! version of their summary: dashboards poll running runs, and a poll that finds
//! nothing changed (a `304`) serialises and hashes nothing; a `200` of an unchanged
//! running run only writes its `duration_ms` into the kept bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderValue;
use bytes::Bytes;
use sha2::Digest;

use super::error::ApiError;
use crate::engine::ConcurrencyLimit;
use crate::model::{RunId, RunRecord};
use crate::observe::TelemetryView;

/// Runs whose encodings are kept at most (more than any instance executes at once; past
/// it, the entries of runs no longer executing here go first).
const KEPT: usize = 1_024;

/// A run's body as `GET /runs/{id}` writes it, without the clock's part: the body with
/// `"duration_ms":null` and its weak ETag, a digest of those bytes.
#[derive(Clone)]
pub(super) struct Encoded {
    pub tag: HeaderValue,
    stable: Bytes,
    /// Where the `null` of `duration_ms` starts in `stable`, when the run is running:
    /// its duration is the clock at request time, not state, so it is left out of the
    /// digest (polling a running run gets `304` while nothing happened) and written in
    /// at each `200`.
    live_duration: Option<usize>,
}

const NULL_DURATION: &[u8] = b"\"duration_ms\":null";

impl Encoded {
    /// Encodes `view`, whose `duration_ms` is `None` when the run is running (`running`).
    /// Only the view of a summary (no definition, no runtime options) may be running
    /// here: every field after its `duration_ms` has fixed keys.
    pub(super) fn new<V: serde::Serialize>(view: &V, running: bool) -> Result<Self, ApiError> {
        let stable = serde_json::to_vec(view)
            .map_err(|e| ApiError::Internal(format!("serialising run: {e}")))?;
        let digest = sha2::Sha256::digest(&stable);
        let tag = HeaderValue::from_str(&format!("W/\"{}\"", hex::encode(&digest[..16])))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // The last occurrence: a user's map (labels' metadata, metric ids) may hold the
        // same key before it, and every field written after it has fixed keys.
        let live_duration = if running {
            let at = stable
                .windows(NULL_DURATION.len())
                .rposition(|w| w == NULL_DURATION)
                .ok_or_else(|| ApiError::Internal("a run view without duration_ms".into()))?;
            Some(at + NULL_DURATION.len() - "null".len())
        } else {
            None
        };
        Ok(Encoded {
            tag,
            stable: Bytes::from(stable),
            live_duration,
        })
    }

    /// The same tag with `body` as the body as it is: for a view with fields after
    /// `duration_ms` that a user's keys may repeat (`include=definition`), where no
    /// occurrence of the key is known to be the view's own.
    pub(super) fn with_body(self, body: Vec<u8>) -> Self {
        Encoded {
            tag: self.tag,
            stable: Bytes::from(body),
            live_duration: None,
        }
    }

    /// The body, with `duration_ms` for a running run.
    pub(super) fn body(&self, duration_ms: Option<u64>) -> Bytes {
        match (self.live_duration, duration_ms) {
            (Some(at), Some(duration)) => {
                let digits = duration.to_string();
                let digits = digits.as_bytes();
                let mut body = Vec::with_capacity(self.stable.len() + digits.len());
                body.extend_from_slice(&self.stable[..at]);
                body.extend_from_slice(digits);
                body.extend_from_slice(&self.stable[at + "null".len()..]);
                Bytes::from(body)
            }
            _ => self.stable.clone(),
        }
    }

    /// Whether `If-None-Match` names this tag (or `*`).
    pub(super) fn matches(&self, if_none_match: Option<&HeaderValue>) -> bool {
        let tag = self.tag.as_bytes();
        if_none_match
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|candidate| candidate.trim().as_bytes() == tag || candidate.trim() == "*")
            })
    }
}

/// What a run's encoding was made from: its summary (the very one the engine keeps,
/// replaced at every change) and the counters that live outside it.
struct Entry {
    summary: Arc<RunRecord>,
    telemetry: Option<TelemetryView>,
    concurrency: Option<ConcurrencyLimit>,
    encoded: Encoded,
}

/// The encodings of runs executing here (the API's own; never shared between servers).
#[derive(Default)]
pub(crate) struct StatusCache {
    entries: Mutex<HashMap<RunId, Entry>>,
}

impl StatusCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept encoding of `summary` with these counters, or the one `encode` makes
    /// (kept for the next poll). The summary is compared by identity: the engine
    /// replaces it with a new one at every change and never changes one in place.
    pub(super) fn get_or_encode(
        &self,
        summary: &Arc<RunRecord>,
        telemetry: Option<TelemetryView>,
        concurrency: Option<ConcurrencyLimit>,
        encode: impl FnOnce(
            &RunRecord,
            Option<TelemetryView>,
            Option<ConcurrencyLimit>,
        ) -> Result<Encoded, ApiError>,
        still_live: impl Fn(&RunId) -> bool,
    ) -> Result<Encoded, ApiError> {
        if let Some(entry) = self.lock().get(&summary.run_id)
            && Arc::ptr_eq(&entry.summary, summary)
            && entry.telemetry == telemetry
            && entry.concurrency == concurrency
        {
            return Ok(entry.encoded.clone());
        }
        let encoded = encode(summary, telemetry.clone(), concurrency.clone())?;
        let mut entries = self.lock();
        if entries.len() >= KEPT && !entries.contains_key(&summary.run_id) {
            entries.retain(|run_id, _| still_live(run_id));
            if entries.len() >= KEPT {
                entries.clear();
            }
        }
        entries.insert(
            summary.run_id.clone(),
            Entry {
                summary: Arc::clone(summary),
                telemetry,
                concurrency,
                encoded: encoded.clone(),
            },
        );
        Ok(encoded)
    }

    /// Forgets a run that no longer executes here (its summary is read from the store).
    pub(super) fn forget(&self, run_id: &RunId) {
        self.lock().remove(run_id);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Encoded;

    #[test]
    fn a_running_run_gets_its_duration_written_where_the_digest_has_null() {
        // Fields in the order of a run's view: a user's metadata may hold the same key
        // before the real one.
        #[derive(serde::Serialize)]
        struct View {
            metadata: serde_json::Value,
            status: &'static str,
            duration_ms: Option<u64>,
            links: serde_json::Value,
        }
        let view = View {
            metadata: json!({"duration_ms": null}),
            status: "running",
            duration_ms: None,
            links: json!({"self": "/runs/x"}),
        };
        let encoded = Encoded::new(&view, true).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&encoded.body(Some(1234))).unwrap();
        assert_eq!(body["duration_ms"], 1234);
        assert_eq!(body["metadata"]["duration_ms"], serde_json::Value::Null);
        assert_eq!(body["links"]["self"], "/runs/x");
        // The tag does not follow the clock.
        let again = Encoded::new(&view, true).unwrap();
        assert_eq!(again.tag, encoded.tag);
        assert_eq!(encoded.body(None), serde_json::to_vec(&view).unwrap());
    }

    #[test]
    fn if_none_match_is_a_list_of_tags_or_a_star() {
        let encoded = Encoded::new(&json!({"duration_ms": 5}), false).unwrap();
        let tag = encoded.tag.to_str().unwrap().to_owned();
        let header = |v: &str| axum::http::HeaderValue::from_str(v).unwrap();
        assert!(encoded.matches(Some(&header(&tag))));
        assert!(encoded.matches(Some(&header(&format!("W/\"other\", {tag}")))));
        assert!(encoded.matches(Some(&header("*"))));
        assert!(!encoded.matches(Some(&header("W/\"other\""))));
        assert!(!encoded.matches(None));
    }
}
