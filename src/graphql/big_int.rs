//! `BigInt`: the scalar of every counter and amount that can pass 2³¹−1 (tokens, limits, totals, cents).
//!
//! A signed 64-bit integer. It is written as a JSON number while a JavaScript number holds it exactly
//! (|n| ≤ 2⁵³−1) and as a decimal string beyond, the way graphql-scalars' `BigInt` does; it is read from
//! either form. GraphQL's own `Int` is 32-bit and stays for small bounded values (page sizes, timeouts).

use async_graphql::{InputValueError, InputValueResult, Number, Scalar, ScalarType, Value};

/// The largest integer a JavaScript number (an IEEE double) holds exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A 64-bit integer in the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct BigInt(pub i64);

/// A signed 64-bit integer: a JSON number up to ±(2⁵³−1), a decimal string beyond.
#[Scalar(
    name = "BigInt",
    specified_by_url = "https://the-guild.dev/graphql/scalars/docs/scalars/big-int"
)]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(number) => number.as_i64().map(BigInt).ok_or_else(|| {
                InputValueError::custom("BigInt must be a whole number within 64 bits")
            }),
            Value::String(text) => text.parse::<i64>().map(BigInt).map_err(|_| {
                InputValueError::custom("BigInt must be a whole number within 64 bits")
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::Number(_) | Value::String(_))
    }

    fn to_value(&self) -> Value {
        if self.0.abs() <= MAX_SAFE_INTEGER {
            Value::Number(Number::from(self.0))
        } else {
            Value::String(self.0.to_string())
        }
    }
}

impl From<i64> for BigInt {
    fn from(value: i64) -> Self {
        Self(value)
    }
}

impl From<BigInt> for i64 {
    fn from(value: BigInt) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safe_integer_is_a_number_and_a_larger_one_a_string() {
        assert_eq!(
            BigInt(3_500_000_000).to_value(),
            Value::Number(3_500_000_000i64.into())
        );
        assert_eq!(
            BigInt(-MAX_SAFE_INTEGER).to_value(),
            Value::Number((-MAX_SAFE_INTEGER).into())
        );
        assert_eq!(
            BigInt(i64::MAX).to_value(),
            Value::String("9223372036854775807".to_string())
        );
    }

    #[test]
    fn both_forms_are_read_and_fractions_refused() {
        assert_eq!(
            BigInt::parse(Value::Number(42.into())).ok(),
            Some(BigInt(42))
        );
        assert_eq!(
            BigInt::parse(Value::String("9223372036854775807".into())).ok(),
            Some(BigInt(i64::MAX))
        );
        let fraction = Number::from_f64(1.5)
            .map(Value::Number)
            .unwrap_or(Value::Null);
        assert!(BigInt::parse(fraction).is_err());
        assert!(BigInt::parse(Value::String("12abc".into())).is_err());
        assert!(BigInt::parse(Value::Boolean(true)).is_err());
    }
}
