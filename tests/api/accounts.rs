//! Registration, login, sessions and the profile.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, error_code, error_message};

const ME: &str = "{ me { id name email role status emailVerified createdAt } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }";

#[tokio::test]
async fn a_new_user_registers_and_is_logged_in_as_an_unverified_user() {
    let app = TestApp::spawn().await;

    let user = app.register("Ada Lovelace", "  Ada@Example.com ").await;
    let me = app.graphql_as(&user.access_token, ME, json!({})).await;

    assert_eq!(user.email, "ada@example.com");
    assert_eq!(me["data"]["me"]["name"], "Ada Lovelace");
    assert_eq!(me["data"]["me"]["role"], "USER");
    assert_eq!(me["data"]["me"]["status"], "ACTIVE");
    assert_eq!(me["data"]["me"]["emailVerified"], false);
    assert!(user.refresh_token.starts_with("jhr_"));
}

#[tokio::test]
async fn me_is_null_for_an_anonymous_caller() {
    let app = TestApp::spawn().await;

    let body = app.graphql(ME).await;

    assert!(body["data"]["me"].is_null(), "{body}");
    assert!(body.get("errors").is_none());
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let body = app
        .graphql_with(
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "name": "Other", "email": "ADA@example.com", "password": PASSWORD } }),
        )
        .await;

    assert_eq!(error_code(&body), "CONFLICT");
    assert!(error_message(&body).contains("already registered"));
}

#[tokio::test]
async fn a_weak_password_is_refused_naming_the_rule_it_breaks() {
    let app = TestApp::spawn().await;
    let register = |password: &'static str| {
        app.graphql_with(
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "name": "Ada", "email": "ada@example.com", "password": password } }),
        )
    };

    let cases = [
        ("Sh0rt!", "8 characters"),
        ("alllowercase1!", "upper-case"),
        ("ALLUPPERCASE1!", "lower-case"),
        ("NoDigitsHere!", "digit"),
        ("NoSpecials123", "special"),
    ];
    for (password, rule) in cases {
        let body = register(password).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{password}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "password");
        assert!(error_message(&body).contains(rule), "{body}");
    }
    let bad_email = app
        .graphql_with(
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "name": "Ada", "email": "not-an-email", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(bad_email["errors"][0]["extensions"]["field"], "email");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let wrong_password = app.login("ada@example.com", "Wrong-Passw0rd").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;

    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
}

#[tokio::test]
async fn login_refresh_rotation_and_reuse_revoke_the_whole_family() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let login = app.login("ADA@example.com", PASSWORD).await;
    let first_refresh = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(login["data"]["login"]["user"]["role"], "USER");

    let rotated = app
        .graphql_with(REFRESH, json!({ "t": first_refresh }))
        .await;
    let second_refresh = rotated["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_access = rotated["data"]["refreshToken"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        app.graphql_as(&new_access, ME, json!({})).await["data"]["me"]["email"],
        "ada@example.com"
    );

    // The old token again: refused, and the family (including the new token) is revoked.
    let replay = app
        .graphql_with(REFRESH, json!({ "t": first_refresh }))
        .await;
    assert_eq!(error_code(&replay), "UNAUTHENTICATED");
    let after_theft = app
        .graphql_with(REFRESH, json!({ "t": second_refresh }))
        .await;
    assert_eq!(error_code(&after_theft), "UNAUTHENTICATED");

    // Another session of the same user is untouched.
    let other = app.login("ada@example.com", PASSWORD).await;
    let other_refresh = other["data"]["login"]["refreshToken"].as_str().unwrap();
    let still_fine = app
        .graphql_with(REFRESH, json!({ "t": other_refresh }))
        .await;
    assert!(
        still_fine["data"]["refreshToken"]["accessToken"].is_string(),
        "{still_fine}"
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;

    let logout = app
        .graphql_with(
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": user.refresh_token }),
        )
        .await;
    let refresh = app
        .graphql_with(REFRESH, json!({ "t": user.refresh_token }))
        .await;

    assert_eq!(logout["data"]["logout"], true);
    assert_eq!(error_code(&refresh), "UNAUTHENTICATED");
}

#[tokio::test]
async fn logout_ends_the_access_token_at_once_and_only_that_session() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let other = app.login("ada@example.com", crate::helpers::PASSWORD).await;
    let other_token = other["data"]["login"]["accessToken"].as_str().unwrap();
    let me = "{ me { email } }";
    let before = app.graphql_as(&user.access_token, me, json!({})).await;
    assert_eq!(before["data"]["me"]["email"], "ada@example.com");

    app.graphql_with(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": user.refresh_token }),
    )
    .await;
    let after = app.graphql_as(&user.access_token, me, json!({})).await;
    let elsewhere = app.graphql_as(other_token, me, json!({})).await;

    assert_eq!(error_code(&after), "UNAUTHENTICATED", "{after}");
    assert!(error_message(&after).contains("logged out"));
    assert_eq!(
        elsewhere["data"]["me"]["email"], "ada@example.com",
        "the other session goes on"
    );
}

