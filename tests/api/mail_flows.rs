//! Email verification and password reset, read from the mailed `.eml` files.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, error_code, error_message, token_in};

const VERIFY: &str = "mutation($t: String!) { verifyEmail(token: $t) }";
const RESET: &str =
    "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }";
const REQUEST_RESET: &str = "mutation($e: String!) { requestPasswordReset(email: $e) }";
const NEW_PASSWORD: &str = "N3w-Passw0rd!";

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_once() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let mail = app
        .wait_for_mail("ada@example.com", "Confirm your email")
        .await;
    assert!(mail.contains("Content-Type: text/plain"));
    assert!(mail.contains("Content-Type: text/html"));
    assert!(mail.contains("Hello Ada"));
    let token = token_in(&mail);
    assert_eq!(token.len(), 64);

    let first = app.graphql_with(VERIFY, json!({ "t": token })).await;
    let again = app.graphql_with(VERIFY, json!({ "t": token })).await;
    let bogus = app
        .graphql_with(VERIFY, json!({ "t": "0".repeat(64) }))
        .await;

    assert_eq!(first["data"]["verifyEmail"], true);
    assert_eq!(error_code(&again), "BAD_USER_INPUT");
    assert_eq!(again["errors"][0]["extensions"]["field"], "token");
    assert_eq!(error_code(&bogus), "BAD_USER_INPUT");
    let me = app
        .graphql_as(&user.access_token, "{ me { emailVerified } }", json!({}))
        .await;
    assert_eq!(me["data"]["me"]["emailVerified"], true);
}

#[tokio::test]
async fn a_password_reset_by_mail_ends_old_passwords_and_sessions() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let asked = app
        .graphql_with(REQUEST_RESET, json!({ "e": "ADA@example.com" }))
        .await;
    assert_eq!(asked["data"]["requestPasswordReset"], true);
    let mail = app.wait_for_mail("ada@example.com", "Reset your").await;
    assert!(mail.contains("24 hours"));
    let token = token_in(&mail);

    let weak = app
        .graphql_with(RESET, json!({ "t": token, "p": "weak" }))
        .await;
    assert_eq!(error_code(&weak), "BAD_USER_INPUT");
    assert_eq!(weak["errors"][0]["extensions"]["field"], "newPassword");

    let reset = app
        .graphql_with(RESET, json!({ "t": token, "p": NEW_PASSWORD }))
        .await;
    assert_eq!(reset["data"]["resetPassword"], true);

    assert_eq!(
        error_code(&app.login("ada@example.com", PASSWORD).await),
        "UNAUTHENTICATED"
    );
    assert!(app.login("ada@example.com", NEW_PASSWORD).await["data"]["login"].is_object());
    let old_refresh = app
        .graphql_with(
            "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }",
            json!({ "t": user.refresh_token }),
        )
        .await;
    assert_eq!(error_code(&old_refresh), "UNAUTHENTICATED");
    let old_access = app
        .graphql_as(&user.access_token, "{ me { id } }", json!({}))
        .await;
    assert_eq!(error_code(&old_access), "UNAUTHENTICATED");
    let reused = app
        .graphql_with(RESET, json!({ "t": token, "p": "An0ther-Passw0rd!" }))
        .await;
    assert_eq!(error_code(&reused), "BAD_USER_INPUT", "the link works once");
}

#[tokio::test]
async fn asking_for_a_reset_reveals_nothing_about_unknown_addresses() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let unknown = app
        .graphql_with(REQUEST_RESET, json!({ "e": "nobody@example.com" }))
        .await;
    let malformed = app
        .graphql_with(REQUEST_RESET, json!({ "e": "not an email" }))
        .await;
    let known = app
        .graphql_with(REQUEST_RESET, json!({ "e": "ada@example.com" }))
        .await;

    assert_eq!(unknown, known);
    assert_eq!(malformed, known);
    app.wait_for_mail("ada@example.com", "Reset your").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        app.mails()
            .iter()
            .all(|m| !m.contains("nobody@example.com"))
    );
}

#[tokio::test]
async fn an_expired_reset_token_is_refused() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;
    app.graphql_with(REQUEST_RESET, json!({ "e": "ada@example.com" }))
        .await;
    let token = token_in(&app.wait_for_mail("ada@example.com", "Reset your").await);
    app.sql("UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE purpose = 'RESET_PASSWORD'")
        .await;

    let body = app
        .graphql_with(RESET, json!({ "t": token, "p": NEW_PASSWORD }))
        .await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(app.login("ada@example.com", PASSWORD).await["data"]["login"].is_object());
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let change = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";

    let wrong = app
        .graphql_as(
            &user.access_token,
            change,
            json!({ "c": "Wrong-Passw0rd", "n": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(wrong["errors"][0]["extensions"]["field"], "currentPassword");

    let changed = app
        .graphql_as(
            &user.access_token,
            change,
            json!({ "c": PASSWORD, "n": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(changed["data"]["changePassword"], true);

    let refresh = app
        .graphql_with(
            "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }",
            json!({ "t": user.refresh_token }),
        )
        .await;
    assert_eq!(error_code(&refresh), "UNAUTHENTICATED");
    assert_eq!(
        error_code(&app.login("ada@example.com", PASSWORD).await),
        "UNAUTHENTICATED"
    );
    let fresh = app.login("ada@example.com", NEW_PASSWORD).await;
    let token = fresh["data"]["login"]["accessToken"].as_str().unwrap();
    assert!(app.graphql_as(token, "{ me { id } }", json!({})).await["data"]["me"].is_object());
}

#[tokio::test]
async fn with_verified_email_required_an_unverified_account_signs_in_but_cannot_invoke_or_make_keys()
 {
    let app = TestApp::spawn_with(|c| c.require_verified_email = true).await;
    let user = app.register("Ada", "ada@example.com").await;
    let create_key = "mutation { createApiKey(input: {name: \"ci\"}) { key } }";

    let me = app
        .graphql_as(&user.access_token, "{ me { emailVerified } }", json!({}))
        .await;
    let key_before = app
        .graphql_as(&user.access_token, create_key, json!({}))
        .await;
    let invoke_before = app
        .invoke(
            &user.access_token,
            &uuid::Uuid::new_v4().to_string(),
            json!({}),
            None,
        )
        .await;
    let mail = app
        .wait_for_mail("ada@example.com", "Confirm your email")
        .await;
    let verified = app
        .graphql_with(VERIFY, json!({ "t": token_in(&mail) }))
        .await;
    let key_after = app
        .graphql_as(&user.access_token, create_key, json!({}))
        .await;
    let invoke_after = app
        .invoke(
            &user.access_token,
            &uuid::Uuid::new_v4().to_string(),
            json!({}),
            None,
        )
        .await;

    assert_eq!(me["data"]["me"]["emailVerified"], false, "{me}");
    for refused in [&key_before, &invoke_before] {
        assert_eq!(error_code(refused), "FORBIDDEN", "{refused}");
        assert!(error_message(refused).contains("Verify your email address"));
    }
    assert_eq!(verified["data"]["verifyEmail"], true);
    assert!(
        key_after["data"]["createApiKey"]["key"].is_string(),
        "{key_after}"
    );
    assert_eq!(
        error_code(&invoke_after),
        "NOT_FOUND",
        "past the email rule, the unknown tool is what stops it"
    );
}
