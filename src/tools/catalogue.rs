//! Catalogue pages from memory: a snapshot of every live tool, in the database's `(name, id)` order, kept
//! by the caches (`Caches::catalogue`, dropped on any change of a tool, on every instance, through the
//! `hub_cache` notifications). A page is cut from it without a query; the total is its length. When the
//! caches are not live, or a cursor names a tool the snapshot no longer has, the page is read from the
//! database, counting only when the total is asked for.

use std::sync::Arc;

use uuid::Uuid;

use super::model::ToolRow;
use super::repo::{self, Listing};
use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// A page of the catalogue.
pub struct Page {
    pub rows: Vec<ToolRow>,
    /// The filtered total, when it was asked for or came for free.
    pub total: Option<i64>,
    /// Whether the page was cut from the snapshot passed in (else it was read from the database).
    pub from_snapshot: bool,
}

/// One page (up to `limit` tools after the `(name, id)` cursor), cut from `snapshot` when it holds the
/// cursor's tool, else read from the database; the total when `want_total`.
pub async fn page(
    app: &AppState,
    snapshot: Option<&[ToolRow]>,
    listing: &Listing<'_>,
    after: Option<(String, Uuid)>,
    limit: i64,
    want_total: bool,
) -> AppResult<Page> {
    if let Some((rows, total)) =
        snapshot.and_then(|snapshot| page_of(snapshot, listing, after.as_ref(), limit))
    {
        return Ok(Page {
            rows,
            total: Some(total),
            from_snapshot: true,
        });
    }
    let mut conn = app.pool.get().await?;
    let rows = repo::list(&mut conn, listing, after, limit).await?;
    let total = match want_total {
        true => Some(repo::count(&mut conn, listing).await?),
        false => None,
    };
    Ok(Page {
        rows,
        total,
        from_snapshot: false,
    })
}

/// The cached catalogue, loaded when missing; `None` while the caches are not live.
pub async fn snapshot(app: &AppState) -> AppResult<Option<Arc<Vec<ToolRow>>>> {
    if !app.caches.is_live() {
        return Ok(None);
    }
    app.caches
        .catalogue
        .get_or_load((), async {
            let mut conn = app.pool.get().await?;
            Ok::<_, AppError>(Some(Arc::new(repo::all_live(&mut conn).await?)))
        })
        .await
}

/// Whether `tool` passes the listing's filter, as the database's does (`ILIKE` on name or description).
fn listed(tool: &ToolRow, listing: &Listing<'_>, search: Option<&str>) -> bool {
    (listing.include_disabled || tool.enabled)
        && search.is_none_or(|text| {
            tool.name.to_lowercase().contains(text)
                || tool.description.to_lowercase().contains(text)
        })
}

/// A page cut from `snapshot`, and the filtered total; `None` when the cursor's tool is not in it.
pub fn page_of(
    snapshot: &[ToolRow],
    listing: &Listing<'_>,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Option<(Vec<ToolRow>, i64)> {
    let search = listing.search.map(str::to_lowercase);
    let start = match after {
        Some((name, id)) => {
            snapshot
                .iter()
                .position(|tool| tool.id == *id && tool.name == *name)?
                + 1
        }
        None => 0,
    };
    let matching = |tool: &&ToolRow| listed(tool, listing, search.as_deref());
    let total = snapshot.iter().filter(matching).count();
    let rows = snapshot
        .iter()
        .skip(start)
        .filter(matching)
        .take(usize::try_from(limit).unwrap_or(0))
        .cloned()
        .collect();
    Some((rows, i64::try_from(total).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, enabled: bool) -> ToolRow {
        ToolRow {
            id: Uuid::now_v7(),
            slug: name.to_lowercase(),
            name: name.into(),
            description: format!("The {name} tool"),
            usage_notes: String::new(),
            category: "general".into(),
            endpoint: "https://example.com".into(),
            method: "POST".into(),
            headers: serde_json::json!([]),
            timeout_ms: 1000,
            tokens_path: String::new(),
            estimated_tokens: 1,
            max_tokens_per_call: 1,
            min_tier: crate::billing::model::PlanTier::Free,
            enabled,
            deleted_at: None,
            created_at: chrono::Utc::now(),
            streams: false,
        }
    }

    fn names(rows: &[ToolRow]) -> Vec<&str> {
        rows.iter().map(|row| row.name.as_str()).collect()
    }

    #[test]
    fn pages_follow_the_snapshots_order_filter_and_cursor() {
        let snapshot = vec![
            tool("Alpha", true),
            tool("Bravo", false),
            tool("Charlie", true),
            tool("Delta", true),
        ];
        let users = Listing {
            include_disabled: false,
            search: None,
        };
        let (first, total) = page_of(&snapshot, &users, None, 2).unwrap();
        assert_eq!((names(&first), total), (vec!["Alpha", "Charlie"], 3));
        let last = first.last().map(|row| (row.name.clone(), row.id)).unwrap();
        let (second, _) = page_of(&snapshot, &users, Some(&last), 2).unwrap();
        assert_eq!(names(&second), ["Delta"]);
        let admins = Listing {
            include_disabled: true,
            search: Some("RAV"),
        };
        let (found, total) = page_of(&snapshot, &admins, None, 10).unwrap();
        assert_eq!((names(&found), total), (vec!["Bravo"], 1));
        // A cursor naming a tool the snapshot no longer has: the page comes from the database.
        let gone = ("Echo".to_owned(), Uuid::now_v7());
        assert!(page_of(&snapshot, &users, Some(&gone), 2).is_none());
    }
}
