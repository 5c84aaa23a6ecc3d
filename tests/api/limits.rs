use serde_json::json;

use crate::helpers::{TestApp, error_code, error_message};

#[tokio::test]
async fn a_query_nested_deeper_than_the_limit_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_depth = 3).await;
    let deep = "query { ...Me } fragment Me on Query { me { subscription { plan { tier } } } }";

    let body = app.graphql(deep).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(error_message(&body).contains("limit 3"));
    assert!(body["data"].is_null());
}

#[tokio::test]
async fn a_query_within_the_depth_limit_runs() {
    let app = TestApp::spawn_with(|c| c.graphql.max_depth = 3).await;

    let body = app.graphql("{ me { subscription { status } } }").await;

    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["me"].is_null());
}

#[tokio::test]
async fn a_query_more_complex_than_the_limit_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_complexity = 10).await;
    let fields: String = (0..12)
        .map(|i| format!("f{i}: serverInfo {{ version }} "))
        .collect();

    let body = app.graphql(&format!("{{ {fields} }}")).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(error_message(&body).contains("too complex"));
}

#[tokio::test]
async fn too_many_aliases_are_refused_even_inside_fragments() {
    let app = TestApp::spawn_with(|c| c.graphql.max_aliases = 3).await;
    let query = "query { ...F } fragment F on Query { a: __typename b: __typename c: __typename d: __typename }";

    let body = app.graphql(query).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
    assert!(error_message(&body).contains("4 aliases"));
}

#[tokio::test]
async fn an_oversized_query_text_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_query_bytes = 256).await;
    let query = format!("{{ __typename }} # {}", "x".repeat(300));

    let body = app.graphql(&query).await;

    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn a_batch_runs_each_request_and_an_oversized_batch_is_refused() {
    let app = TestApp::spawn_with(|c| c.graphql.max_batch = 3).await;
    let one = json!({ "query": "{ __typename }" });

    let ok: serde_json::Value = app
        .post_graphql(&json!([one, one]))
        .await
        .json()
        .await
        .unwrap();
    let too_big = app.post_graphql(&json!([one, one, one, one])).await;

    assert_eq!(ok.as_array().unwrap().len(), 2);
    assert_eq!(ok[1]["data"]["__typename"], "Query");
    assert_eq!(too_big.status(), 400);
    let body: serde_json::Value = too_big.json().await.unwrap();
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn introspection_is_off_when_configured_off() {
    let app = TestApp::spawn_with(|c| c.introspection = false).await;

    let body = app.graphql("{ __schema { queryType { name } } }").await;
    let graphiql = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let playground = app.get("/playground").await;

    assert_eq!(error_code(&body), "FORBIDDEN");
    assert!(body["data"].is_null());
    assert_eq!(
        app.graphql("{ __typename }").await["data"]["__typename"],
        "Query"
    );
    assert_eq!(graphiql.status(), 400);
    assert_eq!(playground.status(), 404);
}

/// The query graphql-js's `getIntrospectionQuery` builds with every option on (descriptions,
/// `specifiedByURL`, `isRepeatable`, the schema description, input value deprecation), as GraphiQL,
/// Playground, Apollo Sandbox, Postman and graphql-codegen send it.
const STANDARD_INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives {
      name
      description
      isRepeatable
      locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  specifiedByURL
  fields(includeDeprecated: true) {
    name
    description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
  isDeprecated
  deprecationReason
}
fragment TypeRef on __Type {
  kind
  name
  ofType {
    kind
    name
    ofType {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType { kind name }
                }
              }
            }
          }
        }
      }
    }
  }
}
"#;

#[tokio::test]
async fn the_standard_introspection_query_of_every_ide_is_answered_with_the_default_limits() {
    let app = TestApp::spawn().await;

    let body = app
        .post_graphql(
            &json!({ "query": STANDARD_INTROSPECTION, "operationName": "IntrospectionQuery" }),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();

    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Query"));
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn introspection_stays_bounded_by_rules_of_its_own() {
    let app = TestApp::spawn().await;
    let circular =
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let aliased = "{ a: __schema { queryType { name } } b: __schema { queryType { name } } c: __schema { queryType { name } } }";
    let deep = format!(
        "{{ __type(name: \"Query\") {{ {}name{} }} }}",
        "ofType { ".repeat(12),
        " }".repeat(12)
    );

    for query in [circular, aliased, deep.as_str()] {
        let body = app.graphql(query).await;
        assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{query}: {body}");
        assert!(body["data"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn unknown_directives_are_refused_before_anything_runs() {
    let app = TestApp::spawn().await;
    let many: String = (0..1000).map(|n| format!("@d{n} ")).collect();

    let flooded = app
        .graphql(&format!("{{ serverInfo {many}{{ version }} }}"))
        .await;
    let known = app
        .graphql("query($no: Boolean = false) { serverInfo { version @include(if: true) } me @skip(if: $no) { id } }")
        .await;

    assert_eq!(error_code(&flooded), "BAD_USER_INPUT", "{flooded}");
    assert!(flooded["data"].is_null());
    assert!(known.get("errors").is_none(), "{known}");
}

/// A request the executor has validated in full runs later with the same text, operation and variables
/// without the full rules; the same text with other variables is validated in full again, and a refusal
/// is never remembered as a pass. A skipped field's argument is checked only by the full rules, so it
/// shows which ran.
#[tokio::test]
async fn a_request_is_validated_in_full_for_each_text_and_variables() {
    let app = TestApp::spawn().await;
    let user = app.register("Ada", "ada@example.com").await;
    let page = "query Page($first: Int) { me { name } tools(first: $first) @skip(if: true) { totalCount } }";
    let run = |variables: serde_json::Value| {
        let request = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&user.access_token)
            .json(&json!({ "query": page, "variables": variables }));
        async move {
            let response = request.send().await.expect("POST /graphql");
            response
                .json::<serde_json::Value>()
                .await
                .expect("a JSON body")
        }
    };
    let refused_in_full = |body: &serde_json::Value| {
        assert_eq!(error_code(body), "BAD_USER_INPUT", "{body}");
        assert!(body["data"].is_null(), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("Invalid value for argument"), "{body}");
    };
    for _ in 0..2 {
        let ok = run(json!({ "first": 5 })).await;
        assert_eq!(ok["data"]["me"]["name"], "Ada", "{ok}");
        // The same text with a variable of the wrong type: refused by the full rules each time.
        refused_in_full(&run(json!({ "first": "five" })).await);
    }
}
