//! Domain types shared by every layer: ids, timestamps, run and case records, events;
//! and the vocabulary every layer speaks: [`canonical_json`] and the input-checking
//! toolkit ([`FieldError`], [`Problems`]).
//!
//! The store persists these; the engine produces them; the API serialises them. Nothing
//! here knows about HTTP, SQL or how a run is executed, and nothing here imports
//! another module of the crate: this is the bottom layer.

mod bleu;
mod canonical;
mod case;
pub(crate) mod check;
mod dataset;
mod event;
#[cfg(test)]
pub(crate) use event::sample_event;
mod ids;
mod limits;
mod openai_evals;
mod pass_at_k;
mod review;
mod run;
mod seal;
mod spend;
mod stats;
mod transcript;
mod wire;

pub(crate) use bleu::*;
pub(crate) use canonical::canonical_json;
pub use case::*;
pub use check::{FieldError, Problems};
pub use dataset::*;
pub use event::{EventBody, EventKind, NewEvent, RunEvent};
pub use ids::*;
pub use limits::{BudgetRequest, ShareGrant, ShareRequest};
pub use openai_evals::{
    EvalKind, EvalObject, EvalObjectQuery, ListOrder, output_item_id, parse_output_item_id,
};
pub(crate) use pass_at_k::pass_at_k;
pub use review::{NewReview, Review, ReviewScale, latest_per_reviewer};
pub use run::*;
pub use seal::{InvalidKey, OpenError, Sealer};
pub use spend::{Reservation, Spend, SpendPart};
pub(crate) use stats::{Accumulator, AggregateState, ExactSum};
pub use stats::{Aggregates, MetricAggregate, MetricSummary, PriceSource, Usage};
pub use transcript::{AgentOutcome, ToolCallRecord, ToolResultRecord, Transcript, Turn};
pub(crate) use wire::{u64_from_json, u64_string};
