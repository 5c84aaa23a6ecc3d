//! API-key scopes: a key does what its scopes allow and no more, never creates a key with more, and the
//! account's login (email, password) and the admin scope take a signed-in session.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, error_message};

const CREATE: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { id scopes } } }";

async fn create_key(app: &TestApp, token: &str, scopes: Option<&[&str]>) -> Value {
    let mut input = json!({ "name": "script" });
    if let Some(scopes) = scopes {
        input["scopes"] = json!(scopes);
    }
    app.graphql_as(token, CREATE, json!({ "input": input }))
        .await
}

fn secret(created: &Value) -> String {
    created["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {created}"))
        .to_owned()
}

fn refused_for_scope(body: &Value, scope: &str) {
    assert_eq!(error_code(body), "FORBIDDEN", "{body}");
    let message = error_message(body);
    assert!(message.contains(scope), "{message}");
}

async fn registered(app: &TestApp) -> TestUser {
    app.register("Ada", "ada@example.com").await
}

#[tokio::test]
async fn a_default_key_invokes_and_reads_but_cannot_manage_the_account() {
    let app = TestApp::spawn().await;
    let user = registered(&app).await;

    let created = create_key(&app, &user.access_token, None).await;
    let key = secret(&created);

    assert_eq!(
        created["data"]["createApiKey"]["apiKey"]["scopes"],
        json!(["INVOKE", "READ"])
    );
    let me = app
        .graphql_as(&key, "{ me { email apiKeys { scopes } } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
    refused_for_scope(&create_key(&app, &key, Some(&["READ"])).await, "MANAGE");
    let rename = app
        .graphql_as(
            &key,
            "mutation { updateProfile(input: {name: \"Eve\"}) { name } }",
            json!({}),
        )
        .await;
    refused_for_scope(&rename, "MANAGE");
    let subscribe = app
        .graphql_as(
            &key,
            "mutation { subscribe(tier: PRO) { status } }",
            json!({}),
        )
        .await;
    refused_for_scope(&subscribe, "MANAGE");
    let revoke = app
        .graphql_as(
            &key,
            "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
            json!({ "id": created["data"]["createApiKey"]["apiKey"]["id"] }),
        )
        .await;
    refused_for_scope(&revoke, "MANAGE");
}

#[tokio::test]
async fn a_key_without_read_cannot_read_and_one_without_invoke_cannot_invoke() {
    let app = TestApp::spawn().await;
    let user = registered(&app).await;
    let invoke_only = secret(&create_key(&app, &user.access_token, Some(&["INVOKE"])).await);
    let read_only = secret(&create_key(&app, &user.access_token, Some(&["READ"])).await);

    let me = app
        .graphql_as(&invoke_only, "{ me { email } }", json!({}))
        .await;
    let usage = app
        .graphql_as(&invoke_only, "{ usage { totalCount } }", json!({}))
        .await;
    let invoke = app
        .invoke(
            &read_only,
            &uuid::Uuid::new_v4().to_string(),
            json!({}),
            None,
        )
        .await;

    refused_for_scope(&me, "READ");
    refused_for_scope(&usage, "READ");
    refused_for_scope(&invoke, "INVOKE");
    let empty = create_key(&app, &user.access_token, Some(&[])).await;
    assert_eq!(error_code(&empty), "BAD_USER_INPUT", "{empty}");
}

#[tokio::test]
async fn a_key_never_creates_a_key_with_more_than_it_has_nor_changes_the_login() {
    let app = TestApp::spawn().await;
    let user = registered(&app).await;
    let manager = secret(&create_key(&app, &user.access_token, Some(&["READ", "MANAGE"])).await);

    let narrower = create_key(&app, &manager, Some(&["READ"])).await;
    let wider = create_key(&app, &manager, Some(&["READ", "INVOKE"])).await;
    let default = create_key(&app, &manager, None).await;
    let rename = app
        .graphql_as(
            &manager,
            "mutation { updateProfile(input: {name: \"Ada L.\"}) { name } }",
            json!({}),
        )
        .await;
    let email = app
        .graphql_as(
            &manager,
            "mutation { updateProfile(input: {email: \"thief@example.com\"}) { name } }",
            json!({}),
        )
        .await;
    let password = app
        .graphql_as(
            &manager,
            "mutation { changePassword(currentPassword: \"correct horse battery staple\", newPassword: \"another long passphrase\") }",
            json!({}),
        )
        .await;

    assert_eq!(
        narrower["data"]["createApiKey"]["apiKey"]["scopes"],
        json!(["READ"]),
        "{narrower}"
    );
    refused_for_scope(&wider, "INVOKE");
    refused_for_scope(&default, "INVOKE");
    assert_eq!(
        rename["data"]["updateProfile"]["name"], "Ada L.",
        "{rename}"
    );
    for body in [&email, &password] {
        assert_eq!(error_code(body), "FORBIDDEN", "{body}");
        assert!(error_message(body).contains("signed-in session"));
    }
    assert_eq!(
        app.sql_text("SELECT email AS t FROM users").await,
        "ada@example.com"
    );
}

#[tokio::test]
async fn the_admin_scope_takes_an_administrators_session() {
    let app = TestApp::spawn().await;
    let user = registered(&app).await;
    let admin = app.admin("root@example.com").await;
    let stats = "{ admin { users(first: 5) { totalCount } } }";

    let by_user = create_key(&app, &user.access_token, Some(&["READ", "ADMIN"])).await;
    let admin_reader =
        secret(&create_key(&app, &admin.access_token, Some(&["READ", "MANAGE"])).await);
    let admin_key = secret(
        &create_key(
            &app,
            &admin.access_token,
            Some(&["READ", "MANAGE", "ADMIN"]),
        )
        .await,
    );
    let without_scope = app.graphql_as(&admin_reader, stats, json!({})).await;
    let with_scope = app.graphql_as(&admin_key, stats, json!({})).await;
    let key_makes_admin_key = create_key(&app, &admin_key, Some(&["ADMIN"])).await;
    let other_user_by_scopeless_key = app
        .graphql_as(
            &admin_reader,
            "query($id: ID!) { admin { user(id: $id) { email } } }",
            json!({ "id": user.id }),
        )
        .await;

    assert_eq!(error_code(&by_user), "FORBIDDEN", "{by_user}");
    refused_for_scope(&without_scope, "ADMIN");
    assert!(
        with_scope["data"]["admin"]["users"]["totalCount"]
            .as_i64()
            .unwrap()
            >= 2,
        "{with_scope}"
    );
    assert_eq!(error_code(&key_makes_admin_key), "FORBIDDEN");
    assert!(error_message(&key_makes_admin_key).contains("signed-in session"));
    refused_for_scope(&other_user_by_scopeless_key, "ADMIN");
}
