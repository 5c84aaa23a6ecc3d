//! One rule for ids in arguments: a malformed id is `BAD_USER_INPUT` naming the argument, whatever the
//! field; a well-formed id that names nothing is `null` from a lookup and `NOT_FOUND` from a mutation.

use async_graphql::ID;
use uuid::Uuid;

use crate::error::AppError;

/// The id in `argument`, or `BAD_USER_INPUT` naming it.
pub fn parse(id: &ID, argument: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::bad_input(argument, format!("`{argument}` is not a valid id.")))
}
