//! One circuit breaker per tool. After consecutive failures from `threshold` different callers it opens:
//! calls are refused at once with `UPSTREAM_UNAVAILABLE` for `cooldown`; then one probe call is let through
//! (half-open); its success closes the circuit, its failure opens it again.
//!
//! Failures count once per caller: a user whose own inputs make the upstream fail or time out (an
//! oversized prompt, say) cannot open the circuit for everyone, however often they retry. Only failures
//! the upstream is to blame for count at all (see `CallError::is_upstream_fault`): not a refusal of the
//! request (4xx) and not the upstream asking callers to slow down (429).
//!
//! The state is per server instance, as in most proxies: each instance learns an upstream's health from
//! its own calls, and nothing breaks if instances disagree for a cooldown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

#[derive(Debug, Clone)]
enum State {
    /// The callers whose calls failed since the last success.
    Closed {
        failing_callers: Vec<Uuid>,
    },
    Open {
        until: Instant,
    },
    HalfOpen,
}

impl State {
    fn closed() -> Self {
        Self::Closed {
            failing_callers: Vec::new(),
        }
    }
}

/// What the breaker allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Call,
    /// The single trial call after a cooldown.
    Probe,
    /// Refused; the circuit may close after this long.
    Refused {
        retry_after: Duration,
    },
}

/// A change of a circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<Uuid, State>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            states: Mutex::new(HashMap::new()),
        }
    }

    pub fn permit(&self, tool: Uuid) -> Permit {
        let Ok(mut states) = self.states.lock() else {
            return Permit::Call;
        };
        let state = states.entry(tool).or_insert_with(State::closed);
        match *state {
            State::Closed { .. } => Permit::Call,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Permit::Probe
                } else {
                    Permit::Refused {
                        retry_after: until - now,
                    }
                }
            }
            State::HalfOpen => Permit::Refused {
                retry_after: self.cooldown,
            },
        }
    }

    /// Records an answer; `Closed` when this closed the circuit.
    pub fn record_success(&self, tool: Uuid) -> Option<Transition> {
        let mut states = self.states.lock().ok()?;
        let previous = states.insert(tool, State::closed());
        if matches!(previous, Some(State::HalfOpen | State::Open { .. })) {
            tracing::info!(tool_id = %tool, "circuit closed: the upstream answers again");
            return Some(Transition::Closed);
        }
        None
    }

    /// Records a failure of `caller`'s call; `Opened` when this opened the circuit.
    pub fn record_failure(&self, tool: Uuid, caller: Uuid) -> Option<Transition> {
        let mut states = self.states.lock().ok()?;
        let state = states.entry(tool).or_insert_with(State::closed);
        let open = match state {
            State::Closed { failing_callers } => {
                if !failing_callers.contains(&caller) {
                    failing_callers.push(caller);
                }
                failing_callers.len() >= self.threshold as usize
            }
            State::HalfOpen => true,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
            tracing::warn!(tool_id = %tool, cooldown_ms = self.cooldown.as_millis() as u64, "circuit opened: the upstream keeps failing");
            return Some(Transition::Opened);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown_and_closes_on_success() {
        let breakers = Breakers::new(3, Duration::from_millis(30));
        let tool = Uuid::new_v4();
        for _ in 0..2 {
            breakers.record_failure(tool, Uuid::new_v4());
            assert_eq!(breakers.permit(tool), Permit::Call);
        }
        breakers.record_failure(tool, Uuid::new_v4());
        assert!(matches!(breakers.permit(tool), Permit::Refused { .. }));

        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breakers.permit(tool), Permit::Probe);
        assert!(
            matches!(breakers.permit(tool), Permit::Refused { .. }),
            "one probe at a time"
        );
        breakers.record_failure(tool, Uuid::new_v4());
        assert!(
            matches!(breakers.permit(tool), Permit::Refused { .. }),
            "a failed probe reopens"
        );

        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breakers.permit(tool), Permit::Probe);
        breakers.record_success(tool);
        assert_eq!(breakers.permit(tool), Permit::Call);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breakers = Breakers::new(2, Duration::from_secs(60));
        let tool = Uuid::new_v4();
        breakers.record_failure(tool, Uuid::new_v4());
        breakers.record_success(tool);
        breakers.record_failure(tool, Uuid::new_v4());
        assert_eq!(breakers.permit(tool), Permit::Call);
    }

    #[test]
    fn one_caller_alone_never_opens_the_circuit() {
        let breakers = Breakers::new(2, Duration::from_secs(60));
        let (tool, caller) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..100 {
            breakers.record_failure(tool, caller);
        }
        assert_eq!(breakers.permit(tool), Permit::Call);
        breakers.record_failure(tool, Uuid::new_v4());
        assert!(matches!(breakers.permit(tool), Permit::Refused { .. }));
    }
}