#[tokio::test]
async fn an_access_token_already_verified_is_refused_at_once_when_its_password_changes() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    for _ in 0..2 {
        let me = app.graphql_as(&user.access_token, ME, json!({})).await;
        assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
    }

    let changed = change_password(&app, &user.access_token).await;
    let after = app.graphql_as(&user.access_token, ME, json!({})).await;

    assert_eq!(changed["data"]["changePassword"], true, "{changed}");
    assert_eq!(error_code(&after), "UNAUTHENTICATED", "{after}");
    assert!(
        error_message(&after).contains("password changed"),
        "{after}"
    );
}

#[tokio::test]
async fn an_expired_or_tampered_access_token_is_refused_not_treated_as_anonymous() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let id = joyfull_hub::users::model::UserId(uuid::Uuid::parse_str(&user.id).unwrap());
    let (expired, _) = joyfull_hub::auth::tokens::issue_access_token(
        &app.state.keys,
        id,
        joyfull_hub::users::model::Role::User,
        0,
        uuid::Uuid::now_v7(),
        chrono::Utc::now() - chrono::Duration::hours(2),
        std::time::Duration::from_secs(900),
    )
    .unwrap();
    let mut tampered = user.access_token.clone();
    tampered.insert(tampered.len() - 3, 'x');

    for token in [expired.as_str(), tampered.as_str(), "garbage"] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": ME }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert!(body.get("data").is_none());
    }
    let expired_body = app.graphql_as(&expired, ME, json!({})).await;
    assert!(error_message(&expired_body).contains("expired"));
}

#[tokio::test]
async fn a_suspended_user_cannot_log_in_and_their_tokens_stop_working() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    app.sql("UPDATE users SET status = 'SUSPENDED'").await;

    let login = app.login("ada@example.com", PASSWORD).await;
    let me = app.graphql_as(&user.access_token, ME, json!({})).await;
    let refresh = app
        .graphql_with(REFRESH, json!({ "t": user.refresh_token }))
        .await;

    assert_eq!(error_code(&login), "FORBIDDEN");
    assert_eq!(error_code(&me), "UNAUTHENTICATED");
    assert_eq!(error_code(&refresh), "UNAUTHENTICATED");
}

#[tokio::test]
async fn repeated_failures_are_slowed_then_refused_with_retry_after() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;

    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(error_code(&app.login("ada@example.com", "Wrong-Passw0rd").await).to_owned());
    }
    let refused = app.login("ada@example.com", PASSWORD).await;

    assert!(codes.iter().all(|c| c == "UNAUTHENTICATED"), "{codes:?}");
    assert_eq!(error_code(&refused), "RATE_LIMITED");
    let retry_after = refused["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // Another account from the same address is not locked by this one's failures.
    app.register("Bob", "bob@example.com").await;
    assert!(app.login("bob@example.com", PASSWORD).await["data"]["login"].is_object());
}

#[tokio::test]
async fn failures_after_a_few_are_answered_slowly_but_the_right_password_is_not() {
    let app = TestApp::spawn().await;
    app.register("Ada", "ada@example.com").await;
    for _ in 0..3 {
        app.login("ada@example.com", "Wrong-Passw0rd").await;
    }

    let started = std::time::Instant::now();
    let fourth = app.login("ada@example.com", "Wrong-Passw0rd").await;
    let slowed = started.elapsed();
    let started = std::time::Instant::now();
    let body = app.login("ada@example.com", PASSWORD).await;
    let served = started.elapsed();

    assert_eq!(error_code(&fourth), "UNAUTHENTICATED");
    assert!(
        slowed >= std::time::Duration::from_millis(900),
        "{slowed:?}"
    );
    assert!(
        body["data"]["login"].is_object(),
        "a correct password still works: {body}"
    );
    assert!(
        served < std::time::Duration::from_millis(900),
        "the owner is not made to wait: {served:?}"
    );
}

