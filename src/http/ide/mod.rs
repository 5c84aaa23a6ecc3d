//! The in-browser IDEs: GraphiQL at `GET /graphql` (for browsers) and GraphQL Playground at
//! `GET /playground`, both off unless introspection is on.
//!
//! Every script and style is pinned to an exact version of a production build and carries its
//! Subresource Integrity hash, so a browser runs these bytes or nothing. They load from an npm CDN, or
//! from the mirror `HUB_IDE_ASSETS_URL` names (same layout: `<base>/<package>@<version>/<file>`; it must
//! answer with `Access-Control-Allow-Origin`, as integrity checks fetch in CORS mode).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{HttpState, error_response};

/// One pinned file of an npm package.
pub struct Asset {
    /// The placeholder it fills in a page.
    pub slot: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub file: &'static str,
    /// `sha384-…` of the file's bytes.
    pub integrity: &'static str,
}

impl Asset {
    /// Where a page loads it from, under `base`.
    pub fn url(&self, base: &str) -> String {
        format!("{base}/{}@{}/{}", self.package, self.version, self.file)
    }

    fn tag(&self, base: &str) -> String {
        let url = self.url(base);
        let integrity = self.integrity;
        if self.file.ends_with(".css") {
            format!(
                r#"<link rel="stylesheet" href="{url}" integrity="{integrity}" crossorigin="anonymous">"#
            )
        } else {
            format!(
                r#"<script src="{url}" integrity="{integrity}" crossorigin="anonymous"></script>"#
            )
        }
    }
}

/// What the GraphiQL page loads.
pub const GRAPHIQL_ASSETS: [Asset; 4] = [
    Asset {
        slot: "react.js",
        package: "react",
        version: "18.3.1",
        file: "umd/react.production.min.js",
        integrity: "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    },
    Asset {
        slot: "react-dom.js",
        package: "react-dom",
        version: "18.3.1",
        file: "umd/react-dom.production.min.js",
        integrity: "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    },
    Asset {
        slot: "graphiql.js",
        package: "graphiql",
        version: "4.0.3",
        file: "graphiql.min.js",
        integrity: "sha384-naAA3pYPARITlxC7GwToGuWsRdWfcCBgwIRLMDY6t7YKpjASnzW27h0gm4PIW06W",
    },
    Asset {
        slot: "graphiql.css",
        package: "graphiql",
        version: "4.0.3",
        file: "graphiql.min.css",
        integrity: "sha384-6ZaxvqvxdqMCDsD9wNOq+NxheDM6rTYy4eeE/fZmPonsSKffQ7nV+IQNzLemeuSH",
    },
];

/// What the Playground page loads.
pub const PLAYGROUND_ASSETS: [Asset; 2] = [
    Asset {
        slot: "playground.js",
        package: "graphql-playground-react",
        version: "1.7.28",
        file: "build/static/js/middleware.js",
        integrity: "sha384-ardaO17esJ2ZxvY24V1OE6X4j+Z3WKgGMptrlDLmD+2w/JC3nbQ5ZfKGY2zfOPEE",
    },
    Asset {
        slot: "playground.css",
        package: "graphql-playground-react",
        version: "1.7.28",
        file: "build/static/css/index.css",
        integrity: "sha384-xb+UHILNN4fV3NgQMTjXk0x9A80U0hmkraTFvucUYTILJymGT8E1Aq2278NSi5+3",
    },
];

const GRAPHIQL_PAGE: &str = include_str!("graphiql.html");
const PLAYGROUND_PAGE: &str = include_str!("playground.html");

/// The query GraphiQL opens with: where credentials go, then a first query.
pub const DEFAULT_QUERY: &str = r#"# Welcome to Joyfull Hub.
#
# Anonymous callers see the catalogue. To act as yourself, sign in with the `login`
# mutation (or create an API key), then open "Headers" below and paste:
#
#   {"Authorization": "Bearer <accessToken or API key>"}
#
# Subscriptions send the same headers in connection_init on /graphql/ws.

query Catalogue {
  plans { tier name tokenLimit requestsPerMinute }
  tools(first: 5) { nodes { id name category } }
}
"#;

/// GraphiQL, for a browser's `GET /graphql`.
pub fn graphiql(state: &HttpState) -> Response {
    let base = state.app.config.ide_assets_url.as_str();
    let mut page = fill_assets(GRAPHIQL_PAGE, &GRAPHIQL_ASSETS, base);
    page = page.replace("{{default_query}}", &script_string(DEFAULT_QUERY));
    html(page)
}

/// `GET /playground`.
pub async fn playground(State(state): State<HttpState>) -> Response {
    if !state.app.config.introspection {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The GraphQL Playground is turned off on this server.",
        );
    }
    let base = state.app.config.ide_assets_url.as_str();
    let config = serde_json::json!({
        "endpoint": "/graphql",
        "subscriptionEndpoint": "/graphql/ws",
        "settings": { "request.credentials": "omit" },
    });
    let page = fill_assets(PLAYGROUND_PAGE, &PLAYGROUND_ASSETS, base)
        .replace("{{config}}", &script_string_json(&config));
    html(page)
}

fn fill_assets(page: &str, assets: &[Asset], base: &str) -> String {
    assets.iter().fold(page.to_owned(), |page, asset| {
        page.replace(&format!("{{{{{}}}}}", asset.slot), &asset.tag(base))
    })
}

/// `text` as a JavaScript string literal that cannot end the surrounding `<script>`.
fn script_string(text: &str) -> String {
    script_string_json(&serde_json::Value::from(text))
}

fn script_string_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

fn html(page: String) -> Response {
    let mut response = Html(page).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
