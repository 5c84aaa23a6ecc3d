use async_graphql::connection::Connection;
use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};

use super::model::{EventType, NotificationRow};
use super::service::{self, ChannelChange};
use crate::graphql::context::ContextExt;
use crate::graphql::cursor;
use crate::graphql::guards::Scoped;
use crate::keys::model::Scope;
use crate::users::model::{PreferencesRow, Theme};
use crate::users::preferences;

/// Something the hub told the user.
#[derive(SimpleObject)]
pub struct Notification {
    pub id: ID,
    /// What happened.
    pub event: EventType,
    pub title: String,
    pub body: String,
    /// The event's details, as webhooks carry them in `data`.
    pub data: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// Null while unread.
    pub read_at: Option<DateTime<Utc>>,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            event: row.kind,
            title: row.title,
            body: row.body,
            data: Json(row.payload),
            created_at: row.created_at,
            read_at: row.read_at,
        }
    }
}

/// The channels that carry one type of event to the user.
#[derive(SimpleObject)]
pub struct NoticeChannels {
    pub event: EventType,
    /// A notification in the app (`notifications`, `notificationEvents`).
    pub in_app: bool,
    /// A mail to the account's address.
    pub email: bool,
    /// A delivery to the user's webhook endpoints that take this event.
    pub webhook: bool,
    /// True for security notices: the app and mail cannot be switched off.
    pub locked: bool,
}

/// How the dashboard looks and which notices reach the user where.
#[derive(SimpleObject)]
pub struct Preferences {
    pub theme: Theme,
    /// A BCP 47 language tag.
    pub language: String,
    /// An IANA time zone name.
    pub time_zone: String,
    /// Every type of event with its channels.
    pub notices: Vec<NoticeChannels>,
}

/// Changes to the preferences; what is omitted stays.
#[derive(InputObject)]
pub struct PreferencesInput {
    pub theme: Option<Theme>,
    /// A BCP 47 language tag such as `en`, `en-GB`, `pt-BR`.
    pub language: Option<String>,
    /// An IANA time zone name such as `Europe/Paris`.
    pub time_zone: Option<String>,
    /// Channels per type of event; security notices cannot leave the app or mail.
    pub notices: Option<Vec<NoticeChannelsInput>>,
}

/// The channels of one type of event; what is omitted stays.
#[derive(InputObject)]
pub struct NoticeChannelsInput {
    pub event: EventType,
    pub in_app: Option<bool>,
    pub email: Option<bool>,
    pub webhook: Option<bool>,
}

async fn preferences_of(
    ctx: &Context<'_>,
    row: PreferencesRow,
) -> async_graphql::Result<Preferences> {
    let user = ctx.user()?;
    let notices = service::channels(ctx.app()?, user.id)
        .await?
        .into_iter()
        .map(|(event, channels)| NoticeChannels {
            event,
            in_app: channels.in_app,
            email: channels.email,
            webhook: channels.webhook,
            locked: event.is_security(),
        })
        .collect();
    Ok(Preferences {
        theme: row.theme,
        language: row.language,
        time_zone: row.time_zone,
        notices,
    })
}

#[derive(Default)]
pub struct NotificationsQuery;

#[Object]
impl NotificationsQuery {
    /// The caller's notifications, newest first (kept 90 days); `unreadOnly` for the unread ones.
    #[graphql(
        guard = "Scoped(Scope::Read)",
        complexity = "crate::graphql::cost::page(first, child_complexity)"
    )]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] unread_only: bool,
    ) -> async_graphql::Result<Connection<String, Notification>> {
        let user = ctx.user()?;
        let first = cursor::page_size(first)?;
        let after = after.as_deref().map(cursor::decode_time_id).transpose()?;
        let (rows, has_next) =
            service::page(ctx.app()?, user.id, unread_only, after, first).await?;
        Ok(cursor::newest_first(
            rows,
            after.is_some(),
            has_next,
            |row| (row.created_at, row.id),
        ))
    }

    /// How many of the caller's notifications are unread.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn unread_notification_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let user = ctx.user()?;
        Ok(service::unread_count(ctx.app()?, user.id).await?)
    }

    /// The caller's theme, language, time zone and notice channels.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn preferences(&self, ctx: &Context<'_>) -> async_graphql::Result<Preferences> {
        let user = ctx.user()?;
        let row = preferences::get(ctx.app()?, user.id).await?;
        preferences_of(ctx, row).await
    }
}

#[derive(Default)]
pub struct NotificationsMutation;

#[Object]
impl NotificationsMutation {
    /// Marks the caller's notifications `ids` read; how many were unread. Ids of other users'
    /// notifications are ignored.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<i64> {
        let user = ctx.user()?;
        if ids.len() > 100 {
            return Err(
                crate::error::AppError::bad_input("ids", "Mark at most 100 at a time.").into(),
            );
        }
        let ids = ids
            .iter()
            .map(|id| crate::graphql::ids::parse(id, "ids"))
            .collect::<Result<Vec<_>, _>>()?;
        let marked = service::mark_read(ctx.app()?, user.id, Some(&ids)).await?;
        Ok(i64::try_from(marked).unwrap_or(i64::MAX))
    }

    /// Marks every notification of the caller read; how many were unread.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn mark_all_notifications_read(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let user = ctx.user()?;
        let marked = service::mark_read(ctx.app()?, user.id, None).await?;
        Ok(i64::try_from(marked).unwrap_or(i64::MAX))
    }

    /// Changes the caller's preferences (all or nothing). Bad input names its field: `language`,
    /// `timeZone`, `notices[2].email`.
    #[graphql(guard = "Scoped(Scope::Manage)")]
    async fn update_preferences(
        &self,
        ctx: &Context<'_>,
        input: PreferencesInput,
    ) -> async_graphql::Result<Preferences> {
        let user = ctx.user()?;
        let app = ctx.app()?;
        if let Some(language) = &input.language {
            preferences::language_tag(language)?;
        }
        if let Some(zone) = &input.time_zone {
            preferences::iana_time_zone(zone)?;
        }
        let changes: Vec<ChannelChange> = input
            .notices
            .unwrap_or_default()
            .into_iter()
            .map(|notice| ChannelChange {
                event: notice.event,
                in_app: notice.in_app,
                email: notice.email,
                webhook: notice.webhook,
            })
            .collect();
        service::set_channels(app, user.id, &changes).await?;
        let row = preferences::update(
            app,
            user.id,
            input.theme,
            input.language.as_deref(),
            input.time_zone.as_deref(),
        )
        .await?;
        preferences_of(ctx, row).await
    }
}

#[derive(Default)]
pub struct NotificationsSubscription;

#[Subscription]
impl NotificationsSubscription {
    /// The caller's notifications as they are made, from every server instance.
    #[graphql(guard = "Scoped(Scope::Read)")]
    async fn notification_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = Notification>> {
        let user = ctx.user()?.id.0;
        let notifications = ctx.app()?.notices.stream();
        Ok(notifications.filter_map(move |row| async move {
            (row.user_id == user).then(|| Notification::from(row.as_ref().clone()))
        }))
    }
}
