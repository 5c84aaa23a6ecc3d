//! Opaque keyset cursors. A cursor is the hexadecimal form of the sort key of the last item of a page;
//! clients treat it as an opaque string. A cursor this API did not give out answers `BAD_USER_INPUT`.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::AppError;
use crate::secrets::{from_hex, hex};

fn invalid() -> AppError {
    AppError::bad_input("after", "That cursor is not one this API gave out.")
}

/// Encodes a `(time, id)` position (newest-first lists).
pub fn encode_time_id(at: DateTime<Utc>, id: Uuid) -> String {
    hex(format!("{}|{id}", at.timestamp_micros()).as_bytes())
}

/// Decodes what [`encode_time_id`] made.
pub fn decode_time_id(cursor: &str) -> Result<(DateTime<Utc>, Uuid), AppError> {
    let text = decode_text(cursor)?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| invalid())?)
        .ok_or_else(invalid)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| invalid())?))
}

/// The `first` argument of a page: 0 to 100, 20 when omitted.
pub fn page_size(first: Option<i32>) -> Result<i64, AppError> {
    let first = first.unwrap_or(20);
    if (0..=100).contains(&first) {
        Ok(i64::from(first))
    } else {
        Err(AppError::bad_input(
            "first",
            "Ask for 0 to 100 items at a time.",
        ))
    }
}

/// A newest-first page as a connection: each row becomes a node, with its `(time, id)` position as its
/// cursor.
pub fn newest_first<R, N>(
    rows: Vec<R>,
    has_previous: bool,
    has_next: bool,
    position: impl Fn(&R) -> (DateTime<Utc>, Uuid),
) -> Connection<String, N>
where
    N: From<R> + OutputType,
{
    let mut connection = Connection::new(has_previous, has_next);
    connection.edges.extend(rows.into_iter().map(|row| {
        let (at, id) = position(&row);
        Edge::new(encode_time_id(at, id), N::from(row))
    }));
    connection
}

/// Encodes any text position.
pub fn encode_text(text: &str) -> String {
    hex(text.as_bytes())
}

/// Decodes what [`encode_text`] made.
pub fn decode_text(cursor: &str) -> Result<String, AppError> {
    String::from_utf8(from_hex(cursor).ok_or_else(invalid)?).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let at = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_time_id(&encode_time_id(at, id)).unwrap(), (at, id));
        assert!(decode_time_id("zz").is_err());
        assert!(decode_time_id(&encode_text("no separator")).is_err());
    }
}
