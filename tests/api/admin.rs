//! The admin console: the guard walk, users, the last-admin rule, suspension, deletion, statistics and
//! the audit trail.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::metered::{Metered, metered};
use crate::helpers::upstream::Upstream;
use crate::helpers::{PASSWORD, TestApp, error_code};

/// Mutations anyone (or any user) may call; every other mutation is an admin mutation and must be guarded.
const PUBLIC_MUTATIONS: [&str; 28] = [
    "register",
    "login",
    "refreshToken",
    "logout",
    "requestPasswordReset",
    "resetPassword",
    "verifyEmail",
    "cancelEmailChange",
    "resendVerificationEmail",
    "updateProfile",
    "changePassword",
    "createApiKey",
    "revokeApiKey",
    "setApiKeyLimits",
    "invokeTool",
    "subscribe",
    "cancelSubscription",
    "resumeSubscription",
    "billingPortalUrl",
    "markNotificationsRead",
    "markAllNotificationsRead",
    "updatePreferences",
    "createWebhookEndpoint",
    "updateWebhookEndpoint",
    "deleteWebhookEndpoint",
    "rotateWebhookSecret",
    "sendTestWebhook",
    "replayWebhookDelivery",
];

const TYPE_REF: &str = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";

/// A literal for a required argument of this type (introspection `TypeRef`).
fn literal(schema: &Value, type_ref: &Value) -> String {
    match type_ref["kind"].as_str().unwrap() {
        "NON_NULL" => literal(schema, &type_ref["ofType"]),
        "LIST" => format!("[{}]", literal(schema, &type_ref["ofType"])),
        "ENUM" => {
            let name = type_ref["name"].as_str().unwrap();
            find_type(schema, name)["enumValues"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        }
        "INPUT_OBJECT" => {
            let name = type_ref["name"].as_str().unwrap();
            let fields: Vec<String> = find_type(schema, name)["inputFields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["type"]["kind"] == "NON_NULL" && f["defaultValue"].is_null())
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["name"].as_str().unwrap(),
                        literal(schema, &f["type"])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        _ => match type_ref["name"].as_str().unwrap() {
            "ID" => format!("\"{}\"", uuid::Uuid::new_v4()),
            "Int" => "1".into(),
            "Float" => "1.0".into(),
            "Boolean" => "true".into(),
            "DateTime" => "\"2026-01-01T00:00:00Z\"".into(),
            "JSON" => "{}".into(),
            _ => "\"x\"".into(),
        },
    }
}

fn find_type<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

fn base_kind(type_ref: &Value) -> &str {
    match type_ref["kind"].as_str().unwrap() {
        "NON_NULL" | "LIST" => base_kind(&type_ref["ofType"]),
        kind => kind,
    }
}

/// `name(args) { __typename }` with every required argument filled.
fn call(schema: &Value, field: &Value) -> String {
    let args: Vec<String> = field["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"]["kind"] == "NON_NULL")
        .map(|a| {
            format!(
                "{}: {}",
                a["name"].as_str().unwrap(),
                literal(schema, &a["type"])
            )
        })
        .collect();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("({})", args.join(", "))
    };
    let selection = if matches!(base_kind(&field["type"]), "OBJECT" | "INTERFACE" | "UNION") {
        " { __typename }"
    } else {
        ""
    };
    format!("{}{args}{selection}", field["name"].as_str().unwrap())
}

#[tokio::test]
async fn every_admin_field_and_mutation_refuses_anonymous_callers_and_users() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    let key = app.api_key(&user.access_token).await;
    let introspection = format!(
        "{{ __schema {{ mutationType {{ fields {{ name args {{ name type {{ {TYPE_REF} }} }} type {{ {TYPE_REF} }} }} }} \
           types {{ name kind enumValues {{ name }} inputFields {{ name defaultValue type {{ {TYPE_REF} }} }} \
                   fields {{ name args {{ name type {{ {TYPE_REF} }} }} type {{ {TYPE_REF} }} }} }} }} }}"
    );
    let schema = app.graphql(&introspection).await["data"]["__schema"].clone();

    let mut operations: Vec<String> = schema["mutationType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !PUBLIC_MUTATIONS.contains(&f["name"].as_str().unwrap()))
        .map(|f| format!("mutation {{ {} }}", call(&schema, f)))
        .collect();
    operations.push("{ admin { __typename } }".into());
    for field in find_type(&schema, "AdminQuery")["fields"]
        .as_array()
        .unwrap()
    {
        operations.push(format!("{{ admin {{ {} }} }}", call(&schema, field)));
    }
    assert!(operations.len() >= 12, "{operations:#?}");

    for operation in &operations {
        let anonymous = app.graphql(operation).await;
        let as_user = app
            .graphql_as(&user.access_token, operation, json!({}))
            .await;
        let by_key = app.graphql_as(&key, operation, json!({})).await;
        let as_admin = app
            .graphql_as(&admin.access_token, operation, json!({}))
            .await;
        assert_eq!(
            error_code(&anonymous),
            "UNAUTHENTICATED",
            "{operation}: {anonymous}"
        );
        assert_eq!(error_code(&as_user), "FORBIDDEN", "{operation}: {as_user}");
        assert_eq!(error_code(&by_key), "FORBIDDEN", "{operation}: {by_key}");
        let admin_code = as_admin["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("none");
        assert!(
            !matches!(admin_code, "UNAUTHENTICATED" | "FORBIDDEN"),
            "{operation} refused an admin: {as_admin}"
        );
    }
}

const USERS: &str = "query($first: Int, $after: String, $search: String, $role: Role, $status: UserStatus, $tier: PlanTier, $sort: UserSort) { admin { users(first: $first, after: $after, search: $search, role: $role, status: $status, tier: $tier, sort: $sort) { totalCount pageInfo { hasNextPage endCursor } nodes { email name role status subscription { plan { tier } tokensUsed } } } } }";

#[tokio::test]
async fn admins_list_users_filtered_sorted_and_paged_with_one_batch_per_page() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &admin,
            json!({ "name": "T", "endpoint": upstream.url("/ok") }),
        )
        .await;
    let names = ["carol", "alice", "dave", "bob", "erin", "frank"];
    let mut users = Vec::new();
    for name in names {
        let user = app.register(name, &format!("{name}@example.com")).await;
        app.clock.advance(chrono::Duration::seconds(1));
        users.push(user);
    }
    for user in &users[..3] {
        app.subscribe_free(user).await;
    }
    app.invoke(&users[1].access_token, &tool, json!({}), None)
        .await; // alice: 42 tokens
    let emails = |body: &Value| -> Vec<String> {
        body["data"]["admin"]["users"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|n| {
                n["email"]
                    .as_str()
                    .unwrap()
                    .split('@')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let query = |variables: Value| app.graphql_as(&admin.access_token, USERS, variables);

    let by_name = query(json!({ "sort": "NAME", "first": 4 })).await;
    let next = query(json!({ "sort": "NAME", "first": 4, "after": by_name["data"]["admin"]["users"]["pageInfo"]["endCursor"] })).await;
    let newest = query(json!({ "first": 2 })).await;
    let by_tokens = query(json!({ "sort": "TOKENS_USED", "first": 1 })).await;
    let searched = query(json!({ "search": "ALI" })).await;
    let admins = query(json!({ "role": "ADMIN" })).await;
    let free = query(json!({ "tier": "FREE" })).await;

    assert_eq!(
        emails(&by_name),
        ["root", "alice", "bob", "carol"],
        "root is named Admin"
    );
    assert_eq!(emails(&next), ["dave", "erin", "frank"]);
    assert_eq!(by_name["data"]["admin"]["users"]["totalCount"], 7);
    assert_eq!(emails(&newest), ["frank", "erin"]);
    assert_eq!(emails(&by_tokens), ["alice"]);
    assert_eq!(
        by_tokens["data"]["admin"]["users"]["nodes"][0]["subscription"]["tokensUsed"],
        42
    );
    assert_eq!(emails(&searched), ["alice"]);
    assert_eq!(emails(&admins), ["root"]);
    assert_eq!(free["data"]["admin"]["users"]["totalCount"], 3);

    // The subscriptions of a page load in one batch, whatever the page size.
    for first in [2, 7] {
        let before = app
            .state
            .loader_stats
            .subscription_batches
            .load(Ordering::SeqCst);
        let page = query(json!({ "first": first })).await;
        assert_eq!(emails(&page).len(), first);
        assert_eq!(
            app.state
                .loader_stats
                .subscription_batches
                .load(Ordering::SeqCst)
                - before,
            1
        );
    }
}

const UPDATE: &str =
    "mutation($id: ID!, $i: UpdateUserInput!) { updateUser(id: $id, input: $i) { role status } }";
const DELETE: &str = "mutation($id: ID!) { deleteUser(id: $id) }";

#[tokio::test]
async fn the_last_admin_cannot_demote_suspend_or_delete_themself() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let other = app.register("Other", "other@example.com").await;

    let demote = app
        .graphql_as(
            &root.access_token,
            UPDATE,
            json!({ "id": root.id, "i": { "role": "USER" } }),
        )
        .await;
    let suspend = app
        .graphql_as(
            &root.access_token,
            UPDATE,
            json!({ "id": root.id, "i": { "status": "SUSPENDED" } }),
        )
        .await;
    let delete = app
        .graphql_as(&root.access_token, DELETE, json!({ "id": root.id }))
        .await;
    assert_eq!(error_code(&demote), "CONFLICT");
    assert_eq!(error_code(&suspend), "CONFLICT");
    assert_eq!(error_code(&delete), "CONFLICT");

    let promoted = app
        .graphql_as(
            &root.access_token,
            UPDATE,
            json!({ "id": other.id, "i": { "role": "ADMIN" } }),
        )
        .await;
    assert_eq!(promoted["data"]["updateUser"]["role"], "ADMIN");
    let stepped_down = app
        .graphql_as(
            &root.access_token,
            UPDATE,
            json!({ "id": root.id, "i": { "role": "USER" } }),
        )
        .await;
    assert_eq!(stepped_down["data"]["updateUser"]["role"], "USER");
    let now_forbidden = app
        .graphql_as(&root.access_token, "{ admin { __typename } }", json!({}))
        .await;
    assert_eq!(
        error_code(&now_forbidden),
        "FORBIDDEN",
        "the role change applies to the next request"
    );
}

#[tokio::test]
async fn a_suspension_stops_tokens_and_keys_at_once_and_reactivation_restores_them() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    let key = app.api_key(&user.access_token).await;

    app.graphql_as(
        &root.access_token,
        UPDATE,
        json!({ "id": user.id, "i": { "status": "SUSPENDED" } }),
    )
    .await;
    let by_token = app
        .graphql_as(&user.access_token, "{ me { id } }", json!({}))
        .await;
    let by_key = app.graphql_as(&key, "{ me { id } }", json!({})).await;
    let login = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(error_code(&by_token), "UNAUTHENTICATED");
    assert_eq!(error_code(&by_key), "UNAUTHENTICATED");
    assert_eq!(error_code(&login), "FORBIDDEN");

    app.graphql_as(
        &root.access_token,
        UPDATE,
        json!({ "id": user.id, "i": { "status": "ACTIVE" } }),
    )
    .await;
    assert!(app.graphql_as(&key, "{ me { id } }", json!({})).await["data"]["me"].is_object());
}

const STATS: &str = "{ admin { stats { users { total new active } invocations tokens errorRate byTool { tool { name } invocations errors errorRate p95LatencyMs } byDay { day invocations } byTier { tier invocations tokens } subscriptions { tier active cancelled } monthlyRecurringRevenue { currency amountCents } } } }";

#[tokio::test]
async fn statistics_add_up_every_shard_of_the_platform_rollups() {
    // The upstream is bound so that it keeps serving until the test ends.
    let Metered {
        app,
        upstream: _upstream,
        root,
        tool,
        ada,
    } = metered().await;
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    app.rolled_up().await;
    // Another shard of the same day, tool and tier.
    app.sql(
        "INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) \
         SELECT day, tool_id, tier, shard + 1, 2, 1, 40, latency_hist FROM platform_daily",
    )
    .await;

    let body = app.graphql_as(&root.access_token, STATS, json!({})).await;
    let stats = &body["data"]["admin"]["stats"];
    assert_eq!(stats["invocations"], 3, "{body}");
    assert_eq!(stats["tokens"], 42 + 40);
    assert_eq!(stats["byTool"][0]["invocations"], 3);
    assert_eq!(stats["byTool"][0]["errors"], 1);
    assert_eq!(stats["byTier"][0]["invocations"], 3);
    assert_eq!(stats["byDay"][0]["invocations"], 3);
}

/// Rollups over days, tools, tiers and writers' shards, summed per day, per tool, per tier and in all
/// for the days in range only; the latency percentile from every shard's histogram together.
#[tokio::test]
async fn statistics_sum_the_rollups_of_the_days_in_range_per_day_tool_and_tier() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let tool = |name: &str| {
        app.create_tool(
            &root,
            json!({ "name": name, "endpoint": "http://127.0.0.1:9/" }),
        )
    };
    let (fast, slow) = (tool("Fast").await, tool("Slow").await);
    // Histograms of 12 buckets (50 ms, 100 ms, 200 ms, … and above 30 s). Slow's shards hold 90 calls
    // in the first bucket and 10 in the 500 ms one between them: its 95th percentile is 500 ms, which
    // neither shard shows alone (85 + 5 and 5 + 5).
    app.sql(&format!(
        "INSERT INTO platform_daily (day, tool_id, tier, shard, invocations, errors, tokens, latency_hist) VALUES \
           ('2026-03-01', '{fast}', 'FREE', 0, 10, 1, 100, '{{10,0,0,0,0,0,0,0,0,0,0,0}}'), \
           ('2026-03-01', '{fast}', 'PRO', 0, 20, 0, 200, '{{20,0,0,0,0,0,0,0,0,0,0,0}}'), \
           ('2026-03-02', '{slow}', 'PRO', 0, 90, 3, 900, '{{85,0,0,0,5,0,0,0,0,0,0,0}}'), \
           ('2026-03-02', '{slow}', 'PRO', 1, 10, 1, 100, '{{5,0,0,0,5,0,0,0,0,0,0,0}}'), \
           ('2026-03-05', '{fast}', 'FREE', 0, 1000, 0, 9000, '{{1000,0,0,0,0,0,0,0,0,0,0,0}}')"
    ))
    .await;
    const RANGED: &str = "query($from: DateTime, $to: DateTime) { admin { stats(from: $from, to: $to) { invocations tokens errorRate byTool { tool { name } invocations tokens errors p95LatencyMs } byDay { day invocations tokens } byTier { tier invocations tokens } } } }";

    let stats_of = |from: &str, to: &str| {
        app.graphql_as(
            &root.access_token,
            RANGED,
            json!({ "from": from, "to": to }),
        )
    };

    let body = stats_of("2026-03-01T00:00:00Z", "2026-03-02T12:00:00Z").await;
    let stats = &body["data"]["admin"]["stats"];
    assert_eq!(stats["invocations"], 130, "{body}");
    assert_eq!(stats["tokens"], 1300);
    assert_eq!(stats["errorRate"], 5.0 / 130.0);
    assert_eq!(
        stats["byDay"],
        json!([
            { "day": "2026-03-01", "invocations": 30, "tokens": 300 },
            { "day": "2026-03-02", "invocations": 100, "tokens": 1000 },
        ]),
        "the day the range ends in counts; 5 March is out of range"
    );
    assert_eq!(
        stats["byTier"],
        json!([
            { "tier": "FREE", "invocations": 10, "tokens": 100 },
            { "tier": "PRO", "invocations": 120, "tokens": 1200 },
        ])
    );
    assert_eq!(
        stats["byTool"],
        json!([
            { "tool": { "name": "Slow" }, "invocations": 100, "tokens": 1000, "errors": 4, "p95LatencyMs": 500 },
            { "tool": { "name": "Fast" }, "invocations": 30, "tokens": 300, "errors": 1, "p95LatencyMs": 50 },
        ]),
        "most invocations first"
    );

    let empty = stats_of("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z").await;
    assert_eq!(
        empty["data"]["admin"]["stats"],
        json!({ "invocations": 0, "tokens": 0, "errorRate": 0.0, "byTool": [], "byDay": [], "byTier": [] }),
        "{empty}"
    );
}

