//! Queries on `tools`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{NewTool, ToolChanges, ToolRow};
use crate::db::schema::tools;

/// A listing filter: enabled tools only (what users see) or all live tools (admins), and a search text.
pub struct Listing<'a> {
    pub include_disabled: bool,
    pub search: Option<&'a str>,
}

type Filtered<'a> = tools::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered<'a>(listing: &Listing<'a>) -> Filtered<'a> {
    let mut query = tools::table
        .filter(tools::deleted_at.is_null())
        .into_boxed();
    if !listing.include_disabled {
        query = query.filter(tools::enabled.eq(true));
    }
    if let Some(search) = listing.search {
        let pattern = format!(
            "%{}%",
            search
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        query = query.filter(
            tools::name
                .ilike(pattern.clone())
                .or(tools::description.ilike(pattern)),
        );
    }
    query
}

/// Every live tool (disabled ones included) in the listing's order.
pub async fn all_live(conn: &mut AsyncPgConnection) -> QueryResult<Vec<ToolRow>> {
    tools::table
        .filter(tools::deleted_at.is_null())
        .order((tools::name, tools::id))
        .select(ToolRow::as_select())
        .load(conn)
        .await
}

/// One page ordered by name, then id, after the `(name, id)` keyset cursor.
pub async fn list(
    conn: &mut AsyncPgConnection,
    listing: &Listing<'_>,
    after: Option<(String, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<ToolRow>> {
    let mut query = filtered(listing);
    if let Some((name, id)) = after {
        query = query.filter(
            tools::name
                .gt(name.clone())
                .or(tools::name.eq(name).and(tools::id.gt(id))),
        );
    }
    query
        .order((tools::name, tools::id))
        .limit(limit)
        .select(ToolRow::as_select())
        .load(conn)
        .await
}

pub async fn count(conn: &mut AsyncPgConnection, listing: &Listing<'_>) -> QueryResult<i64> {
    filtered(listing).count().get_result(conn).await
}

/// Tools by id, deleted ones included (history refers to them).
pub async fn find_many_with_deleted(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<ToolRow>> {
    tools::table
        .filter(tools::id.eq_any(ids))
        .select(ToolRow::as_select())
        .load(conn)
        .await
}

/// A live (not deleted) tool, locked until the transaction ends.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ToolRow>> {
    tools::table
        .find(id)
        .filter(tools::deleted_at.is_null())
        .select(ToolRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A live (not deleted) tool.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ToolRow>> {
    tools::table
        .find(id)
        .filter(tools::deleted_at.is_null())
        .select(ToolRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn insert(conn: &mut AsyncPgConnection, tool: &NewTool) -> QueryResult<ToolRow> {
    diesel::insert_into(tools::table)
        .values(tool)
        .returning(ToolRow::as_returning())
        .get_result(conn)
        .await
}

/// Inserts unless a tool with the slug exists (for seeding).
pub async fn insert_if_absent(conn: &mut AsyncPgConnection, tool: &NewTool) -> QueryResult<usize> {
    diesel::insert_into(tools::table)
        .values(tool)
        .on_conflict(tools::slug)
        .do_nothing()
        .execute(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &ToolChanges,
) -> QueryResult<Option<ToolRow>> {
    diesel::update(tools::table.find(id).filter(tools::deleted_at.is_null()))
        .set(changes)
        .returning(ToolRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Soft delete: the row stays for the usage history; its slug is freed for reuse.
pub async fn soft_delete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE tools SET deleted_at = $2, enabled = false, slug = slug || '~deleted~' || id \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .execute(conn)
    .await
}
