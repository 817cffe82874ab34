//! Small helpers over pgrx's SPI client. Queries return text columns.
//! every statement we run is a
//! "mutating" one for SPI (read_only = false), so each gets a fresh
//! snapshot under READ COMMITTED — the flush relies on that (DESIGN.md §6).

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use crate::error::OrRaise;

/// Runs `sql` (any statement) with `args`.
pub fn run(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) {
    client.update(sql, None, args).or_raise("SPI statement");
}

/// Runs `sql` and returns its rows as text (NULL → None), column by column.
pub fn rows(
    client: &mut SpiClient<'_>,
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Vec<Vec<Option<String>>> {
    let table = client.update(sql, None, args).or_raise("SPI query");
    collect(table)
}

/// Runs a prepared statement and returns its rows as text.
pub fn rows_prepared(
    client: &mut SpiClient<'_>,
    stmt: &OwnedPreparedStatement,
    args: &[DatumWithOid<'_>],
) -> Vec<Vec<Option<String>>> {
    let table = client
        .update(stmt, None, args)
        .or_raise("prepared statement");
    collect(table)
}

/// The first column of the first row, as text.
pub fn one(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> Option<String> {
    rows(client, sql, args)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

fn collect(table: SpiTupleTable<'_>) -> Vec<Vec<Option<String>>> {
    let ncols = table.columns().unwrap_or(0);
    let mut out = Vec::with_capacity(table.len());
    for row in table {
        let mut r = Vec::with_capacity(ncols);
        for i in 1..=ncols {
            r.push(text_of(&row, i));
        }
        out.push(r);
    }
    out
}

/// A column as text. Our queries return text or integer columns (cast in
/// the SQL otherwise), so no output function call is needed here.
fn text_of(row: &pgrx::spi::SpiHeapTupleData<'_>, ordinal: usize) -> Option<String> {
    let oid = row
        .get_datum_by_ordinal(ordinal)
        .map(|e| e.oid())
        .or_raise("SPI column");
    if oid == pg_sys::INT8OID {
        row.get::<i64>(ordinal)
            .or_raise("SPI bigint column")
            .map(|v| v.to_string())
    } else if oid == pg_sys::INT4OID {
        row.get::<i32>(ordinal)
            .or_raise("SPI integer column")
            .map(|v| v.to_string())
    } else if oid == pg_sys::BOOLOID {
        row.get::<bool>(ordinal)
            .or_raise("SPI boolean column")
            .map(|v| v.to_string())
    } else {
        row.get::<String>(ordinal).or_raise("SPI text column")
    }
}

/// Prepares a statement once per backend (kept across transactions).
pub fn prepare(client: &SpiClient<'_>, sql: &str, args: &[pg_sys::Oid]) -> OwnedPreparedStatement {
    let oids: Vec<pgrx::PgOid> = args.iter().map(|o| pgrx::PgOid::from(*o)).collect();
    client
        .prepare_mut(sql, &oids)
        .or_raise("preparing a statement")
        .keep()
}

pub fn text_array(values: Vec<String>) -> DatumWithOid<'static> {
    DatumWithOid::from(values)
}

pub fn oid_arg(oid: pg_sys::Oid) -> DatumWithOid<'static> {
    DatumWithOid::from(oid)
}
