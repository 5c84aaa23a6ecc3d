//! Counters past 2³¹−1 travel exactly, as the 64-bit `BigInt` scalar, from the invocation to every total.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::upstream::{BILLIONS, Upstream};

const TOTALS: &str = "{ me { subscription { tokensUsed tokenLimit tokensRemaining } } \
    usageSummary { totalTokens byTool { tokens } byDay { tokens invocations } } \
    usage { totalCount edges { node { tokensUsed } } } }";
const PLATFORM: &str =
    "{ admin { stats { tokens byTool { tokens } byDay { tokens } byTier { tier tokens } } } }";

#[tokio::test]
async fn an_enterprise_user_past_three_billion_tokens_sees_exact_totals_everywhere() {
    let app =
        TestApp::spawn_with(|config| config.gateway.max_tokens_per_call = 10_000_000_000).await;
    let upstream = Upstream::start().await;
    let root = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &root,
            json!({ "name": "Bulk", "endpoint": upstream.url("/billions"), "estimatedTokens": "90000000" }),
        )
        .await;
    let ada = app.register("Ada", "ada@example.com").await;
    let subscribed = app
        .graphql_as(
            &ada.access_token,
            "mutation { subscribe(tier: ENTERPRISE) { status tokenLimit } }",
            json!({}),
        )
        .await;
    assert_eq!(
        subscribed["data"]["subscribe"]["status"], "ACTIVE",
        "{subscribed}"
    );

    let call = app.invoke(&ada.access_token, &tool, json!({}), None).await;
    assert_eq!(call["data"]["invokeTool"]["tokensUsed"], BILLIONS, "{call}");
    app.invoke(&ada.access_token, &tool, json!({}), None).await;
    let twice = 2 * BILLIONS;

    let mine = app.graphql_as(&ada.access_token, TOTALS, json!({})).await;
    assert!(mine.get("errors").is_none(), "{mine}");
    let data = &mine["data"];
    assert_eq!(data["me"]["subscription"]["tokensUsed"], twice, "{mine}");
    assert!(
        data["me"]["subscription"]["tokenLimit"].is_null(),
        "enterprise is unlimited"
    );
    assert_eq!(data["usageSummary"]["totalTokens"], twice);
    assert_eq!(data["usageSummary"]["byTool"][0]["tokens"], twice);
    assert_eq!(data["usageSummary"]["byDay"][0]["tokens"], twice);
    assert_eq!(data["usage"]["totalCount"], 2);
    assert_eq!(data["usage"]["edges"][0]["node"]["tokensUsed"], BILLIONS);

    let platform = app
        .graphql_as(&root.access_token, PLATFORM, json!({}))
        .await;
    let stats = &platform["data"]["admin"]["stats"];
    assert_eq!(stats["tokens"], twice, "{platform}");
    assert_eq!(stats["byTool"][0]["tokens"], twice);
    assert_eq!(stats["byDay"][0]["tokens"], twice);
    assert_eq!(stats["byTier"][0]["tokens"], twice);

    let tool_row = app
        .graphql_as(
            &root.access_token,
            "query($id: ID!) { tool(id: $id) { estimatedTokens } }",
            json!({ "id": tool }),
        )
        .await;
    assert_eq!(
        tool_row["data"]["tool"]["estimatedTokens"], 90_000_000,
        "{tool_row}"
    );
}

#[tokio::test]
async fn a_big_int_that_is_not_a_whole_64_bit_number_is_bad_user_input() {
    let app = TestApp::spawn().await;
    let root = app.admin("root@example.com").await;
    for estimate in [
        json!("12abc"),
        json!(1.5),
        json!("99999999999999999999"),
        json!(true),
    ] {
        let body = app
            .graphql_as(
                &root.access_token,
                "mutation($i: ToolInput!) { createTool(input: $i) { id } }",
                json!({ "i": { "name": "Odd", "endpoint": "https://tool.example/v1", "estimatedTokens": estimate } }),
            )
            .await;
        assert_eq!(
            crate::helpers::error_code(&body),
            "BAD_USER_INPUT",
            "{estimate}: {body}"
        );
    }
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM tools").await,
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn every_counter_field_is_the_big_int_scalar() {
    let app = TestApp::spawn().await;
    let field_type = |type_name: &'static str, field: &'static str| {
        let app = &app;
        async move {
            let body = app
                .graphql_with(
                    "query($t: String!) { __type(name: $t) { fields { name type { name ofType { name } } } } }",
                    json!({ "t": type_name }),
                )
                .await;
            let fields = body["data"]["__type"]["fields"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let found: Option<Value> = fields.into_iter().find(|f| f["name"] == field);
            let kind = found.map(|f| f["type"].clone()).unwrap_or(Value::Null);
            kind["name"]
                .as_str()
                .or(kind["ofType"]["name"].as_str())
                .map(str::to_owned)
        }
    };
    for (type_name, field) in [
        ("PlanSubscription", "tokensUsed"),
        ("PlanSubscription", "tokenLimit"),
        ("PlanSubscription", "tokensRemaining"),
        ("Plan", "tokenLimit"),
        ("Plan", "priceCents"),
        ("UsageSummary", "totalTokens"),
        ("UsageEntry", "tokensUsed"),
        ("DayUsage", "tokens"),
        ("PlatformStats", "tokens"),
        ("UsageConnection", "totalCount"),
        ("Tool", "estimatedTokens"),
    ] {
        assert_eq!(
            field_type(type_name, field).await.as_deref(),
            Some("BigInt"),
            "{type_name}.{field}"
        );
    }
    let scalar = app
        .graphql("{ __type(name: \"BigInt\") { kind specifiedByURL } }")
        .await;
    assert_eq!(scalar["data"]["__type"]["kind"], "SCALAR", "{scalar}");
    assert!(
        scalar["data"]["__type"]["specifiedByURL"].is_string(),
        "{scalar}"
    );
}
