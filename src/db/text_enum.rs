//! Enums stored as text columns. [`text_enum!`](crate::text_enum) gives an enum its database spelling
//! (`as_db`, `parse_db`, `Display`, serde) and lets rows and bound parameters use the enum itself, so a tier, status or
//! role is typed from the row to the resolver; a value the enum does not know fails the read loudly.

/// Implements the text mapping for an enum that derives `diesel::AsExpression` and
/// `diesel::FromSqlRow` with `#[diesel(sql_type = diesel::sql_types::Text)]`:
///
/// ```ignore
/// text_enum!(PlanTier { Free => "FREE", Pro => "PRO", Enterprise => "ENTERPRISE" });
/// ```
#[macro_export]
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
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
