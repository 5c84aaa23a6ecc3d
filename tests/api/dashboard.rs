//! The reference dashboard at `/app`, driven in headless Chromium against a real hub and PostgreSQL:
//! the whole journey from signing up to a streamed answer and the usage chart, a live usage event, an
//! expired access token refreshed silently, and a suspended user's open page losing access. Each view's
//! screenshot is written under the tests' target directory (`dashboard-screenshots/`).

use std::time::Duration;

use joyfull_hub::http::dashboard::{CONTENT_SECURITY_POLICY, FILES};
use serde_json::json;

use crate::helpers::upstream::Upstream;
use crate::helpers::webdriver::Browser;
use crate::helpers::{PASSWORD, TestApp, token_in};

/// Signs in on the page's sign-in form.
async fn sign_in(browser: &Browser, email: &str, password: &str) {
    browser.type_into("input[name=email]", email).await;
    browser.type_into("input[name=password]", password).await;
    browser.click("Sign in").await;
}

/// A query sent as a script would, with an API key: the status and the body.
async fn query_with_key(app: &TestApp, key: &str, query: &str) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", key)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn assert_no_problems(browser: &Browser, view: &str) {
    let problems = browser.accessibility_problems().await;
    assert!(problems.is_empty(), "{view}: {problems:#?}");
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_under_a_strict_policy_and_can_be_turned_off() {
    let app = TestApp::spawn().await;
    for file in FILES {
        let response = app.get(&format!("/app/{}", file.path)).await;
        assert_eq!(response.status(), 200, "{}", file.path);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("content-type").as_deref(), Some(file.media_type));
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        // Nothing is loaded from elsewhere: the only absolute address is SVG's namespace.
        let body = response.text().await.unwrap();
        let body = body.replace("http://www.w3.org/2000/svg", "");
        let elsewhere =
            body.contains("http://") || body.contains("https://") || body.contains("\"//");
        assert!(!elsewhere, "{} names another origin", file.path);
    }
    assert_eq!(app.get("/app/").await.status(), 200);
    let missing = app.get("/app/nothing.js").await;
    assert_eq!(missing.status(), 404);
    let missing: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(missing["errors"][0]["extensions"]["code"], "NOT_FOUND");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = client
        .get(app.url("/verify-email?token=abc123"))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 303);
    assert_eq!(
        link.headers()["location"].to_str().unwrap(),
        "/app/#/verify?token=abc123"
    );
    let odd = client
        .get(app.url("/verify-email?token=abc(def)"))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 400);
    let odd: serde_json::Value = odd.json().await.unwrap();
    assert_eq!(odd["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    let off = TestApp::spawn_with(|config| config.dashboard = false).await;
    assert_eq!(off.get("/app/").await.status(), 404);
    assert_eq!(off.get("/verify-email?token=abc").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_verifies_streams_an_answer_and_sees_the_usage_chart() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let root = app.admin("root@example.com").await;
    app.create_tool(
        &root,
        json!({ "name": "Story streamer", "description": "Writes as it thinks",
                "endpoint": upstream.url("/sse-slow"), "streams": true }),
    )
    .await;
    app.create_tool(
        &root,
        json!({ "name": "Echo", "description": "Answers at once", "endpoint": upstream.url("/ten") }),
    )
    .await;
    let browser = Browser::start().await;
    let password = "Corr3ct-Horse-Battery!";

    browser.open(&app.url("/app/")).await;
    browser.click("Create an account").await;
    browser.type_into("input[name=name]", "Grace").await;
    browser
        .type_into("input[name=email]", "grace@example.com")
        .await;
    browser.type_into("input[name=password]", password).await;
    browser.click("Create the account").await;
    browser.wait_for("p.notice", "We mailed you a link").await;
    browser.click("Choose Free").await;
    browser.wait_for("p.ok", "Your plan").await;
    // Upgrading (the manual payment provider of development approves at once), cancelling, keeping.
    browser.click("Choose Pro").await;
    browser.wait_for("p", "You are on the Pro plan").await;
    browser.click("Cancel at the end of the period").await;
    browser
        .wait_for("p", "It ends at the end of the period.")
        .await;
    browser.click("Keep it").await;
    browser
        .wait_for("button", "Cancel at the end of the period")
        .await;
    assert_no_problems(&browser, "plan").await;
    browser.screenshot("plan").await;

    // The link in the mail opens the page (a new page: the session stayed in the other one's memory).
    let mail = app
        .wait_for_mail("grace@example.com", "Confirm your email")
        .await;
    browser
        .open(&app.url(&format!("/verify-email?token={}", token_in(&mail))))
        .await;
    browser
        .wait_for("p.ok", "Your email address is verified.")
        .await;
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM users WHERE email_verified_at IS NOT NULL AND email = 'grace@example.com'")
            .await,
        1
    );
    browser.click("Sign in").await;
    sign_in(&browser, "grace@example.com", password).await;

    // The catalogue, searched; the streaming tool's answer arrives in pieces and is metered.
    browser.wait_for("p[role=status]", "2 tools").await;
    browser.type_into("input[type=search]", "stream").await;
    browser.wait_for("p[role=status]", "1 tool").await;
    browser.click("Use Story streamer").await;
    browser
        .type_into("textarea[name=prompt]", "Tell me a story")
        .await;
    browser.click("Invoke").await;
    // The first pieces are on the page while the upstream is still writing (a piece every 100 ms).
    let partial = browser
        .run(
            "return new Promise(done => { const check = () => { const text = document.querySelector('pre.output').textContent; \
             if (text.startsWith('Hello')) done({ text, outcome: document.querySelectorAll('p[role=status]')[1].textContent }); \
             else setTimeout(check, 10); }; check(); })",
            json!([]),
        )
        .await;
    assert_eq!(partial["outcome"], "", "no outcome yet: {partial}");
    let outcome = browser.wait_for("p[role=status]", "SUCCESS").await;
    assert!(outcome.contains("tokens"), "{outcome}");
    let answer = browser
        .run(
            "return document.querySelector('pre.output').textContent",
            json!([]),
        )
        .await;
    assert!(
        !answer.as_str().unwrap_or_default().is_empty(),
        "the streamed text is shown"
    );
    assert_no_problems(&browser, "tools").await;
    browser.screenshot("tools").await;
    assert_eq!(
        app.sql_number("SELECT count(*) AS n FROM usage_events WHERE status = 'SUCCESS'")
            .await,
        1
    );

    // The usage view: totals, a bar for today in the chart, the tool in the tables.
    browser.click("Usage").await;
    browser.wait_for("h2", "Tokens per day").await;
    let bars = browser
        .run(
            "return [...document.querySelectorAll('svg.chart rect[data-day]')].map(r => Number(r.dataset.tokens) > 0)",
            json!([]),
        )
        .await;
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), 30, "a bar for each of 30 days");
    assert_eq!(
        bars.iter().filter(|b| **b == json!(true)).count(),
        1,
        "one day with tokens"
    );
    assert_eq!(bars.last(), Some(&json!(true)), "today's");
    browser
        .wait_for("svg.chart rect[data-tool] title", "Story streamer")
        .await;
    browser.wait_for("#latest td", "Story streamer").await;
    assert_no_problems(&browser, "usage").await;
    browser.screenshot("usage").await;
    // On a phone-sized screen too.
    browser.resize(390, 844).await;
    assert_no_problems(&browser, "usage on a phone").await;
    browser.screenshot("usage-phone").await;
    browser.resize(1100, 900).await;

    // An API key, shown once.
    browser.click("API keys").await;
    browser.type_into("input[name=name]", "script").await;
    browser
        .run(
            "document.querySelector('input[name=\"scope-INVOKE\"]').click()",
            json!([]),
        )
        .await;
    browser.click("Create the key").await;
    browser.wait_for("p", "Copy the key now").await;
    let key = browser
        .run("return document.getElementById('new-key').value", json!([]))
        .await;
    let key = key.as_str().unwrap().to_owned();
    assert!(key.len() > 20, "{key}");
    browser.wait_for("td", "INVOKE").await;
    assert_no_problems(&browser, "keys").await;
    browser.screenshot("keys").await;
    // The key holds the scope chosen (INVOKE, not READ), and nothing once revoked.
    let (status, body) = query_with_key(&app, &key, "{ me { email } }").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    browser.click("Revoke script").await;
    browser.wait_for("td", "revoked").await;
    let (status, _) = query_with_key(&app, &key, "{ __typename }").await;
    assert_eq!(status, 401, "a revoked key is refused");

    browser.click("Notifications").await;
    browser.wait_for("h2", "Preferences").await;
    assert_no_problems(&browser, "notifications").await;
    browser.screenshot("notifications").await;

    browser.click("Sign out").await;
    browser.wait_for("button", "Sign in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_usage_event_appears_and_an_expired_access_token_is_refreshed_silently() {
    let app =
        TestApp::spawn_with(|config| config.auth.access_token_ttl = Duration::from_secs(2)).await;
    let upstream = Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/ten")).await;
    let key = app.api_key(&catalogue.user.access_token).await;
    let browser = Browser::start().await;
    browser.open(&app.url("/app/#/login")).await;
    sign_in(&browser, "ada@example.com", PASSWORD).await;
    browser.click("Usage").await;
    browser.wait_for("p[role=status]", "Live").await;

    // A call made elsewhere (a script with a key) appears without a reload.
    let body = app.invoke(&key, &catalogue.tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    browser.wait_for("#latest td", "Echo").await;

    // The access token expires: the hub closes the live socket, the page refreshes its tokens and
    // reconnects, and the next call appears too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body = app.invoke(&key, &catalogue.tool, json!({}), None).await;
    assert!(body["errors"].is_null(), "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = browser
            .run(
                "return document.querySelectorAll('#latest tbody tr').length",
                json!([]),
            )
            .await;
        if rows == json!(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second call did not appear: {rows}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Requests over HTTP with the expired token are refreshed silently too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    browser.click("Plan").await;
    browser.wait_for("p", "You are on the").await;
    let url = browser.run("return location.hash", json!([])).await;
    assert_eq!(url, json!("#/plan"), "still signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_suspends_a_user_whose_open_page_then_loses_access() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    app.catalogue(upstream.url("/ten")).await;
    let (admin, ada) = tokio::join!(Browser::start(), Browser::start());
    for (browser, email) in [(&admin, "root@example.com"), (&ada, "ada@example.com")] {
        browser.open(&app.url("/app/#/login")).await;
        sign_in(browser, email, PASSWORD).await;
        browser.wait_for("p[role=status]", "tool").await;
    }

    // Ada's page is open on her usage, with its live feed.
    ada.click("Usage").await;
    ada.wait_for("p[role=status]", "Live").await;
    // The administrator's page: statistics, users, tools; Ada is suspended from it.
    admin.click("Admin").await;
    admin.wait_for("td", "ada@example.com").await;
    assert_no_problems(&admin, "admin").await;
    admin.screenshot("admin").await;
    admin.click("Suspend Ada").await;
    admin.wait_for("button", "Reactivate Ada").await;
    assert_eq!(
        app.sql_text("SELECT status AS t FROM users WHERE email = 'ada@example.com'")
            .await,
        "SUSPENDED"
    );

    // The hub ends her live feed within moments; her tokens no longer refresh, so the page says why
    // in the hub's words and leaves her signed out.
    let notice = ada
        .wait_for(
            "p.notice",
            "These credentials no longer allow this connection.",
        )
        .await;
    assert!(notice.ends_with("Sign in again."), "{notice}");
    let url = ada.run("return location.hash", json!([])).await;
    assert_eq!(url, json!("#/login"));
    let links = ada
        .run(
            "return [...document.querySelectorAll('nav a')].map(a => a.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        links,
        json!(["Sign in", "Create an account"]),
        "nothing of Ada's is left"
    );

    // Signing in again is refused with the hub's own message.
    sign_in(&ada, "ada@example.com", PASSWORD).await;
    ada.wait_for("p.error", "This account is suspended.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_the_hub_is_shown_as_text_never_run_as_markup() {
    let app = TestApp::spawn().await;
    let upstream = Upstream::start().await;
    let catalogue = app.catalogue(upstream.url("/ten")).await;
    let hostile = r#"<img src=x onerror="document.title='owned'">"#;
    app.create_tool(
        &catalogue.root,
        json!({ "name": hostile, "description": "<script>document.title='owned'</script>",
                "endpoint": upstream.url("/ten") }),
    )
    .await;
    let browser = Browser::start().await;
    browser.open(&app.url("/app/#/login")).await;
    sign_in(&browser, "ada@example.com", PASSWORD).await;
    browser.wait_for("p[role=status]", "2 tools").await;
    browser.wait_for("li.card h3", hostile).await;
    let planted = browser
        .run(
            "return { images: document.querySelectorAll('main img').length, \
                      scripts: document.querySelectorAll('main script').length, title: document.title }",
            json!([]),
        )
        .await;
    assert_eq!(planted["images"], 0, "{planted}");
    assert_eq!(planted["scripts"], 0, "{planted}");
    assert_eq!(planted["title"], "Tools · Joyfull Hub", "{planted}");
}
