//! The depth of a query, measured apart for ordinary fields and for introspection.
//!
//! The operation depth limit protects resolvers; introspection answers from the schema in memory, and
//! the standard introspection query (graphql-js's `getIntrospectionQuery`, which every IDE and code
//! generator sends) nests `ofType` seven levels deep, beyond any sensible operation limit. So the depth
//! limit counts ordinary fields only, and introspection is bounded by rules of its own:
//!
//! - `ofType` nests at most [`MAX_OF_TYPE`] levels (graphql-js asks for 7 to 9);
//! - `__schema` and `__type` appear at most once each per document (aliases cannot multiply them);
//! - no circular introspection: a type reached through a type's fields (`fields`, `inputFields`,
//!   `interfaces`, `possibleTypes`) may not have its own such lists asked for again, which is how a
//!   small query grows an exponential answer.

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};

/// Deepest `ofType` chain answered.
pub const MAX_OF_TYPE: usize = 10;

/// The fields of `__Type` that list other types.
const TYPE_LISTS: [&str; 4] = ["fields", "inputFields", "interfaces", "possibleTypes"];

/// What [`shape`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of ordinary (non-introspection) fields in any operation.
    pub depth: usize,
    /// Why the document's introspection is refused, if it is.
    pub introspection_refusal: Option<String>,
}

/// Measures every operation of the document, following fragment spreads.
pub fn shape(document: &ExecutableDocument) -> Shape {
    let mut walker = Walker {
        document,
        shape: Shape::default(),
        schema_fields: 0,
        type_fields: 0,
        active_fragments: HashSet::new(),
    };
    for (_, operation) in document.operations.iter() {
        walker.ordinary(&operation.node.selection_set.node, 1);
    }
    if walker.schema_fields > 1 || walker.type_fields > 1 {
        walker.refuse("`__schema` and `__type` may each be asked for once per request.");
    }
    walker.shape
}

struct Walker<'d> {
    document: &'d ExecutableDocument,
    shape: Shape,
    schema_fields: usize,
    type_fields: usize,
    /// Fragments being expanded on the current path (a cycle is left for validation to report).
    active_fragments: HashSet<String>,
}

/// Where a selection sits inside an introspection field.
#[derive(Clone, Copy, Default)]
struct IntrospectionPath {
    of_type: usize,
    type_lists: usize,
}

impl Walker<'_> {
    fn refuse(&mut self, why: &str) {
        self.shape
            .introspection_refusal
            .get_or_insert_with(|| why.to_owned());
    }

    /// Calls `visit` for each field of `set`, expanding fragments.
    fn fields(&mut self, set: &SelectionSet, visit: &mut dyn FnMut(&mut Self, &Field)) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => visit(self, &field.node),
                Selection::InlineFragment(fragment) => {
                    self.fields(&fragment.node.selection_set.node, visit);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let document = self.document;
                    let Some(fragment) = document.fragments.get(name) else {
                        continue;
                    };
                    if !self.active_fragments.insert(name.to_owned()) {
                        continue;
                    }
                    self.fields(&fragment.node.selection_set.node, visit);
                    self.active_fragments.remove(name);
                }
            }
        }
    }

    /// Ordinary fields at `depth`; an introspection root field switches to its own rules.
    fn ordinary(&mut self, set: &SelectionSet, depth: usize) {
        self.fields(set, &mut |walker, field| {
            let name = field.name.node.as_str();
            match name {
                "__schema" | "__type" => {
                    if name == "__schema" {
                        walker.schema_fields += 1;
                    } else {
                        walker.type_fields += 1;
                    }
                    walker.introspection(&field.selection_set.node, IntrospectionPath::default());
                }
                "__typename" => {}
                _ => {
                    walker.shape.depth = walker.shape.depth.max(depth);
                    walker.ordinary(&field.selection_set.node, depth + 1);
                }
            }
        });
    }

    fn introspection(&mut self, set: &SelectionSet, path: IntrospectionPath) {
        self.fields(set, &mut |walker, field| {
            let name = field.name.node.as_str();
            let mut next = path;
            if name == "ofType" {
                next.of_type += 1;
                if next.of_type > MAX_OF_TYPE {
                    walker.refuse(&format!(
                        "`ofType` may nest at most {MAX_OF_TYPE} levels in one request."
                    ));
                    return;
                }
            }
            if TYPE_LISTS.contains(&name) {
                next.type_lists += 1;
                if next.type_lists > 1 {
                    walker.refuse(
                        "Circular introspection (a type's fields' types' fields…) is refused: ask for the types once, under `__schema { types { … } }`.",
                    );
                    return;
                }
            }
            walker.introspection(&field.selection_set.node, next);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(query: &str) -> Shape {
        shape(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn ordinary_depth_counts_through_fragments_and_skips_introspection() {
        assert_eq!(measure("{ me { id } }").depth, 2);
        assert_eq!(
            measure("query { ...F } fragment F on Query { me { apiKeys { id } } }").depth,
            3
        );
        assert_eq!(
            measure("{ __schema { types { fields { type { ofType { name } } } } } }").depth,
            0
        );
    }

    #[test]
    fn introspection_has_rules_of_its_own() {
        let deep = format!(
            "{{ __type(name: \"Query\") {{ {}name{} }} }}",
            "ofType { ".repeat(MAX_OF_TYPE + 1),
            " }".repeat(MAX_OF_TYPE + 1)
        );
        assert!(measure(&deep).introspection_refusal.is_some());
        let circular = "{ __schema { types { fields { type { fields { name } } } } } }";
        assert!(measure(circular).introspection_refusal.is_some());
        let twice = "{ a: __schema { queryType { name } } b: __schema { queryType { name } } }";
        assert!(measure(twice).introspection_refusal.is_some());
        let fine = "{ __schema { types { name fields { name type { name ofType { name } } } } } }";
        assert_eq!(measure(fine).introspection_refusal, None);
    }
}