#[tokio::test]
async fn statistics_come_from_rollups_and_survive_a_deleted_user() {
    let Metered {
        app,
        upstream,
        root,
        tool: ok,
        ada,
    } = metered().await;
    let bad = app
        .create_tool(
            &root,
            json!({ "name": "Bad", "endpoint": upstream.url("/fail") }),
        )
        .await;
    let bob = app.register("Bob", "bob@example.com").await;
    app.graphql_as(
        &bob.access_token,
        "mutation { subscribe(tier: PRO) { status } }",
        json!({}),
    )
    .await;
    app.graphql_as(
        &bob.access_token,
        "mutation { cancelSubscription { status } }",
        json!({}),
    )
    .await;
    app.invoke(&ada.access_token, &ok, json!({}), None).await;
    app.invoke(&ada.access_token, &ok, json!({}), None).await;
    app.invoke(&ada.access_token, &bad, json!({}), None).await;

    let before = app.graphql_as(&root.access_token, STATS, json!({})).await;
    let deleted = app
        .graphql_as(&root.access_token, DELETE, json!({ "id": ada.id }))
        .await;
    let after = app.graphql_as(&root.access_token, STATS, json!({})).await;

    let stats = &before["data"]["admin"]["stats"];
    assert_eq!(stats["invocations"], 3, "{before}");
    assert_eq!(stats["tokens"], 84);
    assert_eq!(stats["users"]["total"], 3);
    assert_eq!(stats["users"]["active"], 1);
    let good = stats["byTool"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"]["name"] == "Good")
        .unwrap();
    let failing = stats["byTool"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"]["name"] == "Bad")
        .unwrap();
    assert_eq!(good["errorRate"], 0.0);
    assert_eq!(failing["errorRate"], 1.0);
    // Of two calls, the 95th percentile is the slower: the bound of the bucket its logged latency is in.
    let slower = app
        .sql_number(&format!(
            "SELECT max(latency_ms)::bigint AS n FROM usage_events WHERE tool_id = '{ok}'"
        ))
        .await;
    let bound = joyfull_hub::usage::model::LATENCY_BOUNDS_MS
        .into_iter()
        .find(|bound| i64::from(*bound) >= slower);
    assert_eq!(
        good["p95LatencyMs"],
        json!(bound),
        "the slower call took {slower} ms"
    );
    assert_eq!(stats["byTier"][0]["tier"], "FREE");
    assert_eq!(stats["byTier"][0]["invocations"], 3);
    let subscriptions = stats["subscriptions"].as_array().unwrap();
    assert!(
        subscriptions.contains(&json!({ "tier": "FREE", "active": 1, "cancelled": 0 })),
        "{subscriptions:?}"
    );
    assert!(
        subscriptions.contains(&json!({ "tier": "PRO", "active": 0, "cancelled": 1 })),
        "{subscriptions:?}"
    );
    assert_eq!(
        stats["monthlyRecurringRevenue"],
        json!([{ "currency": "USD", "amountCents": 0 }])
    );

    assert_eq!(deleted["data"]["deleteUser"], true);
    let after_stats = &after["data"]["admin"]["stats"];
    assert_eq!(after_stats["invocations"], 3, "usage stays");
    assert_eq!(after_stats["tokens"], 84);
    assert_eq!(after_stats["users"]["total"], 2, "the person is gone");
    assert_eq!(
        error_code(&app.login("ada@example.com", PASSWORD).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        error_code(
            &app.graphql_as(&ada.access_token, "{ me { id } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM users WHERE email LIKE 'ada%'")
            .await,
        0
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        3
    );
    app.register("Ada again", "ada@example.com").await; // the address is free again
}

#[tokio::test]
async fn every_admin_mutation_and_account_security_event_is_in_the_audit_trail() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    let request_id = "audit-check-7";
    app.client
        .post(app.url("/graphql"))
        .bearer_auth(&root.access_token)
        .header("x-request-id", request_id)
        .json(&json!({ "query": UPDATE, "variables": { "id": user.id, "i": { "role": "ADMIN", "name": "Ada L." } } }))
        .send()
        .await
        .unwrap();
    let tool = app.create_tool(&root, json!({ "name": "Audited", "endpoint": "https://a.example", "headers": [{ "name": "authorization", "value": "Bearer sk-secret", "secret": true }] })).await;
    app.graphql_as(
        &root.access_token,
        "mutation($id: ID!) { updateTool(id: $id, input: {enabled: false}) { id } }",
        json!({ "id": tool }),
    )
    .await;
    app.graphql_as(
        &root.access_token,
        "mutation($id: ID!) { deleteTool(id: $id) }",
        json!({ "id": tool }),
    )
    .await;
    app.graphql_as(
        &root.access_token,
        "mutation { updatePlan(tier: PRO, input: {priceCents: 2900}) { priceCents } }",
        json!({}),
    )
    .await;
    app.graphql_as(&root.access_token, "mutation { createUser(input: {name: \"Made\", email: \"made@example.com\", password: \"Corr3ct-Horse!\"}) { id } }", json!({})).await;
    let created = app
        .graphql_as(
            &user.access_token,
            "mutation { createApiKey(input: {name: \"script\"}) { key apiKey { id } } }",
            json!({}),
        )
        .await;
    let key = created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_id = created["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app
        .graphql_as(
            &root.access_token,
            "mutation($id: ID!) { revokeUserApiKey(id: $id) { active } }",
            json!({ "id": key_id }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeUserApiKey"]["active"], false,
        "{revoked}"
    );
    assert_eq!(
        error_code(&app.graphql_as(&key, "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    app.graphql_as(&user.access_token, "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }", json!({ "c": PASSWORD, "n": "N3w-Passw0rd!" })).await;

    let log = app
        .graphql_as(&root.access_token, "{ admin { auditLog(first: 50) { nodes { actorId action targetType targetId before after requestId } } } }", json!({}))
        .await;
    let entries = log["data"]["admin"]["auditLog"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"));
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "user.update",
        "tool.create",
        "tool.update",
        "tool.delete",
        "plan.update",
        "user.create",
        "api_key.revoke",
        "user.password_changed",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let role_change = entries
        .iter()
        .find(|e| e["action"] == "user.update")
        .unwrap();
    assert_eq!(role_change["actorId"], root.id.as_str());
    assert_eq!(role_change["targetId"], user.id.as_str());
    assert_eq!(
        role_change["before"],
        json!({ "role": "USER", "name": "Ada" })
    );
    assert_eq!(
        role_change["after"],
        json!({ "role": "ADMIN", "name": "Ada L." })
    );
    assert_eq!(role_change["requestId"], request_id);
    assert!(
        !log.to_string().contains("sk-secret"),
        "secrets never reach the audit trail"
    );
    let filtered = app
        .graphql_as(
            &root.access_token,
            "{ admin { auditLog(action: \"tool.delete\") { nodes { action } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        filtered["data"]["admin"]["auditLog"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Append-only, even for the database owner.
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&app.db.url)
            .await
            .unwrap();
    let tampering =
        diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM audit_log"), &mut conn)
            .await;
    assert!(tampering.is_err());
}
