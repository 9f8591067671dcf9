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
pub mod check;
mod dataset;
mod event;
mod ids;
mod pass_at_k;
mod run;
mod seal;
mod stats;
mod wire;

pub use bleu::*;
pub use canonical::canonical_json;
pub use case::*;
pub use check::{FieldError, MAX_DETAILS, Problems};
pub use dataset::*;
pub use event::*;
pub use ids::*;
pub use pass_at_k::pass_at_k;
pub use run::*;
pub use seal::{OpenError, Sealer};
pub use stats::*;
pub use wire::{u64_from_json, u64_string};
