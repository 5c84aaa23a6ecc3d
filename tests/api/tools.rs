//! The catalogue: administration, visibility, paging and secrets at rest.

use serde_json::json;

use crate::helpers::upstream::Upstream;
use crate::helpers::{TestApp, error_code};

const TOOLS: &str = "query($first: Int, $after: String, $search: String) { tools(first: $first, after: $after, search: $search) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id name } } nodes { name enabled minTier } } }";

#[tokio::test]
async fn admins_create_tools_with_checked_fields_and_users_cannot() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    let create = "mutation($i: ToolInput!) { createTool(input: $i) { id slug name usage minTier enabled endpoint method timeoutMs tokensPath estimatedTokens } }";

    let created = app
        .graphql_as(
            &admin.access_token,
            create,
            json!({ "i": { "name": "Text Summarizer", "endpoint": "https://api.example.com/v1/sum", "usage": "Send {text}", "minTier": "PRO" } }),
        )
        .await;
    let bad_endpoint = app
        .graphql_as(
            &admin.access_token,
            create,
            json!({ "i": { "name": "X", "endpoint": "ftp://x" } }),
        )
        .await;
    let duplicate = app
        .graphql_as(
            &admin.access_token,
            create,
            json!({ "i": { "name": "Text Summarizer", "endpoint": "https://api.example.com" } }),
        )
        .await;
    let by_user = app
        .graphql_as(
            &user.access_token,
            create,
            json!({ "i": { "name": "Y", "endpoint": "https://y.example" } }),
        )
        .await;

    let tool = &created["data"]["createTool"];
    assert_eq!(tool["slug"], "text-summarizer");
    assert_eq!(tool["minTier"], "PRO");
    assert_eq!(tool["method"], "POST");
    assert_eq!(tool["tokensPath"], "usage.total_tokens");
    assert_eq!(bad_endpoint["errors"][0]["extensions"]["field"], "endpoint");
    assert_eq!(error_code(&duplicate), "CONFLICT");
    assert_eq!(error_code(&by_user), "FORBIDDEN");
}

#[tokio::test]
async fn users_see_enabled_tools_without_their_endpoint_and_admins_see_everything() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let user = app.register("Ada", "ada@example.com").await;
    let visible = app
        .create_tool(
            &admin,
            json!({ "name": "Visible", "endpoint": "https://v.example" }),
        )
        .await;
    app.create_tool(
        &admin,
        json!({ "name": "Hidden", "endpoint": "https://h.example", "enabled": false }),
    )
    .await;

    let for_user = app.graphql_as(&user.access_token, TOOLS, json!({})).await;
    let for_admin = app.graphql_as(&admin.access_token, TOOLS, json!({})).await;
    let anonymous = app.graphql_with(TOOLS, json!({})).await;
    let endpoint = app
        .graphql_as(
            &user.access_token,
            "query($id: ID!) { tool(id: $id) { name endpoint } }",
            json!({ "id": visible }),
        )
        .await;

    assert_eq!(for_user["data"]["tools"]["totalCount"], 1);
    assert_eq!(for_user["data"]["tools"]["nodes"][0]["name"], "Visible");
    assert_eq!(anonymous["data"]["tools"]["totalCount"], 1);
    assert_eq!(for_admin["data"]["tools"]["totalCount"], 2);
    assert_eq!(error_code(&endpoint), "FORBIDDEN");
    assert!(endpoint["data"]["tool"]["endpoint"].is_null(), "{endpoint}");
    assert_eq!(endpoint["data"]["tool"]["name"], "Visible");
}

