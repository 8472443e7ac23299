//! SQL types of catalogue columns, fixed by the fields' Rust types.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;

/// SQL type of a column, fixed by the field's Rust type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `integer` (Rust `i32`).
    Int4,
    /// `bigint` (Rust `i64`).
    Int8,
    /// `double precision` (Rust `f64`).
    Float8,
    /// `VARCHAR(64)` (Rust `String`): series ids.
    Varchar,
    /// `timestamptz` (Rust `DateTime<Utc>`).
    Timestamptz,
}

impl SqlType {
    /// The type binary COPY sends.
    pub const fn pg(self) -> Type {
        match self {
            SqlType::Int4 => Type::INT4,
            SqlType::Int8 => Type::INT8,
            SqlType::Float8 => Type::FLOAT8,
            SqlType::Varchar => Type::VARCHAR,
            SqlType::Timestamptz => Type::TIMESTAMPTZ,
        }
    }

    /// The name `information_schema.columns.data_type` reports.
    pub const fn information_schema(self) -> &'static str {
        match self {
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Float8 => "double precision",
            SqlType::Varchar => "character varying",
            SqlType::Timestamptz => "timestamp with time zone",
        }
    }
}

/// A Rust type a sample field may have, and how the ingest check reads it.
pub trait SqlValue {
    /// The column's SQL type.
    const SQL: SqlType;
    /// Whether the column may be NULL (the field is an `Option`).
    const NULLABLE: bool = false;
    /// The value as a number, for range checks; `None` for NULL and text.
    fn number(&self) -> Option<Number>;
}

/// A numeric field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer column.
    Int(i64),
    /// A floating-point column.
    Float(f64),
}

impl SqlValue for i32 {
    const SQL: SqlType = SqlType::Int4;
    fn number(&self) -> Option<Number> {
        Some(Number::Int(i64::from(*self)))
    }
}
impl SqlValue for i64 {
    const SQL: SqlType = SqlType::Int8;
    fn number(&self) -> Option<Number> {
        Some(Number::Int(*self))
    }
}
impl SqlValue for f64 {
    const SQL: SqlType = SqlType::Float8;
    fn number(&self) -> Option<Number> {
        Some(Number::Float(*self))
    }
}
impl SqlValue for String {
    const SQL: SqlType = SqlType::Varchar;
    fn number(&self) -> Option<Number> {
        None
    }
}
impl SqlValue for DateTime<Utc> {
    const SQL: SqlType = SqlType::Timestamptz;
    fn number(&self) -> Option<Number> {
        None
    }
}
impl<T: SqlValue> SqlValue for Option<T> {
    const SQL: SqlType = T::SQL;
    const NULLABLE: bool = true;
    fn number(&self) -> Option<Number> {
        self.as_ref().and_then(T::number)
    }
}
