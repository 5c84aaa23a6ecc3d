//! Catalogue pages as the API answered them, kept with the catalogue snapshot they were cut from
//! (`catalogue`), so the next request for the same page skips resolving it field by field (for a
//! dashboard's 20 tools, most of the request's work).
//!
//! A page is kept under everything its answer depends on: the snapshot (by identity: a changed
//! catalogue is a new snapshot, and the pages of the old one are dropped with it), whether the caller
//! sees disabled tools, the page's arguments, and the selection as executed (fragments spread, `@skip`
//! and `@include` already applied, aliases and order included). Only selections of fields that are a
//! pure function of the tool rows are kept ([`selection_key`]): a selection with an administrators'
//! field, or any field this module does not know, is resolved every time.
//!
//! At most [`PAGES`] pages per snapshot; when full, the kept pages are dropped and kept again as they
//! are asked for, so a flood of distinct searches costs only its own work.
//!
//! A page is kept serialised as well, and an answer over HTTP gets those bytes written in
//! (`verbatim`) rather than a copy of the page's value serialised again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, OutputType, Positioned, SelectionField, ServerResult, Value,
};
use uuid::Uuid;

use super::model::ToolRow;
use crate::verbatim::Verbatim;

/// Most pages kept per snapshot.
pub const PAGES: usize = 64;

/// What a kept page's answer depends on, besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub include_disabled: bool,
    pub search: Option<String>,
    pub after: Option<(String, Uuid)>,
    pub first: i32,
    /// The selection as executed (see [`selection_key`]).
    pub selection: String,
}

/// The pages kept for the newest snapshot seen (see the module documentation).
#[derive(Default)]
pub struct RenderedPages {
    slot: Mutex<Slot>,
    served: AtomicU64,
}

#[derive(Default)]
struct Slot {
    /// Held, not only compared, so that no later snapshot can share its address.
    snapshot: Option<Arc<Vec<ToolRow>>>,
    pages: HashMap<PageKey, Arc<KeptPage>>,
}

/// A page as answered: its value, and the same serialised as an answer holds it.
pub struct KeptPage {
    value: Value,
    json: Arc<str>,
}

impl RenderedPages {
    /// The page kept under `key` for `snapshot`, if any.
    pub fn get(&self, snapshot: &Arc<Vec<ToolRow>>, key: &PageKey) -> Option<Arc<KeptPage>> {
        let slot = self.lock();
        let kept = slot.snapshot.as_ref()?;
        if !Arc::ptr_eq(kept, snapshot) {
            return None;
        }
        let page = slot.pages.get(key).cloned();
        drop(slot);
        if page.is_some() {
            self.served.fetch_add(1, Ordering::Relaxed);
        }
        page
    }

    /// Keeps `page`, answered from `snapshot`; a newer snapshot's pages replace all others.
    pub fn keep(&self, snapshot: &Arc<Vec<ToolRow>>, key: PageKey, page: Value) {
        let json = match serde_json::to_string(&page) {
            Ok(json) => Arc::from(json),
            Err(e) => {
                tracing::warn!(error = %e, "a catalogue page cannot be serialised, so it is not kept");
                return;
            }
        };
        let page = Arc::new(KeptPage { value: page, json });
        let mut slot = self.lock();
        let same = slot
            .snapshot
            .as_ref()
            .is_some_and(|kept| Arc::ptr_eq(kept, snapshot));
        if !same {
            slot.snapshot = Some(Arc::clone(snapshot));
            slot.pages.clear();
        }
        if slot.pages.len() >= PAGES {
            slot.pages.clear();
        }
        slot.pages.insert(key, page);
    }

    /// How many pages are kept for `snapshot`.
    pub fn kept(&self, snapshot: &Arc<Vec<ToolRow>>) -> usize {
        let slot = self.lock();
        match &slot.snapshot {
            Some(kept) if Arc::ptr_eq(kept, snapshot) => slot.pages.len(),
            _ => 0,
        }
    }

    /// How many answers were served from kept pages so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `tools` answer of type `T`: a page kept from an earlier answer, or one to resolve (and keep, when
/// it may be kept). The schema sees `T`.
pub enum Rendered<T> {
    Kept(Arc<KeptPage>),
    Resolve { value: T, keep: Option<Keep> },
}

/// Where a page's answer is looked up and kept.
pub struct Keep {
    pages: Arc<RenderedPages>,
    snapshot: Arc<Vec<ToolRow>>,
    key: PageKey,
}

impl Keep {
    pub fn new(pages: &Arc<RenderedPages>, snapshot: &Arc<Vec<ToolRow>>, key: PageKey) -> Self {
        Self {
            pages: Arc::clone(pages),
            snapshot: Arc::clone(snapshot),
            key,
        }
    }