#[tokio::test]
async fn the_catalogue_pages_by_name_and_searches_names_and_descriptions() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    for name in ["Delta", "Alpha", "Echo", "Charlie", "Bravo"] {
        app.create_tool(
            &admin,
            json!({ "name": name, "endpoint": "https://x.example", "description": format!("{name} does 100% of things") }),
        )
        .await;
    }

    let first = app.graphql_with(TOOLS, json!({ "first": 2 })).await;
    let cursor = first["data"]["tools"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app
        .graphql_with(TOOLS, json!({ "first": 2, "after": cursor }))
        .await;
    let last = app
        .graphql_with(
            TOOLS,
            json!({ "first": 2, "after": second["data"]["tools"]["pageInfo"]["endCursor"] }),
        )
        .await;
    let search = app.graphql_with(TOOLS, json!({ "search": "char" })).await;
    let percent = app.graphql_with(TOOLS, json!({ "search": "100%" })).await;
    let too_many = app.graphql_with(TOOLS, json!({ "first": 1000 })).await;
    let bad_cursor = app.graphql_with(TOOLS, json!({ "after": "zz" })).await;

    let names = |body: &serde_json::Value| -> Vec<String> {
        body["data"]["tools"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["Alpha", "Bravo"]);
    assert_eq!(first["data"]["tools"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["data"]["tools"]["totalCount"], 5);
    assert_eq!(names(&second), ["Charlie", "Delta"]);
    assert_eq!(names(&last), ["Echo"]);
    assert_eq!(last["data"]["tools"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(names(&search), ["Charlie"]);
    assert_eq!(percent["data"]["tools"]["totalCount"], 5);
    assert_eq!(too_many["errors"][0]["extensions"]["field"], "first");
    assert_eq!(bad_cursor["errors"][0]["extensions"]["field"], "after");
}

#[tokio::test]
async fn secret_headers_are_encrypted_at_rest_never_shown_and_sent_upstream() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &admin,
            json!({
                "name": "Header probe",
                "endpoint": upstream.url("/headers"),
                "headers": [
                    { "name": "Authorization", "value": "Bearer sk-provider-secret-123", "secret": true },
                    { "name": "X-Team", "value": "blue" }
                ]
            }),
        )
        .await;

    let shown = app
        .graphql_as(
            &admin.access_token,
            "query($id: ID!) { tool(id: $id) { headers { name value secret } } }",
            json!({ "id": tool }),
        )
        .await;
    let stored = app
        .sql_number("SELECT count(*) AS n FROM tools WHERE headers::text LIKE '%sk-provider%'")
        .await;
    // A change that omits the secret's value keeps it.
    app.graphql_as(
        &admin.access_token,
        "mutation($id: ID!, $i: ToolInput!) { updateTool(id: $id, input: $i) { id } }",
        json!({ "id": tool, "i": { "headers": [{ "name": "authorization", "secret": true }] } }),
    )
    .await;
    app.subscribe_free(&admin).await;
    let invoked = app
        .invoke(&admin.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(shown["data"]["tool"]["headers"][0]["name"], "authorization");
    assert_eq!(shown["data"]["tool"]["headers"][0]["secret"], true);
    assert!(shown["data"]["tool"]["headers"][0]["value"].is_null());
    assert_eq!(shown["data"]["tool"]["headers"][1]["value"], "blue");
    assert_eq!(stored, 0, "the secret is not stored in clear");
    let received = &invoked["data"]["invokeTool"]["output"]["headers"];
    assert_eq!(
        received["authorization"], "Bearer sk-provider-secret-123",
        "{invoked}"
    );
    assert!(received["x-request-id"].is_string());
}

#[tokio::test]
async fn deleting_a_tool_hides_it_but_keeps_its_usage_history() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let admin = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &admin,
            json!({ "name": "Gone", "endpoint": upstream.url("/ok") }),
        )
        .await;
    app.subscribe_free(&admin).await;
    app.invoke(&admin.access_token, &tool, json!({}), None)
        .await;

    let deleted = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!) { deleteTool(id: $id) }",
            json!({ "id": tool }),
        )
        .await;
    let again = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!) { deleteTool(id: $id) }",
            json!({ "id": tool }),
        )
        .await;
    let listed = app.graphql_as(&admin.access_token, TOOLS, json!({})).await;
    let invoked = app
        .invoke(&admin.access_token, &tool, json!({}), None)
        .await;

    assert_eq!(deleted["data"]["deleteTool"], true);
    assert_eq!(error_code(&again), "NOT_FOUND");
    assert_eq!(listed["data"]["tools"]["totalCount"], 0);
    assert_eq!(error_code(&invoked), "NOT_FOUND");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events")
            .await,
        1
    );
    // The slug is free again.
    app.create_tool(
        &admin,
        json!({ "name": "Gone", "endpoint": upstream.url("/ok") }),
    )
    .await;
}

#[tokio::test]
async fn a_tool_or_plan_change_whose_audit_entry_cannot_be_written_does_not_happen() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let tool = app
        .create_tool(
            &admin,
            json!({ "name": "Audited", "endpoint": "http://127.0.0.1:9/x" }),
        )
        .await;
    // From now on the trail refuses entries about tools and plans, as a full disk or a broken
    // trail would: the changes they record must fail with them.
    app.sql(
        "ALTER TABLE audit_log ADD CONSTRAINT refuse_for_test CHECK (target_type NOT IN ('tool', 'plan')) NOT VALID",
    )
    .await;

    let renamed = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!, $i: ToolInput!) { updateTool(id: $id, input: $i) { id } }",
            json!({ "id": tool, "i": { "name": "Renamed" } }),
        )
        .await;
    let deleted = app
        .graphql_as(
            &admin.access_token,
            "mutation($id: ID!) { deleteTool(id: $id) }",
            json!({ "id": tool }),
        )
        .await;
    let created = app
        .graphql_as(
            &admin.access_token,
            "mutation($i: ToolInput!) { createTool(input: $i) { id } }",
            json!({ "i": { "name": "Unaudited", "endpoint": "http://127.0.0.1:9/y" } }),
        )
        .await;
    let repriced = app
        .graphql_as(
            &admin.access_token,
            "mutation { updatePlan(tier: PRO, input: { priceCents: 1 }) { priceCents } }",
            json!({}),
        )
        .await;

    for body in [&renamed, &deleted, &created, &repriced] {
        assert_eq!(error_code(body), "INTERNAL", "{body}");
    }
    let name = app
        .sql_text(&format!(
            "SELECT name AS t FROM tools WHERE id = '{tool}' AND deleted_at IS NULL"
        ))
        .await;
    assert_eq!(name, "Audited");
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM tools WHERE name = 'Unaudited'")
            .await,
        0
    );
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM plans WHERE tier = 'PRO' AND price_cents = 1")
            .await,
        0
    );
}