#[tokio::test]
async fn update_profile_renames_at_once_and_changes_email_only_after_confirmation() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let update =
        "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { name email } }";

    let renamed = app
        .graphql_as(
            &user.access_token,
            update,
            json!({ "input": { "name": "Ada King" } }),
        )
        .await;
    let moved = app
        .graphql_as(
            &user.access_token,
            update,
            json!({ "input": { "email": "countess@example.com", "currentPassword": PASSWORD } }),
        )
        .await;

    assert_eq!(renamed["data"]["updateProfile"]["name"], "Ada King");
    assert_eq!(
        moved["data"]["updateProfile"]["email"], "ada@example.com",
        "unchanged until confirmed"
    );
    let mail = app
        .wait_for_mail("countess@example.com", "Confirm your email")
        .await;
    let token = crate::helpers::token_in(&mail);
    let verified = app
        .graphql_with(
            "mutation($t: String!) { verifyEmail(token: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(verified["data"]["verifyEmail"], true);
    let me = app.graphql_as(&user.access_token, ME, json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "countess@example.com");
    assert_eq!(me["data"]["me"]["emailVerified"], true);
    assert_eq!(
        error_code(&app.login("ada@example.com", PASSWORD).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn profile_changes_need_a_logged_in_caller() {
    let app = TestApp::spawn().await;

    let body = app
        .graphql_with(
            "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { name } }",
            json!({ "input": { "name": "X" } }),
        )
        .await;

    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn one_address_cannot_create_accounts_without_limit() {
    let app = TestApp::spawn().await;
    let register = |n: usize| {
        app.graphql_with(
            "mutation($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "name": "Bot", "email": format!("bot{n}@example.com"), "password": PASSWORD } }),
        )
    };
    // Twenty accounts from one address in an hour are fine (the last ten a little slower)…
    app.sql("INSERT INTO login_throttle (key, failures, window_started_at) VALUES ('register:127.0.0.1', 19, now())")
        .await;
    let twentieth = register(20).await;
    let refused = register(21).await;

    assert!(
        twentieth["data"]["register"]["accessToken"].is_string(),
        "{twentieth}"
    );
    assert_eq!(error_code(&refused), "RATE_LIMITED");
    assert!(
        refused["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_beyond_capacity_is_refused_at_once_not_queued() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(|config| {
            config.auth.max_concurrent_hashes = 1;
            config.auth.max_hash_wait = std::time::Duration::from_millis(30);
        })
        .await,
    );
    app.register("Ada", "ada@example.com").await;

    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let body = app.login("ada@example.com", PASSWORD).await;
                (body, started.elapsed())
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for attempt in attempts {
        let (body, took) = attempt.await.unwrap();
        if body["data"]["login"]["accessToken"].is_string() {
            accepted += 1;
        } else {
            assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
            assert!(
                body["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1),
                "{body}"
            );
            assert!(
                took < std::time::Duration::from_millis(500),
                "refused after {took:?}"
            );
            refused += 1;
        }
    }
    assert!(accepted >= 1, "the storm's first logins are served");
    assert!(refused >= 1, "logins beyond the wait budget are shed");
    // Shed logins are not failed attempts: the account is not throttled afterwards.
    assert!(app.login("ada@example.com", PASSWORD).await["data"]["login"].is_object());
}

#[tokio::test]
async fn a_session_ends_at_its_maximum_age_however_often_it_is_refreshed() {
    let app = TestApp::spawn_with(|c| {
        c.auth.refresh_family_lifetime = std::time::Duration::from_secs(2);
    })
    .await;
    let user = app.register("Ada", "ada@example.com").await;

    let first = app
        .graphql_with(REFRESH, json!({ "t": user.refresh_token }))
        .await;
    let token = first["data"]["refreshToken"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let too_old = app.graphql_with(REFRESH, json!({ "t": token })).await;
    let login = app.login("ada@example.com", crate::helpers::PASSWORD).await;

    assert_eq!(error_code(&too_old), "UNAUTHENTICATED", "{too_old}");
    assert!(error_message(&too_old).contains("maximum age"));
    assert!(
        login["data"]["login"]["refreshToken"].is_string(),
        "a new login starts a new session: {login}"
    );
}

/// Changes the password of the token's account from [`PASSWORD`] to another.
async fn change_password(app: &TestApp, access_token: &str) -> serde_json::Value {
    app.graphql_as(
        access_token,
        "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }",
        json!({ "c": PASSWORD, "n": "An0ther-long-passphrase" }),
    )
    .await
}

const CHANGE_EMAIL: &str = "mutation($e: String!, $p: String) { updateProfile(input: {email: $e, currentPassword: $p}) { email } }";
/// Asks (with the password) to move the user's login to `to`; the confirmation mail it sends there.
async fn pending_email_change(app: &TestApp, user: &crate::helpers::TestUser, to: &str) -> String {
    let asked = app
        .graphql_as(
            &user.access_token,
            CHANGE_EMAIL,
            json!({ "e": to, "p": PASSWORD }),
        )
        .await;
    assert!(asked.get("errors").is_none(), "{asked}");
    app.wait_for_mail(to, "Confirm your email").await
}

const CANCEL_CHANGE: &str = "mutation($t: String!) { cancelEmailChange(token: $t) }";
const VERIFY_EMAIL: &str = "mutation($t: String!) { verifyEmail(token: $t) }";

#[tokio::test]
async fn an_email_change_needs_the_current_password_and_tells_the_old_address() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let change = |password: Option<&str>| {
        app.graphql_as(
            &user.access_token,
            CHANGE_EMAIL,
            json!({ "e": "new@example.com", "p": password }),
        )
    };

    let without = change(None).await;
    let wrong = change(Some("not-the-password-1")).await;
    let right = change(Some(PASSWORD)).await;
    let notice = app
        .wait_for_mail(
            "ada@example.com",
            "Your Joyfull Hub email address is being changed",
        )
        .await;

    for refused in [&without, &wrong] {
        assert_eq!(error_code(refused), "BAD_USER_INPUT", "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"],
            "currentPassword"
        );
    }
    assert_eq!(
        right["data"]["updateProfile"]["email"], "ada@example.com",
        "{right}"
    );
    assert!(notice.contains("/cancel-email-change?token="), "{notice}");
    assert!(
        !notice.contains("new@example.com"),
        "the notice masks the new address"
    );
}

#[tokio::test]
async fn the_old_address_undoes_a_confirmed_change_and_signs_everyone_out() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let confirm = pending_email_change(&app, &user, "thief@example.com").await;
    let notice = app
        .wait_for_mail(
            "ada@example.com",
            "Your Joyfull Hub email address is being changed",
        )
        .await;
    let confirmed = app
        .graphql_with(
            VERIFY_EMAIL,
            json!({ "t": crate::helpers::token_in(&confirm) }),
        )
        .await;
    assert_eq!(confirmed["data"]["verifyEmail"], true);
    // The confirmed change is a security notice, recorded with it.
    assert_eq!(
        app.sql_text(&format!(
            "SELECT payload->>'newEmail' AS t FROM outbox_events WHERE kind = 'email.changed' AND user_id = '{}'",
            user.id
        ))
        .await,
        "thief@example.com"
    );

    let cancelled = app
        .graphql_with(
            CANCEL_CHANGE,
            json!({ "t": crate::helpers::token_in(&notice) }),
        )
        .await;
    let again = app
        .graphql_with(
            CANCEL_CHANGE,
            json!({ "t": crate::helpers::token_in(&notice) }),
        )
        .await;
    let old_session = app.graphql_as(&user.access_token, ME, json!({})).await;
    let old_refresh = app
        .graphql_with(REFRESH, json!({ "t": user.refresh_token }))
        .await;
    let back = app.login("ada@example.com", PASSWORD).await;
    let thief = app.login("thief@example.com", PASSWORD).await;

    assert_eq!(cancelled["data"]["cancelEmailChange"], true, "{cancelled}");
    assert_eq!(error_code(&again), "BAD_USER_INPUT");
    assert_eq!(error_code(&old_session), "UNAUTHENTICATED");
    assert_eq!(error_code(&old_refresh), "UNAUTHENTICATED");
    assert!(back["data"]["login"]["accessToken"].is_string(), "{back}");
    assert_eq!(error_code(&thief), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_password_change_ends_a_pending_email_change() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let confirm = pending_email_change(&app, &user, "new@example.com").await;

    let changed = change_password(&app, &user.access_token).await;
    let late = app
        .graphql_with(
            VERIFY_EMAIL,
            json!({ "t": crate::helpers::token_in(&confirm) }),
        )
        .await;

    assert_eq!(changed["data"]["changePassword"], true, "{changed}");
    assert_eq!(error_code(&late), "BAD_USER_INPUT", "{late}");
    assert_eq!(
        app.sql_text("SELECT email AS t FROM users").await,
        "ada@example.com"
    );
}

#[tokio::test]
async fn a_password_reset_ends_a_pending_email_change() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let confirm = pending_email_change(&app, &user, "new@example.com").await;
    app.graphql_with(
        "mutation($e: String!) { requestPasswordReset(email: $e) }",
        json!({ "e": "ada@example.com" }),
    )
    .await;
    let reset = app.wait_for_mail("ada@example.com", "Reset your").await;

    let done = app
        .graphql_with(
            "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
            json!({ "t": crate::helpers::token_in(&reset), "p": "An0ther-long-passphrase" }),
        )
        .await;
    let late = app
        .graphql_with(
            VERIFY_EMAIL,
            json!({ "t": crate::helpers::token_in(&confirm) }),
        )
        .await;

    assert_eq!(done["data"]["resetPassword"], true, "{done}");
    assert_eq!(error_code(&late), "BAD_USER_INPUT", "{late}");
}
