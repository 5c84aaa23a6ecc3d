//! How many tokens a call reserves, and what it is charged once the upstream has said what it used.
//!
//! - A call whose input states its own maximum (`max_completion_tokens`, else `max_tokens`, a positive
//!   whole number, as OpenAI-style upstreams take it) reserves that maximum plus its input's estimated
//!   size (about four bytes of JSON per token), capped at the tool's `max_tokens_per_call`. It is
//!   charged what the upstream reports, but never more than it reserved.
//! - Any other call reserves the tool's `estimated_tokens` and is charged what the upstream reports,
//!   even beyond the reservation.
//!
//! Tokens reported beyond the reservation are the call's overrun, kept on its usage row either way.
//! The bound that follows: a subscription's used tokens never pass its limit when every call states its
//! maximum, and otherwise pass it by at most the overruns of the calls that were in flight together.

use serde_json::Value;

use crate::tools::model::ToolRow;

/// A call's reservation and how it is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens reserved before the upstream is called (at least one).
    pub reserved: i64,
    /// Whether the input stated a maximum: the charge is then capped at `reserved`.
    pub stated: bool,
}

/// What a finished call is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub tokens: i64,
    /// Reported tokens beyond the reservation (charged only when no maximum was stated).
    pub overrun: i64,
}

/// The maximum `input` states for its answer, if any.
pub fn stated_maximum(input: &Value) -> Option<i64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| input.get(field)?.as_i64())
        .filter(|max| *max > 0)
}

/// The reservation for a call of `tool` with `input`.
pub fn budget(tool: &ToolRow, input: &Value) -> Budget {
    match stated_maximum(input) {
        Some(max) => {
            let input_tokens =
                i64::try_from(input.to_string().len().div_ceil(4)).unwrap_or(i64::MAX);
            Budget {
                reserved: max
                    .saturating_add(input_tokens)
                    .min(tool.max_tokens_per_call)
                    .max(1),
                stated: true,
            }
        }
        None => Budget {
            reserved: tool.estimated_tokens.max(1),
            stated: false,
        },
    }
}

/// The charge for a call that used `reported` tokens (never negative).
pub fn charge(budget: Budget, reported: i64) -> Charge {
    let reported = reported.max(0);
    let overrun = reported.saturating_sub(budget.reserved).max(0);
    Charge {
        tokens: if budget.stated {
            reported.min(budget.reserved)
        } else {
            reported
        },
        overrun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(estimated: i64, cap: i64) -> ToolRow {
        ToolRow {
            id: uuid::Uuid::nil(),
            slug: "t".into(),
            name: "T".into(),
            description: String::new(),
            usage_notes: String::new(),
            category: String::new(),
            endpoint: "http://127.0.0.1/".into(),
            method: "POST".into(),
            headers: json!([]),
            timeout_ms: 1000,
            tokens_path: "usage.total_tokens".into(),
            estimated_tokens: estimated,
            max_tokens_per_call: cap,
            min_tier: crate::billing::model::PlanTier::Free,
            enabled: true,
            deleted_at: None,
            created_at: chrono::Utc::now(),
            streams: false,
        }
    }

    #[test]
    fn a_stated_maximum_is_reserved_with_the_input_and_capped_by_the_tool() {
        let input = json!({ "max_tokens": 100, "prompt": "abcd" });
        let input_tokens = i64::try_from(input.to_string().len().div_ceil(4)).unwrap();
        assert_eq!(
            budget(&tool(10, 1_000), &input),
            Budget {
                reserved: 100 + input_tokens,
                stated: true
            }
        );
        assert_eq!(budget(&tool(10, 50), &input).reserved, 50);
        let both = json!({ "max_tokens": 100, "max_completion_tokens": 7 });
        assert_eq!(stated_maximum(&both), Some(7));
    }

    #[test]
    fn nonsense_maximums_fall_back_to_the_estimate() {
        for input in [
            json!({}),
            json!({ "max_tokens": 0 }),
            json!({ "max_tokens": -5 }),
            json!({ "max_tokens": 2.5 }),
            json!({ "max_tokens": "100" }),
            json!([1, 2]),
        ] {
            assert_eq!(
                budget(&tool(10, 1_000), &input),
                Budget {
                    reserved: 10,
                    stated: false
                },
                "{input}"
            );
        }
    }

    #[test]
    fn a_stated_maximum_caps_the_charge_and_an_estimate_does_not() {
        let stated = Budget {
            reserved: 20,
            stated: true,
        };
        let estimated = Budget {
            reserved: 20,
            stated: false,
        };
        assert_eq!(
            charge(stated, 35),
            Charge {
                tokens: 20,
                overrun: 15
            }
        );
        assert_eq!(
            charge(estimated, 35),
            Charge {
                tokens: 35,
                overrun: 15
            }
        );
        assert_eq!(
            charge(stated, 5),
            Charge {
                tokens: 5,
                overrun: 0
            }
        );
        assert_eq!(
            charge(estimated, -3),
            Charge {
                tokens: 0,
                overrun: 0
            }
        );
    }
}
