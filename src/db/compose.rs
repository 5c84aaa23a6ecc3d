//! One statement from several owners' parts. A transaction that must write several domains' tables
//! in one round trip (settling an invocation) is a `WITH` list of data-modifying CTEs, each written
//! and bound by the domain that owns its tables. Each [`Part`] numbers its parameters from `$1`;
//! [`with_parts`] shifts them past the parts before it, so parameter numbering lives here alone.
//! Parts bind their values into a [`Composed`] query in the same order.

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};

/// A statement being bound, part after part.
pub type Composed<'a> = BoxedSqlQuery<'a, Pg, SqlQuery>;

/// One owner's CTEs for a `WITH` list (comma-separated, no leading `WITH`), parameters `$1..=$params`.
#[derive(Debug)]
pub struct Part {
    pub sql: &'static str,
    pub params: usize,
}

impl Part {
    /// A part whose SQL uses `$1..=$params` (checked when composed, in debug builds).
    pub const fn new(sql: &'static str, params: usize) -> Self {
        Self { sql, params }
    }
}

/// `WITH <parts…> <select>`: each part's `$n` becomes `$(n + parameters of the parts before it)`.
/// Every data-modifying CTE runs to completion whatever `select` reads.
pub fn with_parts(parts: &[&Part], select: &str) -> String {
    let mut offset = 0;
    let mut ctes = Vec::with_capacity(parts.len());
    for part in parts {
        debug_assert_eq!(
            highest_param(part.sql),
            part.params,
            "a part's declared parameter count must match its SQL"
        );
        ctes.push(shift_params(part.sql.trim().trim_end_matches(','), offset));
        offset += part.params;
    }
    format!("WITH {}\n{select}", ctes.join(",\n"))
}

/// The highest `$n` in `sql` (0 when it has none).
fn highest_param(sql: &str) -> usize {
    params(sql).map(|(_, _, n)| n).max().unwrap_or(0)
}

/// `(start, end, n)` of every `$n` in `sql`.
fn params(sql: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let bytes = sql.as_bytes();
    sql.match_indices('$').filter_map(move |(start, _)| {
        let digits = bytes
            .get(start + 1..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + 1 + digits;
        let n = sql.get(start + 1..end)?.parse().ok()?;
        Some((start, end, n))
    })
}

fn shift_params(sql: &str, offset: usize) -> String {
    let mut shifted = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    for (start, end, n) in params(sql) {
        shifted.push_str(sql.get(copied..start).unwrap_or_default());
        shifted.push_str(&format!("${}", n + offset));
        copied = end;
    }
    shifted.push_str(sql.get(copied..).unwrap_or_default());
    shifted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_after_the_parts_before_them() {
        let a = Part {
            sql: "a AS (SELECT $1, $2)",
            params: 2,
        };
        let b = Part {
            sql: "-- $1: ids\nb AS (SELECT $1::uuid[], $10)",
            params: 10,
        };
        assert_eq!(
            with_parts(&[&a, &b], "SELECT 1"),
            "WITH a AS (SELECT $1, $2),\n-- $3: ids\nb AS (SELECT $3::uuid[], $12)\nSELECT 1"
        );
        assert_eq!(highest_param(b.sql), 10);
        assert_eq!(highest_param("SELECT 1"), 0);
    }
}
