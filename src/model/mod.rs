//! Domain types shared by every layer: ids, timestamps, run and case records, events.
//!
//! The store persists these; the engine produces them; the API serialises them. Nothing
//! here knows about HTTP, SQL or how a run is executed.

mod bleu;
mod case;
mod event;
mod ids;
mod pass_at_k;
mod run;
mod stats;
mod wire;

pub use bleu::*;
pub use case::*;
pub use event::*;
pub use ids::*;
pub use pass_at_k::pass_at_k;
pub use run::*;
pub use stats::*;
pub use wire::{u64_from_json, u64_string};
