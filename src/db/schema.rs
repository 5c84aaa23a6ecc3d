// @generated automatically by Diesel CLI.

diesel::table! {
    audit_log (id) {
        id -> Uuid,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        target_type -> Text,
        target_id -> Nullable<Text>,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        request_id -> Nullable<Text>,
        created_at -> Timestamptz,
        client_ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    api_key_spending (api_key_id) {
        api_key_id -> Uuid,
        period_start -> Timestamptz,
        tokens_used -> Int8,
        tokens_reserved -> Int8,
        request_rate_tat -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        scopes -> Array<Text>,
        requests_per_minute -> Nullable<Int4>,
        token_budget -> Nullable<Int8>,
    }
}

diesel::table! {
    email_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        email -> Text,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invocation_idempotency (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        tool_id -> Uuid,
        usage_event_id -> Nullable<Uuid>,
        output -> Nullable<Jsonb>,
        claim_expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ended_sessions (family_id) {
        family_id -> Uuid,
        user_id -> Uuid,
        ended_at -> Timestamptz,
        forget_after -> Timestamptz,
    }
}

diesel::table! {
    login_throttle (key) {
        key -> Text,
        failures -> Int4,
        window_started_at -> Timestamptz,
    }
}

diesel::table! {
    platform_daily (day, tool_id, tier, shard) {
        day -> Date,
        tool_id -> Uuid,
        tier -> Text,
        invocations -> Int8,
        errors -> Int8,
        tokens -> Int8,
        latency_hist -> Array<Int8>,
        shard -> Int2,
    }
}

diesel::table! {
    platform_fold (only_row) {
        only_row -> Bool,
        folded_before -> Date,
    }
}

diesel::table! {
    platform_monthly (month, tool_id, tier, shard) {
        month -> Date,
        tool_id -> Uuid,
        tier -> Text,
        shard -> Int2,
        invocations -> Int8,
        errors -> Int8,
        tokens -> Int8,
        latency_hist -> Array<Int8>,
    }
}

diesel::table! {
    payment_customers (user_id) {
        user_id -> Uuid,
        customer_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payment_events (id) {
        id -> Text,
        kind -> Text,
        occurred_at -> Timestamptz,
        outcome -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    plans (tier) {
        tier -> Text,
        rank -> Int4,
        name -> Text,
        price_cents -> Int8,
        currency -> Text,
        token_limit -> Nullable<Int8>,
        requests_per_minute -> Nullable<Int4>,
        features -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    request_pacing (subject) {
        subject -> Text,
        tat -> Timestamptz,
    }
}

diesel::table! {
    quota_events (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        user_id -> Uuid,
        period_start -> Timestamptz,
        percent -> Int2,
        tokens_used -> Int8,
        token_limit -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    quota_reservations (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        tokens -> Int8,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    subscription_events (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        from_tier -> Nullable<Text>,
        to_tier -> Nullable<Text>,
        occurred_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        user_id -> Uuid,
        tier -> Text,
        status -> Text,
        billing_anchor -> Timestamptz,
        current_period_start -> Timestamptz,
        current_period_end -> Timestamptz,
        cancel_at_period_end -> Bool,
        scheduled_tier -> Nullable<Text>,
        tokens_used -> Int8,
        tokens_reserved -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        request_rate_tat -> Nullable<Timestamptz>,
        paid_by -> Text,
        provider_subscription_id -> Nullable<Text>,
        grace_ends_at -> Nullable<Timestamptz>,
        provider_event_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    tools (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        description -> Text,
        usage_notes -> Text,
        category -> Text,
        endpoint -> Text,
        method -> Text,
        headers -> Jsonb,
        timeout_ms -> Int4,
        tokens_path -> Text,
        estimated_tokens -> Int8,
        min_tier -> Text,
        enabled -> Bool,
        deleted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        max_tokens_per_call -> Int8,
        streams -> Bool,
    }
}

diesel::table! {
    usage_monthly (user_id, month, tool_id) {
        user_id -> Uuid,
        month -> Date,
        tool_id -> Uuid,
        invocations -> Int8,
        tokens -> Int8,
    }
}

diesel::table! {
    usage_events (id) {
        id -> Uuid,
        user_id -> Uuid,
        api_key_id -> Nullable<Uuid>,
        tool_id -> Uuid,
        subscription_id -> Nullable<Uuid>,
        tokens_used -> Int8,
        tokens_estimated -> Bool,
        status -> Text,
        error_code -> Nullable<Text>,
        latency_ms -> Int4,
        created_at -> Timestamptz,
        tokens_overrun -> Int8,
        xact -> Nullable<Int8>,
        tier -> Nullable<Text>,
    }
}

diesel::table! {
    usage_day_totals (user_id, day) {
        user_id -> Uuid,
        day -> Date,
        invocations -> Int8,
        tokens -> Int8,
    }
}

diesel::table! {
    usage_roll (only_row) {
        only_row -> Bool,
        rolled_before -> Int8,
    }
}

diesel::table! {
    usage_daily (user_id, day, tool_id) {
        user_id -> Uuid,
        tool_id -> Uuid,
        day -> Date,
        invocations -> Int8,
        tokens -> Int8,
        errors -> Int8,
        latency_ms_sum -> Int8,
    }
}

diesel::table! {
    user_last_active (user_id) {
        user_id -> Uuid,
        day -> Date,
    }
}

diesel::table! {
    user_activity (day, user_id) {
        day -> Date,
        user_id -> Uuid,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        role -> Text,
        status -> Text,
        email_verified_at -> Nullable<Timestamptz>,
        session_version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Uuid,
        user_id -> Nullable<Uuid>,
        kind -> Text,
        to_address -> Text,
        subject -> Text,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Uuid,
        kind -> Text,
        user_id -> Nullable<Uuid>,
        payload -> Jsonb,
        dedupe_key -> Nullable<Text>,
        created_at -> Timestamptz,
        dispatched_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        user_id -> Uuid,
        event_id -> Uuid,
        kind -> Text,
        title -> Text,
        body -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notification_channels (user_id, kind) {
        user_id -> Uuid,
        kind -> Text,
        in_app -> Bool,
        email -> Bool,
        webhook -> Bool,
    }
}

diesel::table! {
    user_preferences (user_id) {
        user_id -> Uuid,
        theme -> Text,
        language -> Text,
        time_zone -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        user_id -> Uuid,
        url -> Text,
        description -> Text,
        events -> Nullable<Array<Text>>,
        secret_nonce -> Text,
        secret_ciphertext -> Text,
        previous_nonce -> Nullable<Text>,
        previous_ciphertext -> Nullable<Text>,
        previous_until -> Nullable<Timestamptz>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        failing_since -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        message_id -> Uuid,
        endpoint_id -> Uuid,
        user_id -> Uuid,
        event_id -> Nullable<Uuid>,
        kind -> Text,
        body -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        latency_ms -> Int4,
        excerpt -> Text,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(ended_sessions -> users (user_id));
diesel::joinable!(audit_log -> users (actor_id));
diesel::joinable!(invocation_idempotency -> tools (tool_id));
diesel::joinable!(invocation_idempotency -> usage_events (usage_event_id));
diesel::joinable!(invocation_idempotency -> users (user_id));
diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(api_key_spending -> api_keys (api_key_id));
diesel::joinable!(quota_events -> subscriptions (subscription_id));
diesel::joinable!(quota_reservations -> subscriptions (subscription_id));
diesel::joinable!(payment_customers -> users (user_id));
diesel::joinable!(platform_daily -> tools (tool_id));
diesel::joinable!(platform_monthly -> tools (tool_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(subscription_events -> subscriptions (subscription_id));
diesel::joinable!(subscription_events -> users (user_id));
diesel::joinable!(subscriptions -> plans (tier));
diesel::joinable!(subscriptions -> users (user_id));
diesel::joinable!(tools -> plans (min_tier));
diesel::joinable!(usage_daily -> tools (tool_id));
diesel::joinable!(user_activity -> users (user_id));
diesel::joinable!(user_last_active -> users (user_id));
diesel::joinable!(usage_daily -> users (user_id));
diesel::joinable!(usage_day_totals -> users (user_id));
diesel::joinable!(usage_monthly -> tools (tool_id));
diesel::joinable!(usage_monthly -> users (user_id));
diesel::joinable!(usage_events -> api_keys (api_key_id));
diesel::joinable!(usage_events -> subscriptions (subscription_id));
diesel::joinable!(usage_events -> tools (tool_id));
diesel::joinable!(usage_events -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_key_spending,
    api_keys,
    audit_log,
    email_tokens,
    ended_sessions,
    invocation_idempotency,
    login_throttle,
    payment_customers,
    payment_events,
    platform_daily,
    platform_fold,
    platform_monthly,
    plans,
    quota_events,
    quota_reservations,
    refresh_tokens,
    request_pacing,
    subscription_events,
    subscriptions,
    tools,
    usage_daily,
    usage_day_totals,
    usage_events,
    usage_roll,
    usage_monthly,
    user_activity,
    user_last_active,
    users,
);
