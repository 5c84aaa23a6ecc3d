//! `schema.graphql` must be exactly the SDL the code exports.

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
