//! Small helpers over SPI. Queries return text columns. Every statement we
//! run is a "mutating" one for SPI (read_only = false), so each gets a
//! fresh snapshot under READ COMMITTED — the flush relies on that
//! (DESIGN.md §6) — yet none asks for a transaction id: reading never
//! writes a commit record, and works on a hot standby.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::OrRaise;

/// Runs `sql` (any statement) with `args`.
pub fn run(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) {
    rows(client, sql, args);
}

/// Runs `sql` and returns its rows as text (NULL → None), column by column;
/// booleans as `true`/`false`.
///
/// `SPI_execute_with_args` with `read_only = false`, as pgrx's `update`
/// does, but without asking for a transaction id first: a query must not
/// write a commit record, nor fail on a hot standby.
pub fn rows(
    _client: &mut SpiClient<'_>,
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Vec<Vec<Option<String>>> {
    let c = std::ffi::CString::new(sql).or_raise("statement text");
    let mut types: Vec<pg_sys::Oid> = args.iter().map(DatumWithOid::oid).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| {
            a.datum()
                .map(|d| d.sans_lifetime())
                .unwrap_or(pg_sys::Datum::from(0))
        })
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    // SAFETY: inside an SPI connection (the client proves it); the arrays
    // have one entry per argument; errors are raised by PostgreSQL.
    unsafe {
        let rc = pg_sys::SPI_execute_with_args(
            c.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            false,
            0,
        );
        if rc < 0 {
            crate::error::raise_with(
                "XX000",
                format!("pg_tviews: statement failed (SPI error {rc})"),
                Some(sql.to_string()),
                None,
            );
        }
        tuptable(true)
    }
}

/// The first column of the first row, as text.
pub fn one(client: &mut SpiClient<'_>, sql: &str, args: &[DatumWithOid<'_>]) -> Option<String> {
    rows(client, sql, args)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

/// The rows of the last SPI statement as text, through each type's output
/// function (`bool_words`: booleans as `true`/`false`, not `t`/`f`); frees them.
///
/// # Safety
/// Inside an SPI connection, right after a statement ran.
unsafe fn tuptable(bool_words: bool) -> Vec<Vec<Option<String>>> {
    // SAFETY: SPI_tuptable is the last statement's result or NULL.
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        if tt.is_null() {
            return Vec::new();
        }
        let n = pg_sys::SPI_processed as usize;
        let desc = (*tt).tupdesc;
        let natts = (*desc).natts;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let tuple = *(*tt).vals.add(i);
            let mut row = Vec::with_capacity(natts as usize);
            for c in 1..=natts {
                let p = pg_sys::SPI_getvalue(tuple, desc, c);
                if p.is_null() {
                    row.push(None);
                    continue;
                }
                let mut v = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
                pg_sys::pfree(p.cast());
                if bool_words && pg_sys::SPI_gettypeid(desc, c) == pg_sys::BOOLOID {
                    v = if v == "t" { "true" } else { "false" }.to_string();
                }
                row.push(Some(v));
            }
            out.push(row);
        }
        pg_sys::SPI_freetuptable(tt);
        out
    }
}

pub fn text_array(values: Vec<String>) -> DatumWithOid<'static> {
    DatumWithOid::from(values)
}

pub fn oid_arg(oid: pg_sys::Oid) -> DatumWithOid<'static> {
    DatumWithOid::from(oid)
}

/// A statement prepared once per backend and kept (`SPI_keepplan`), run
/// with `read_only = false` (a fresh snapshot per statement under READ
/// COMMITTED) or against a given snapshot. Results come back as text
/// through each type's output function.
///
/// A statement with parameters has two plans. For the common case — a
/// transaction that changed a few rows, so a few keys or values in each
/// array argument — a generic plan, made once: planning such a statement
/// for every call cost as much as running it (docs/PERFORMANCE.md). For
/// arrays longer than [`GENERIC_MAX_VALUES`], a custom plan per call, so
/// the planner sees how many values there are (a bulk statement may then
/// rather hash or scan).
///
/// A statement over transition tables (the capture) has no parameters, so
/// PostgreSQL plans it once, for the sizes of the transition tables of its
/// first call, and keeps that plan: a plan made for one changed row (nested
/// loops) then ran a later 1000-row statement 100 times slower than a fresh
/// plan did (docs/PERFORMANCE.md). [`Plan::run_for_rows`] keeps one plan
/// per size class instead — 1 row, up to 4, up to 16, ... (powers of 4) —
/// each made at the first call of its class, so a plan always serves
/// transition tables within 4 times the size it was made for.
pub struct Plan {
    sql: std::ffi::CString,
    argtypes: Vec<pg_sys::Oid>,
    generic: pg_sys::SPIPlanPtr,
    custom: std::cell::Cell<pg_sys::SPIPlanPtr>,
    /// Plans by size class of the transition tables, class 0 being `generic`.
    by_size: std::cell::RefCell<Vec<pg_sys::SPIPlanPtr>>,
}

/// The size class of a statement over `rows` transition-table rows: 0 for
/// one row, then `k` for up to `4^k` rows.
pub fn size_class(rows: u64) -> usize {
    if rows <= 1 {
        return 0;
    }
    let bits = 64 - (rows - 1).leading_zeros() as usize;
    bits.div_ceil(2)
}

