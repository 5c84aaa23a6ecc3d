//! The GraphQL schema: the merged roots, the limits, and the SDL export.
//!
//! A domain adds its query part as a `#[derive(Default)]` struct with an `#[Object]` impl in its own
//! `graphql.rs`, and one line in [`QueryRoot`] below.

pub mod big_int;
pub mod context;
pub mod cost;
pub mod cursor;
pub mod executor;
pub mod gauge;
pub mod guards;
pub mod ids;
pub mod limits;
pub mod loaders;
pub mod operation;
pub mod parsed;
pub mod persisted_queries;
pub mod rate_headers;

use async_graphql::{MergedObject, MergedSubscription, SDLExportOptions, Schema, SchemaBuilder};

use crate::admin::graphql::{AdminMutation, AdminRootQuery};
use crate::auth::graphql::AuthMutation;
use crate::billing::graphql::{BillingMutation, BillingQuery};
use crate::config::GraphqlLimits;
use crate::gateway::graphql::{GatewayMutation, GatewaySubscription};
use crate::keys::graphql::{KeysMutation, KeysQuery};
use crate::notifications::graphql::{
    NotificationsMutation, NotificationsQuery, NotificationsSubscription,
};
use crate::system::graphql::SystemQuery;
use crate::tools::graphql::{ToolsMutation, ToolsQuery};
use crate::usage::graphql::{UsageQuery, UsageSubscription};
use crate::users::graphql::{UsersMutation, UsersQuery};
use crate::webhooks::graphql::{WebhooksMutation, WebhooksQuery};

/// Every query field, merged from the domains.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    SystemQuery,
    UsersQuery,
    KeysQuery,
    BillingQuery,
    ToolsQuery,
    UsageQuery,
    NotificationsQuery,
    WebhooksQuery,
    AdminRootQuery,
    cost::RateLimitQuery,
);

/// Every mutation, merged from the domains.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    AuthMutation,
    UsersMutation,
    KeysMutation,
    BillingMutation,
    ToolsMutation,
    GatewayMutation,
    NotificationsMutation,
    WebhooksMutation,
    AdminMutation,
);
/// Every subscription, merged from the domains.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    UsageSubscription,
    GatewaySubscription,
    NotificationsSubscription,
);

/// The schema type every handler shares.
pub type HubSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema with its complexity limit, before any runtime data is attached; requests run through
/// [`executor::HubExecutor`], which applies the other limits and the budget.
pub fn schema_builder(
    limits: GraphqlLimits,
    introspection: bool,
) -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    // Depth is bounded by `limits` (ordinary fields by `max_depth`, introspection by its own rules),
    // which the executor checks.
    .limit_complexity(limits.max_complexity);
    if introspection {
        builder
    } else {
        builder.disable_introspection()
    }
}

/// The SDL that `schema.graphql` holds: fields and enum items sorted, so diffs stay readable.
pub fn export_sdl() -> String {
    schema_builder(GraphqlLimits::default(), true)
        .finish()
        .sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_enum_items())
}
