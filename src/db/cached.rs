//! Server-side prepared statements for fixed SQL that Diesel would otherwise send unprepared.
//!
//! Diesel caches a prepared statement per connection for queries built with its DSL, but never for
//! `sql_query` (it cannot know the text is fixed) nor for `UPDATE`s, so PostgreSQL parses and plans
//! those on every call. On the hot paths (quota reservation, metering, usage queries) that parsing and
//! planning was most of PostgreSQL's CPU time. Wrapping such a query in [`Cached`] declares its SQL
//! fixed: the connection prepares it once, keyed by its text and bind types, and reuses it.
//!
//! Only wrap queries whose SQL comes from a constant (no `format!`, no variable-length `IN` lists or
//! multi-row `VALUES`), or the per-connection cache would grow without bound.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Cached<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    // No static id: the statement cache keys these by their SQL text and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

/// `.cached()` on a query with fixed SQL (see the module documentation).
pub trait CachedExt: Sized {
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q: QueryFragment<Pg>> CachedExt for Q {}