/// The longest array argument a generic plan runs with.
pub const GENERIC_MAX_VALUES: usize = 100;

/// A statement argument.
pub enum Arg {
    TextArray(Vec<String>),
}

impl Plan {
    /// Prepares `sql`; must be called inside an SPI connection.
    pub fn prepare(sql: &str, argtypes: &[pg_sys::Oid]) -> Plan {
        let c = std::ffi::CString::new(sql).or_raise("statement text");
        let options = if argtypes.is_empty() {
            0
        } else {
            pg_sys::CURSOR_OPT_GENERIC_PLAN as i32
        };
        let generic = prepare_kept(&c, argtypes, options);
        Plan {
            sql: c,
            argtypes: argtypes.to_vec(),
            generic,
            custom: std::cell::Cell::new(std::ptr::null_mut()),
            by_size: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Runs a statement without parameters over transition tables holding
    /// `rows` rows in all, with the plan of their size class.
    pub fn run_for_rows(&self, rows: u64) -> Vec<Vec<Option<String>>> {
        let class = size_class(rows);
        let plan = if class == 0 {
            self.generic
        } else {
            let mut plans = self.by_size.borrow_mut();
            if plans.len() < class {
                plans.resize(class, std::ptr::null_mut());
            }
            if plans[class - 1].is_null() {
                plans[class - 1] = prepare_kept(&self.sql, &self.argtypes, 0);
            }
            plans[class - 1]
        };
        self.execute(plan, &[], None)
    }

    /// The plan for these arguments.
    fn plan_for(&self, args: &[Arg]) -> pg_sys::SPIPlanPtr {
        let long = args.iter().any(|a| match a {
            Arg::TextArray(v) => v.len() > GENERIC_MAX_VALUES,
        });
        if !long {
            return self.generic;
        }
        if self.custom.get().is_null() {
            self.custom.set(prepare_kept(
                &self.sql,
                &self.argtypes,
                pg_sys::CURSOR_OPT_CUSTOM_PLAN as i32,
            ));
        }
        self.custom.get()
    }

    /// Runs the statement; `snapshot` runs it read-only against that
    /// snapshot instead of a fresh one.
    pub fn run(
        &self,
        args: &[Arg],
        snapshot: Option<pg_sys::Snapshot>,
    ) -> Vec<Vec<Option<String>>> {
        let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(args.len());
        for a in args {
            let d = match a {
                Arg::TextArray(v) => pgrx::IntoDatum::into_datum(v.clone()),
            };
            values.push(d.unwrap_or(pg_sys::Datum::from(0)));
        }
        let plan = self.plan_for(args);
        self.execute(plan, &values, snapshot)
    }

    fn execute(
        &self,
        plan: pg_sys::SPIPlanPtr,
        values: &[pg_sys::Datum],
        snapshot: Option<pg_sys::Snapshot>,
    ) -> Vec<Vec<Option<String>>> {
        let mut values = values.to_vec();
        let nulls: Vec<std::ffi::c_char> = vec![b' ' as std::ffi::c_char; values.len()];
        // SAFETY: the plan is valid and kept; values match its argument types.
        unsafe {
            let rc = match snapshot {
                Some(s) => pg_sys::SPI_execute_snapshot(
                    plan,
                    values.as_mut_ptr(),
                    nulls.as_ptr(),
                    s,
                    std::ptr::null_mut(),
                    true,
                    false,
                    0,
                ),
                None => {
                    pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
                }
            };
            if rc < 0 {
                crate::error::raise_with(
                    "XX000",
                    format!("pg_tviews: statement failed (SPI error {rc})"),
                    None,
                    None,
                );
            }
            tuptable(false)
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: frees the kept plans; valid outside an SPI connection too.
        unsafe {
            pg_sys::SPI_freeplan(self.generic);
            if !self.custom.get().is_null() {
                pg_sys::SPI_freeplan(self.custom.get());
            }
            for p in self.by_size.borrow().iter() {
                if !p.is_null() {
                    pg_sys::SPI_freeplan(*p);
                }
            }
        }
    }
}

/// `SPI_prepare_cursor` + `SPI_keepplan`, raising on failure.
fn prepare_kept(
    sql: &std::ffi::CStr,
    argtypes: &[pg_sys::Oid],
    options: i32,
) -> pg_sys::SPIPlanPtr {
    let mut types = argtypes.to_vec();
    // SAFETY: valid C string and argument type array; errors are raised.
    unsafe {
        let ptr = pg_sys::SPI_prepare_cursor(
            sql.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            options,
        );
        if ptr.is_null() {
            let code = pg_sys::SPI_result;
            crate::error::raise_with(
                "XX000",
                format!("pg_tviews: could not prepare a statement (SPI error {code})"),
                Some(sql.to_string_lossy().into_owned()),
                None,
            );
        }
        pg_sys::SPI_keepplan(ptr);
        ptr
    }
}

#[cfg(test)]
mod size_class_tests {
    use super::size_class;

    #[test]
    fn classes_are_powers_of_four() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 1),
            (4, 1),
            (5, 2),
            (16, 2),
            (17, 3),
            (64, 3),
            (65, 4),
            (1000, 5),
            (1024, 5),
            (1025, 6),
            (u64::MAX, 32),
        ];
        for (rows, class) in cases {
            assert_eq!(size_class(rows), class, "{rows} rows");
        }
    }
}
