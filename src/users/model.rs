//! User rows, ids and the parsed value types of the accounts domain ("parse, don't validate").

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::billing::model::PlanTier;
use crate::error::AppError;

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

crate::text_enum! {
    /// What a user may do.
    #[derive(async_graphql::Enum)]
    pub enum Role {
        /// A customer: their own account, keys, tools and usage.
        User => "USER",
        /// Manages tools, users and plans, and sees the whole platform.
        Admin => "ADMIN",
    }
}

crate::text_enum! {
    /// Whether an account may be used.
    #[derive(async_graphql::Enum)]
    pub enum UserStatus {
        Active => "ACTIVE",
        /// Cannot log in; its credentials are refused.
        Suspended => "SUSPENDED",
    }
}

crate::text_enum! {
    /// The dashboard's colours.
    #[derive(async_graphql::Enum)]
    pub enum Theme {
        Light => "LIGHT",
        Dark => "DARK",
        /// Follow the device's setting.
        System => "SYSTEM",
    }
}

/// A row of `user_preferences`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = crate::db::schema::user_preferences)]
pub struct PreferencesRow {
    pub user_id: Uuid,
    pub theme: Theme,
    /// A BCP 47 language tag, e.g. `en`, `pt-BR`.
    pub language: String,
    /// An IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: String,
    pub updated_at: DateTime<Utc>,
}

/// A row of `users`. No `Debug`: it holds the password hash.
#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = crate::db::schema::users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    pub status: UserStatus,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub session_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when an administrator deleted the account (its personal data is gone).
    pub deleted_at: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn id(&self) -> UserId {
        UserId(self.id)
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn status(&self) -> UserStatus {
        self.status
    }
}

/// What a user sees of their own account as `me` (cached apart from [`UserAccess`]; no password hash).
#[derive(Debug, Clone)]
pub struct UserProfile {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&UserRow> for UserProfile {
    fn from(user: &UserRow) -> Self {
        Self {
            id: user.id(),
            name: user.name.clone(),
            email: user.email.clone(),
            role: user.role(),
            status: user.status(),
            email_verified: user.email_verified_at.is_some(),
            created_at: user.created_at,
        }
    }
}

/// What authenticating a request needs of a user (cached; no personal data, no password hash).
#[derive(Debug, Clone)]
pub struct UserAccess {
    pub id: UserId,
    pub role: Role,
    pub status: UserStatus,
    pub session_version: i32,
    pub deleted: bool,
    pub email_verified: bool,
}

impl From<&UserRow> for UserAccess {
    fn from(user: &UserRow) -> Self {
        Self {
            id: user.id(),
            role: user.role(),
            status: user.status(),
            session_version: user.session_version,
            deleted: user.deleted_at.is_some(),
            email_verified: user.email_verified_at.is_some(),
        }
    }
}

/// A new row of `users`.
#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub email_verified_at: Option<DateTime<Utc>>,
}

/// An email address, trimmed and lower-cased so that uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Checks the shape of an address (one `@`, a dotted domain, no spaces, sensible lengths).
    pub fn parse(raw: &str, field: &str) -> Result<Self, AppError> {
        let email = raw.trim().to_lowercase();
        let invalid = || AppError::bad_input(field, "That is not a valid email address.");
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let valid = !local.is_empty()
            && local.len() <= 64
            && email.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if valid {
            Ok(Self(email))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@example.com`: enough to correlate log lines, not to harvest addresses.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
            }
            None => "***".into(),
        }
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::bad_input("name", "Please enter a name."));
    }
    if name.chars().count() > 100 {
        return Err(AppError::bad_input(
            "name",
            "A name can be at most 100 characters.",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "A name cannot contain control characters.",
        ));
    }
    Ok(name.to_owned())
}

/// The password policy: at least 8 characters (at most 128), with upper case, lower case, a digit and
/// a special character. The error names the first rule broken.
pub fn check_password_strength(password: &str, field: &str) -> Result<(), AppError> {
    let rule = |message: &str| Err(AppError::bad_input(field, message));
    if password.chars().count() < 8 {
        return rule("The password needs at least 8 characters.");
    }
    if password.chars().count() > 128 {
        return rule("The password can be at most 128 characters.");
    }
    if !password.chars().any(char::is_uppercase) {
        return rule("The password needs at least one upper-case letter.");
    }
    if !password.chars().any(char::is_lowercase) {
        return rule("The password needs at least one lower-case letter.");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return rule("The password needs at least one digit.");
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        return rule("The password needs at least one special character, such as ! or #.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken_rule(password: &str) -> String {
        match check_password_strength(password, "password") {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn emails_are_normalised_and_malformed_ones_refused() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ", "email")
                .unwrap()
                .as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@@example.com",
            "ada@exa_mple.com",
            "ada@.example.com",
        ] {
            assert!(Email::parse(bad, "email").is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse("ada@example.com", "email").unwrap().masked(),
            "a***@example.com"
        );
    }

    #[test]
    fn each_password_rule_is_named() {
        assert!(broken_rule("Sh0rt!").contains("8 characters"));
        assert!(broken_rule("lowercase1!").contains("upper-case"));
        assert!(broken_rule("UPPERCASE1!").contains("lower-case"));
        assert!(broken_rule("NoDigits!!").contains("digit"));
        assert!(broken_rule("NoSpecial12").contains("special"));
        assert_eq!(broken_rule("Corr3ct-Horse"), "ok");
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(101)).is_err());
    }
}

/// Filters of the administrators' user list.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub search: Option<String>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub tier: Option<PlanTier>,
}

/// How the administrators' user list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSort {
    /// Newest first.
    CreatedAt,
    /// A to Z, ignoring case.
    Name,
    /// Most tokens used this period first.
    TokensUsed,
}

/// The keyset position of a listed user.
#[derive(diesel::QueryableByName, Debug, Clone)]
pub struct Listed {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name_key: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub tokens_key: i64,
}
