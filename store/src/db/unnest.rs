//! A group's rows of one table as a single PostgreSQL `INSERT … SELECT * FROM unnest(…)`: one
//! array per column, so the statement's text is the same whatever the number of rows.
//!
//! diesel prepares a multi-row `INSERT … VALUES` afresh for every group (its text depends on
//! the number of rows), and PostgreSQL parsed, analysed and planned each one: about a sixth of
//! the writer's backend time during ingest, growing with the rows. This statement is prepared
//! once per connection and cached by diesel under its text.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

/// One column's values, one per row.
pub enum Column<'a> {
    Text(Vec<&'a str>),
    OptionalText(Vec<Option<&'a str>>),
    BigInt(Vec<i64>),
    Binary(Vec<&'a [u8]>),
    OptionalBinary(Vec<Option<&'a [u8]>>),
}

/// `INSERT INTO {table} ({columns}) SELECT * FROM unnest({one array per column}){suffix}`.
pub struct Unnest<'a> {
    table: &'static str,
    columns: &'static str,
    values: Vec<Column<'a>>,
    suffix: &'static str,
}

impl<'a> Unnest<'a> {
    /// `columns` names the columns in the order of `values`.
    pub fn new(table: &'static str, columns: &'static str, values: Vec<Column<'a>>) -> Self {
        Unnest { table, columns, values, suffix: "" }
    }

    /// What follows the rows: `ON CONFLICT …`, `RETURNING …`.
    pub fn then(mut self, suffix: &'static str) -> Self {
        self.suffix = suffix;
        self
    }

    /// Inserts the rows, if there are any (no statement for none); answers how many went in.
    pub fn insert(self, conn: &mut PgConnection) -> QueryResult<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        self.execute(conn)
    }

    /// Whether there is nothing to insert.
    fn is_empty(&self) -> bool {
        match self.values.first() {
            Some(Column::Text(v)) => v.is_empty(),
            Some(Column::OptionalText(v)) => v.is_empty(),
            Some(Column::BigInt(v)) => v.is_empty(),
            Some(Column::Binary(v)) => v.is_empty(),
            Some(Column::OptionalBinary(v)) => v.is_empty(),
            None => true,
        }
    }
}

impl QueryFragment<Pg> for Unnest<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_identifier(self.table)?;
        out.push_sql(" (");
        out.push_sql(self.columns);
        out.push_sql(") SELECT * FROM unnest(");
        for (n, column) in self.values.iter().enumerate() {
            if n > 0 {
                out.push_sql(", ");
            }
            match column {
                Column::Text(values) => out.push_bind_param::<Array<Text>, _>(values)?,
                Column::OptionalText(values) => out.push_bind_param::<Array<Nullable<Text>>, _>(values)?,
                Column::BigInt(values) => out.push_bind_param::<Array<BigInt>, _>(values)?,
                Column::Binary(values) => out.push_bind_param::<Array<Binary>, _>(values)?,
                Column::OptionalBinary(values) => out.push_bind_param::<Array<Nullable<Binary>>, _>(values)?,
            }
        }
        out.push_sql(")");
        out.push_sql(self.suffix);
        Ok(())
    }
}

/// No static id: diesel caches the prepared statement under its text and bind types, which
/// are the same for every group.
impl QueryId for Unnest<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// What `RETURNING resource_type, id` gives back (the heads' insert).
impl Query for Unnest<'_> {
    type SqlType = (Text, Text);
}

impl RunQueryDsl<PgConnection> for Unnest<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(rows: usize) -> Unnest<'static> {
        Unnest::new(
            "search_dates",
            "id, range_start",
            vec![Column::Text(vec!["x"; rows]), Column::BigInt((0..rows as i64).collect())],
        )
        .then(" ON CONFLICT DO NOTHING")
    }

    /// The point of the form: one text, and so one prepared statement, for any number of rows.
    #[test]
    fn the_statement_is_the_same_for_any_number_of_rows_and_may_be_cached() {
        let sql = |rows| {
            let printed = diesel::debug_query::<Pg, _>(&statement(rows)).to_string();
            printed.split(" -- binds").next().unwrap_or_default().to_owned()
        };
        assert_eq!(
            sql(1),
            r#"INSERT INTO "search_dates" (id, range_start) SELECT * FROM unnest($1, $2) ON CONFLICT DO NOTHING"#
        );
        assert_eq!(sql(1), sql(37));
        assert!(statement(3).is_safe_to_cache_prepared(&Pg).unwrap());
        assert!(statement(0).is_empty() && !statement(1).is_empty());
    }
}
