//! DataLoaders, created per request so no cache is shared between callers. A field that would query
//! once per parent (the tool of each usage entry) loads through here in one batch per page.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_graphql::dataloader::{DataLoader, Loader};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::app::AppState;
use crate::db::schema::tools;
use crate::error::AppError;
use crate::tools::model::ToolRow;

/// How many batches the loaders ran (per server instance), for `/metrics` and tests.
#[derive(Default)]
pub struct LoaderStats {
    pub tool_batches: AtomicU64,
    pub subscription_batches: AtomicU64,
}

/// The current subscriptions of users, by user id, with their plans. A subscription whose period has
/// ended is rolled forward through the billing service (rare; the sweeper usually got there first).
pub struct SubscriptionLoader {
    app: AppState,
}

impl Loader<Uuid> for SubscriptionLoader {
    type Value = crate::billing::service::SubscriptionView;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        use crate::db::schema::{plans, subscriptions};
        self.app
            .loader_stats
            .subscription_batches
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("graphql_loader_batches_total", "loader" => "subscription").increment(1);
        let failed = |e: AppError| Arc::new(e.public_message());
        let mut conn = self.app.pool.get().await.map_err(|e| failed(e.into()))?;
        let rows: Vec<(
            crate::billing::model::SubscriptionRow,
            crate::billing::model::PlanRow,
        )> = subscriptions::table
            .inner_join(plans::table)
            .filter(subscriptions::user_id.eq_any(keys))
            .filter(subscriptions::status.ne("EXPIRED"))
            .select((
                crate::billing::model::SubscriptionRow::as_select(),
                crate::billing::model::PlanRow::as_select(),
            ))
            .load(&mut conn)
            .await
            .map_err(|e| failed(e.into()))?;
        drop(conn);
        let now = self.app.clock.now();
        let mut views = HashMap::with_capacity(rows.len());
        for (row, plan) in rows {
            let user = row.user_id;
            let view = if now >= row.current_period_end {
                crate::billing::service::current(&self.app, crate::users::model::UserId(user))
                    .await
                    .map_err(failed)?
            } else {
                Some(crate::billing::service::SubscriptionView { row, plan })
            };
            if let Some(view) = view {
                views.insert(user, view);
            }
        }
        Ok(views)
    }
}

/// Tools by id, deleted ones included (history refers to them).
pub struct ToolLoader {
    app: AppState,
}

impl Loader<Uuid> for ToolLoader {
    type Value = ToolRow;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ToolRow>, Self::Error> {
        self.app
            .loader_stats
            .tool_batches
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("graphql_loader_batches_total", "loader" => "tool").increment(1);
        let mut conn = self
            .app
            .pool
            .get()
            .await
            .map_err(|e| Arc::new(AppError::from(e).public_message()))?;
        let rows: Vec<ToolRow> = tools::table
            .filter(tools::id.eq_any(keys))
            .select(ToolRow::as_select())
            .load(&mut conn)
            .await
            .map_err(|e| Arc::new(AppError::from(e).public_message()))?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// The loaders of one request.
pub struct Loaders {
    pub tools: DataLoader<ToolLoader>,
    pub subscriptions: DataLoader<SubscriptionLoader>,
}

impl Loaders {
    pub fn new(app: &AppState) -> Self {
        Self {
            tools: DataLoader::new(ToolLoader { app: app.clone() }, tokio::spawn),
            subscriptions: DataLoader::new(SubscriptionLoader { app: app.clone() }, tokio::spawn),
        }
    }
}
