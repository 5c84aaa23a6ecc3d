// @generated automatically by Diesel CLI.
//
// Tables are added here by `diesel print-schema` as the domains' migrations create them.
