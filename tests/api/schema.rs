//! `schema.graphql` must be exactly the SDL the code exports, and README must explain every error code.

#[test]
fn schema_graphql_matches_the_exported_sdl() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let exported = joyfull_hub::graphql::export_sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &exported).expect("write schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == exported,
        "schema.graphql differs from the schema the code defines.\n\
         Regenerate it with `UPDATE_SCHEMA=1 cargo test schema_graphql` \
         (or `cargo run -- export-schema > schema.graphql`) and commit it.\n\
         --- exported ---\n{exported}"
    );
}

#[test]
fn readme_explains_every_error_code_and_no_other() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let listed: Vec<&str> = readme
        .lines()
        .skip_while(|line| *line != "| code | meaning |")
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(code, _)| code))
        .collect();
    let mut expected = joyfull_hub::error::ERROR_CODES.to_vec();
    let mut found = listed.clone();
    expected.sort_unstable();
    found.sort_unstable();
    found.dedup();
    assert_eq!(found, expected, "README's error table");
    assert_eq!(
        joyfull_hub::graphql::persisted_queries::Refusal::NotFound.code(),
        "PERSISTED_QUERY_NOT_FOUND"
    );
}
