//! One rule for ids and pages: a malformed id is `BAD_USER_INPUT` naming the argument; a well-formed id
//! that names nothing is `null` from a lookup and `NOT_FOUND` from a mutation; a page size out of range
//! is refused, never silently clamped.

use serde_json::json;

use crate::helpers::{TestApp, error_code};

#[tokio::test]
async fn malformed_ids_name_their_argument_and_missing_ones_are_null_or_not_found() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root@example.com").await;
    let token = &admin.access_token;
    let unknown = uuid::Uuid::now_v7().to_string();
    let ask = |query: &'static str, id: &str| app.graphql_as(token, query, json!({ "id": id }));
    let cases = [
        ("query($id: ID!) { tool(id: $id) { id } }", "id"),
        (
            "mutation($id: ID!) { invokeTool(toolId: $id, input: {}) { id } }",
            "toolId",
        ),
        ("mutation($id: ID!) { revokeApiKey(id: $id) { id } }", "id"),
        ("query($id: ID!) { admin { user(id: $id) { id } } }", "id"),
        (
            "query($id: ID) { usage(toolId: $id) { totalCount } }",
            "toolId",
        ),
    ];

    for (query, argument) in cases {
        let body = ask(query, "not-an-id").await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], argument, "{body}");
    }
    let missing_tool = ask(cases[0].0, &unknown).await;
    let missing_user = ask(cases[3].0, &unknown).await;
    let invoke_missing = ask(cases[1].0, &unknown).await;
    let revoke_missing = ask(cases[2].0, &unknown).await;

    assert!(missing_tool["data"]["tool"].is_null(), "{missing_tool}");
    assert!(missing_tool.get("errors").is_none(), "{missing_tool}");
    assert!(
        missing_user["data"]["admin"]["user"].is_null(),
        "{missing_user}"
    );
    assert_eq!(error_code(&invoke_missing), "NOT_FOUND");
    assert_eq!(error_code(&revoke_missing), "NOT_FOUND");
}

#[tokio::test]
async fn a_page_size_out_of_range_is_refused_not_clamped() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let recent = app
        .graphql_as(
            &user.access_token,
            "{ me { recentUsage(first: 500) { id } } }",
            json!({}),
        )
        .await;
    let usage = app
        .graphql_as(
            &user.access_token,
            "{ usage(first: 500) { totalCount } }",
            json!({}),
        )
        .await;

    for body in [&recent, &usage] {
        assert_eq!(error_code(body), "BAD_USER_INPUT", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "first");
    }
}
