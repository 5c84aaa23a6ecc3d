//! Enums stored as text columns. [`text_enum!`](crate::text_enum) declares an enum with its database
//! spelling (`as_db`, `parse_db`, `Display`, serde) and lets rows and bound parameters use the enum
//! itself, so a tier, status or role is typed from the row to the resolver; a value the enum does not
//! know fails the read loudly.

/// Declares an enum stored as text, each variant with its database spelling; extra derives and
/// documentation pass through:
///
/// ```ignore
/// text_enum! {
///     /// A plan's tier.
///     #[derive(async_graphql::Enum)]
///     pub enum PlanTier { Free => "FREE", Pro => "PRO", Enterprise => "ENTERPRISE" }
/// }
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            ::diesel::expression::AsExpression,
            ::diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = ::diesel::sql_types::Text)]
        $vis enum $ty {
            $($(#[$variant_meta])* $variant),+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// How the database spells this value.
            pub const fn as_db(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value the database spells `text`, if any.
            pub fn parse_db(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_db())
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_db())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::parse_db(&text).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::custom(format!(
                        "{text:?} is not a known {}",
                        stringify!($ty)
                    ))
                })
            }
        }

        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $ty {
            fn from_sql(bytes: ::diesel::pg::PgValue<'_>) -> ::diesel::deserialize::Result<Self> {
                let text = ::std::str::from_utf8(bytes.as_bytes())?;
                Self::parse_db(text).ok_or_else(|| {
                    format!("{text:?} is not a known {}", stringify!($ty)).into()
                })
            }
        }

        impl ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $ty {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                <str as ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg>>::to_sql(
                    self.as_db(),
                    out,
                )
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum! {
        /// A test enum.
        enum Colour {
            Red => "RED",
            /// A documented variant.
            DarkBlue => "DARK_BLUE",
        }
    }

    #[test]
    fn values_read_and_write_their_database_spelling_and_unknown_text_is_refused() {
        assert_eq!(Colour::DarkBlue.as_db(), "DARK_BLUE");
        assert_eq!(Colour::parse_db("RED"), Some(Colour::Red));
        assert_eq!(Colour::parse_db("red"), None);
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DarkBlue]);
        assert_eq!(Colour::Red.to_string(), "RED");
        assert_eq!(
            serde_json::to_string(&Colour::DarkBlue).unwrap(),
            "\"DARK_BLUE\""
        );
        assert_eq!(
            serde_json::from_str::<Colour>("\"RED\"").unwrap(),
            Colour::Red
        );
        let unknown = serde_json::from_str::<Colour>("\"GREEN\"").unwrap_err();
        assert!(
            unknown.to_string().contains("not a known Colour"),
            "{unknown}"
        );
    }
}