    /// The answer kept for this page, if any.
    pub fn kept(&self) -> Option<Arc<KeptPage>> {
        self.pages.get(&self.snapshot, &self.key)
    }
}

impl<T: OutputType> OutputType for Rendered<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match self {
            Self::Kept(page) => Ok(match ctx.data_opt::<Verbatim>() {
                Some(verbatim) => verbatim.placeholder(Arc::clone(&page.json)),
                None => Value::clone(&page.value),
            }),
            Self::Resolve { value, keep } => {
                let page = value.resolve(ctx, field).await?;
                if let Some(keep) = keep {
                    keep.pages
                        .keep(&keep.snapshot, keep.key.clone(), page.clone());
                }
                Ok(page)
            }
        }
    }
}

/// The types of a tool page's selection, from the connection down.
#[derive(Clone, Copy)]
enum Level {
    Connection,
    Edge,
    PageInfo,
    Tool,
}

/// What selecting `field` on `level` leads to: `Some(None)` a value, `Some(Some(level))` an object of
/// that level, `None` a field whose answer is not a pure function of the rows (or unknown here).
fn step(level: Level, field: &str) -> Option<Option<Level>> {
    use Level::*;
    let leaf = Some(None);
    match (level, field) {
        (_, "__typename") => leaf,
        (Connection, "nodes") | (Edge, "node") => Some(Some(Tool)),
        (Connection, "edges") => Some(Some(Edge)),
        (Connection, "pageInfo") => Some(Some(PageInfo)),
        (Connection, "totalCount") | (Edge, "cursor") => leaf,
        (PageInfo, "hasPreviousPage" | "hasNextPage" | "startCursor" | "endCursor") => leaf,
        (
            Tool,
            "id" | "name" | "slug" | "description" | "usage" | "category" | "minTier" | "enabled"
            | "estimatedTokens" | "maxTokensPerCall" | "streams" | "createdAt",
        ) => leaf,
        _ => None,
    }
}

/// The selection under a `tools` field as executed, written out (`alias:name{…},`), or `None` when it
/// selects a field whose answer may not be kept (see [`step`]) or any argument or directive.
pub fn selection_key(tools: &SelectionField<'_>) -> Option<String> {
    let mut out = String::with_capacity(128);
    write_selection(tools, Level::Connection, &mut out)?;
    Some(out)
}

fn write_selection(parent: &SelectionField<'_>, level: Level, out: &mut String) -> Option<()> {
    for field in parent.selection_set() {
        let next = step(level, field.name())?;
        if !field.arguments().ok()?.is_empty() || !field.directives().ok()?.is_empty() {
            return None;
        }
        if let Some(alias) = field.alias() {
            out.push_str(alias);
            out.push(':');
        }
        out.push_str(field.name());
        if let Some(level) = next {
            out.push('{');
            write_selection(&field, level, out)?;
            out.push('}');
        }
        out.push(',');
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(selection: &str) -> PageKey {
        PageKey {
            include_disabled: false,
            search: None,
            after: None,
            first: 20,
            selection: selection.to_owned(),
        }
    }

    #[test]
    fn pages_are_served_only_for_their_snapshot_and_key_and_stay_bounded() {
        let pages = RenderedPages::default();
        let older = Arc::new(Vec::new());
        let newer = Arc::new(Vec::new());
        pages.keep(&older, key("nodes{name,},"), Value::from("older"));
        let kept = pages.get(&older, &key("nodes{name,},")).expect("kept");
        assert_eq!(
            (&kept.value, &*kept.json),
            (&Value::from("older"), r#""older""#)
        );
        assert!(pages.get(&older, &key("nodes{slug,},")).is_none());
        // Equal contents, another snapshot: nothing of the older one is served, and keeping drops it.
        assert!(pages.get(&newer, &key("nodes{name,},")).is_none());
        pages.keep(&newer, key("nodes{slug,},"), Value::from("newer"));
        assert!(pages.get(&older, &key("nodes{name,},")).is_none());
        assert_eq!((pages.kept(&newer), pages.kept(&older)), (1, 0));
        assert_eq!(pages.served(), 1);

        for i in 0..PAGES * 3 {
            pages.keep(&newer, key(&format!("search {i}")), Value::from(i));
            assert!(pages.kept(&newer) <= PAGES);
        }
    }
}
