//! Billing periods: calendar months counted from an anchor, so they never drift (an anchor on the 31st
//! gives periods ending on the 28th/29th, 30th or 31st as the months allow).

use chrono::{DateTime, Datelike, Months, Utc};

/// `anchor` plus `months` calendar months, clamped to the end of shorter months.
pub fn add_months(anchor: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    anchor
        .checked_add_months(Months::new(months))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The index of the period that contains `now` (0 for the first), for periods starting at `anchor`.
pub fn period_index(anchor: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    if now <= anchor {
        return 0;
    }
    let months = (now.year() - anchor.year()) * 12 + now.month() as i32 - anchor.month() as i32;
    let mut index = u32::try_from(months.max(0)).unwrap_or(0);
    while index > 0 && add_months(anchor, index) > now {
        index -= 1;
    }
    while add_months(anchor, index + 1) <= now {
        index += 1;
    }
    index
}

/// The `[start, end)` of the period with this index.
pub fn period_bounds(anchor: DateTime<Utc>, index: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    (add_months(anchor, index), add_months(anchor, index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn periods_are_calendar_months_that_do_not_drift() {
        let anchor = at("2026-01-31T10:00:00Z");
        assert_eq!(
            period_bounds(anchor, 0),
            (anchor, at("2026-02-28T10:00:00Z"))
        );
        assert_eq!(period_bounds(anchor, 1).1, at("2026-03-31T10:00:00Z"));
        assert_eq!(period_bounds(anchor, 12).0, at("2027-01-31T10:00:00Z"));
    }

    #[test]
    fn the_period_containing_a_moment_is_found_across_boundaries() {
        let anchor = at("2026-01-15T00:00:00Z");
        assert_eq!(period_index(anchor, at("2026-01-15T00:00:00Z")), 0);
        assert_eq!(period_index(anchor, at("2026-02-14T23:59:59Z")), 0);
        assert_eq!(period_index(anchor, at("2026-02-15T00:00:00Z")), 1);
        assert_eq!(period_index(anchor, at("2027-03-20T00:00:00Z")), 14);
        assert_eq!(period_index(anchor, at("2025-12-01T00:00:00Z")), 0);
    }
}
