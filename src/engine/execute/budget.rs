//! A run's budget during an execution: before a case starts, its worst-case cost is
//! reserved in the run's row (so instances sharing the run draw on one account); the
//! first refusal stops the run from starting more cases.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::engine::definition::RuntimeOptions;
use crate::model::{EventKind, Reservation, RunId};
use crate::store::{Store, StoreError};

pub(super) struct BudgetGuard {
    pub(super) budget_usd: f64,
    store: Arc<dyn Store>,
    run_id: RunId,
    /// Cancelled at the first refused reservation.
    pub(super) exhausted: CancellationToken,
    refusal: OnceLock<(Reservation, f64)>,
}

impl BudgetGuard {
    /// The budget a run executes under: its own `budget_usd`, at most the operator's
    /// cap (which a run without a budget gets). `None`: unlimited.
    pub(super) fn budget_of(runtime: &RuntimeOptions, cap: Option<f64>) -> Option<f64> {
        match (runtime.budget_usd, cap) {
            (Some(own), Some(cap)) => Some(own.min(cap)),
            (own, cap) => own.or(cap),
        }
    }

    pub(super) fn new(budget_usd: f64, store: Arc<dyn Store>, run_id: RunId) -> Self {
        BudgetGuard {
            budget_usd,
            store,
            run_id,
            exhausted: CancellationToken::new(),
            refusal: OnceLock::new(),
        }
    }

    /// Reserves `amount` for a case about to start; `false` (and the guard tripped)
    /// when it would take the run past its budget. Once tripped, nothing more is
    /// reserved: the run starts no more cases.
    pub(super) async fn reserve(&self, amount: f64) -> Result<bool, StoreError> {
        if self.exhausted.is_cancelled() {
            return Ok(false);
        }
        if amount <= 0.0 {
            // Calls with no price cost nothing to reserve.
            return Ok(true);
        }
        let reservation = self
            .store
            .reserve_spend(&self.run_id, amount, self.budget_usd)
            .await?;
        if !reservation.granted {
            let _ = self.refusal.set((reservation, amount));
            self.exhausted.cancel();
        }
        Ok(reservation.granted)
    }

    /// The event that says why the run stops.
    pub(super) fn event(&self) -> EventKind {
        let (reservation, next) = self.refusal.get().copied().unwrap_or((
            Reservation {
                granted: false,
                spent_usd: 0.0,
                reserved_usd: 0.0,
            },
            0.0,
        ));
        EventKind::BudgetExhausted {
            budget_usd: self.budget_usd,
            spent_usd: reservation.spent_usd,
            reserved_usd: reservation.reserved_usd,
            next_case_usd: next,
        }
    }

    /// The run's failure message.
    pub(super) fn reason(&self) -> String {
        match self.refusal.get() {
            Some((reservation, next)) => format!(
                "budget exhausted: ${:.6} spent and ${:.6} reserved for cases in flight of the \
                 ${} budget; the next case may cost up to ${next:.6}, so no more cases were \
                 started (retry the run with a budget_usd for the rest to continue)",
                reservation.spent_usd, reservation.reserved_usd, self.budget_usd
            ),
            None => format!("budget exhausted: ${} budget", self.budget_usd),
        }
    }
}
