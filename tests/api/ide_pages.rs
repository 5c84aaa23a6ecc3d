//! The GraphiQL and Playground pages: pinned production builds with integrity hashes, from a CDN or a
//! mirror, rendered by a real browser; the subscription URL and the credentials hint are on the page.

use std::collections::HashMap;

use joyfull_hub::http::ide::{Asset, DEFAULT_QUERY, GRAPHIQL_ASSETS, PLAYGROUND_ASSETS};
use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::browser::{Mirror, npm_package, rendered_dom};

async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(app.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET a page");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

fn assert_pinned(html: &str, assets: &[Asset], base: &str) {
    for asset in assets {
        let tag_start = format!(
            "\"{}\" integrity=\"{}\" crossorigin=\"anonymous\"",
            asset.url(base),
            asset.integrity
        );
        assert!(
            html.contains(&tag_start),
            "{} is not pinned in:\n{html}",
            asset.file
        );
        assert!(
            asset.version.split('.').count() == 3 && asset.integrity.starts_with("sha384-"),
            "{}: an exact version and a sha384 hash",
            asset.package
        );
        assert!(
            !asset.file.contains("development"),
            "{}: a production build",
            asset.file
        );
    }
    assert!(!html.contains("development.js"), "{html}");
    assert!(!html.contains("unpkg.com"), "{html}");
}

#[tokio::test]
async fn both_pages_pin_exact_production_builds_with_integrity_hashes_from_the_cdn() {
    let app = TestApp::spawn().await;

    let (status, graphiql) = page(&app, "/graphql").await;
    assert_eq!(status, 200);
    assert_pinned(&graphiql, &GRAPHIQL_ASSETS, "https://cdn.jsdelivr.net/npm");
    assert!(
        graphiql.contains(r#"new URL("/graphql/ws", location.href)"#),
        "{graphiql}"
    );
    assert!(
        graphiql.contains("subscriptionUrl: ws.toString()"),
        "{graphiql}"
    );
    assert!(
        graphiql.contains(r#"{\"Authorization\": \"Bearer \u003caccessToken or API key>\"}"#),
        "{graphiql}"
    );

    let (status, playground) = page(&app, "/playground").await;
    assert_eq!(status, 200);
    assert_pinned(
        &playground,
        &PLAYGROUND_ASSETS,
        "https://cdn.jsdelivr.net/npm",
    );
    assert!(
        playground.contains(r#""subscriptionEndpoint":"/graphql/ws""#),
        "{playground}"
    );
}

#[tokio::test]
async fn a_mirror_serves_every_asset_when_configured() {
    let app = TestApp::spawn_with(|config| {
        config.ide_assets_url = "http://127.0.0.1:9/npm".to_owned();
    })
    .await;
    let (_, graphiql) = page(&app, "/graphql").await;
    let (_, playground) = page(&app, "/playground").await;
    assert_pinned(&graphiql, &GRAPHIQL_ASSETS, "http://127.0.0.1:9/npm");
    assert_pinned(&playground, &PLAYGROUND_ASSETS, "http://127.0.0.1:9/npm");
    assert!(!graphiql.contains("jsdelivr") && !playground.contains("jsdelivr"));
}

#[tokio::test]
async fn the_pages_stay_off_without_introspection() {
    let app = TestApp::spawn_with(|config| config.introspection = false).await;
    let (graphiql, _) = page(&app, "/graphql").await;
    let (playground, _) = page(&app, "/playground").await;
    assert_eq!(graphiql, 400);
    assert_eq!(playground, 404);
}

#[tokio::test]
async fn the_query_graphiql_opens_with_runs() {
    let app = TestApp::spawn().await;
    let body = app.graphql_with(DEFAULT_QUERY, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["plans"].is_array(), "{body}");
}

fn mirror_packages(assets: &[Asset]) -> HashMap<String, std::path::PathBuf> {
    assets
        .iter()
        .map(|a| {
            (
                format!("{}@{}", a.package, a.version),
                npm_package(a.package, a.version),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_browser_renders_graphiql_from_the_mirror_and_refuses_a_tampered_file() {
    let packages = mirror_packages(&GRAPHIQL_ASSETS);
    let honest = Mirror::start(packages.clone(), None).await;
    let tampered = Mirror::start(packages, Some("graphiql@4.0.3/graphiql.min.js".to_owned())).await;
    let honest_base = honest.base.clone();
    let app = TestApp::spawn_with(move |config| config.ide_assets_url = honest_base).await;
    let tampered_base = tampered.base.clone();
    let compromised =
        TestApp::spawn_with(move |config| config.ide_assets_url = tampered_base).await;

    let url = app.url("/graphql");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url, 20_000))
        .await
        .unwrap();
    let compromised_url = compromised.url("/graphql");
    let refused = tokio::task::spawn_blocking(move || rendered_dom(&compromised_url, 20_000))
        .await
        .unwrap();

    assert!(
        dom.contains("graphiql-container"),
        "GraphiQL did not render:\n{dom}"
    );
    assert!(
        !refused.contains("graphiql-container"),
        "a tampered script ran:\n{refused}"
    );
    assert!(refused.contains("Loading GraphiQL"), "{refused}");
}

#[tokio::test]
async fn a_browser_renders_playground_from_the_mirror() {
    let mirror = Mirror::start(mirror_packages(&PLAYGROUND_ASSETS), None).await;
    let base = mirror.base.clone();
    let app = TestApp::spawn_with(move |config| config.ide_assets_url = base).await;

    let url = app.url("/playground");
    let dom = tokio::task::spawn_blocking(move || rendered_dom(&url, 20_000))
        .await
        .unwrap();

    assert!(
        dom.contains("CodeMirror"),
        "Playground did not render:\n{dom}"
    );
    assert!(!dom.contains("Server cannot be reached"), "{dom}");
}
