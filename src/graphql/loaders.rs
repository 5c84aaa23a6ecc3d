//! DataLoaders, created per request so no cache is shared between callers. A field that would query
//! once per parent (the tool of each usage entry) loads through here in one batch per page; each
//! loader asks the owning domain's service.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::app::AppState;
use crate::billing::service::{self as billing, SubscriptionView};
use crate::error::AppError;
use crate::tools::model::ToolRow;
use crate::tools::service as tools;

fn failed(e: AppError) -> Arc<String> {
    Arc::new(e.public_message())
}

/// The current subscriptions of users, by user id, with their plans.
pub struct SubscriptionLoader {
    app: AppState,
}

impl Loader<Uuid> for SubscriptionLoader {
    type Value = SubscriptionView;
    type Error = Arc<String>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        self.app
            .loader_stats
            .subscription_batches
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("graphql_loader_batches_total", "loader" => "subscription").increment(1);
        billing::current_for_users(&self.app, keys)
            .await
            .map_err(failed)
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
        let rows = tools::get_many_with_deleted(&self.app, keys)
            .await
            .map_err(failed)?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

/// The loaders of one request, each made on its first use: most requests load nothing through them,
/// and a loader costs allocations and a copy of the application state.
#[derive(Default)]
pub struct Loaders {
    tools: OnceLock<DataLoader<ToolLoader>>,
    subscriptions: OnceLock<DataLoader<SubscriptionLoader>>,
}

impl Loaders {
    pub fn tools(&self, app: &AppState) -> &DataLoader<ToolLoader> {
        self.tools
            .get_or_init(|| DataLoader::new(ToolLoader { app: app.clone() }, tokio::spawn))
    }

    pub fn subscriptions(&self, app: &AppState) -> &DataLoader<SubscriptionLoader> {
        self.subscriptions
            .get_or_init(|| DataLoader::new(SubscriptionLoader { app: app.clone() }, tokio::spawn))
    }
}
