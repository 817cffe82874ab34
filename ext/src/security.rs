//! Who maintenance runs as, and under which settings (DESIGN.md §7).
//!
//! Refresh runs as the TVIEW's owner in a security-restricted operation,
//! with a fixed `search_path` and the settings recorded when the TVIEW was
//! created; our own catalog work runs as the extension's owner. Both are
//! undone on the normal path here, and by PostgreSQL's (sub)transaction
//! abort on an error.

use std::ffi::CString;

use pgrx::prelude::*;

/// Settings that change how values are rendered, recorded per TVIEW at
/// creation and applied to every refresh of it.
pub const RECORDED_SETTINGS: &[&str] = &[
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "extra_float_digits",
    "bytea_output",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "xmloption",
];

/// Settings for moving values through text between capture and flush:
/// every type's output under these reads back to the same value under any
/// other settings.
pub const TRANSPORT_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "iso_8601"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
];

/// The search_path of every statement we generate or run for maintenance.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Runs `f` as `user`. `restricted` adds SECURITY_RESTRICTED_OPERATION, as
/// PostgreSQL does for REFRESH MATERIALIZED VIEW and index builds.
pub fn as_user<R>(user: pg_sys::Oid, restricted: bool, f: impl FnOnce() -> R) -> R {
    let mut old_user = pg_sys::Oid::INVALID;
    let mut old_ctx: i32 = 0;
    // SAFETY: plain reads/writes of the backend's current user id.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut old_user, &mut old_ctx);
        let mut ctx = old_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
        if restricted {
            ctx |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        }
        pg_sys::SetUserIdAndSecContext(user, ctx);
    }
    let r = f();
    // SAFETY: restores what was read above. On an error we do not get here:
    // (sub)transaction abort restores the user id itself.
    unsafe { pg_sys::SetUserIdAndSecContext(old_user, old_ctx) };
    r
}

/// Runs `f` with `settings` applied at a new GUC nesting level (like
/// `SET LOCAL` scoped to the call).
pub fn with_settings<R>(settings: &[(String, String)], f: impl FnOnce() -> R) -> R {
    // SAFETY: paired NewGUCNestLevel / AtEOXact_GUC, as ri_triggers.c does.
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        set_local(name, value);
    }
    let r = f();
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    r
}

fn set_local(name: &str, value: &str) {
    let (Ok(n), Ok(v)) = (CString::new(name), CString::new(value)) else {
        return;
    };
    // SAFETY: valid C strings; errors are raised by PostgreSQL itself.
    unsafe {
        let context = if pg_sys::superuser() {
            pg_sys::GucContext::PGC_SUSET
        } else {
            pg_sys::GucContext::PGC_USERSET
        };
        pg_sys::set_config_option(
            n.as_ptr(),
            v.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// The current values of [`RECORDED_SETTINGS`].
pub fn current_settings() -> Vec<(String, String)> {
    RECORDED_SETTINGS
        .iter()
        .filter_map(|name| {
            let n = CString::new(*name).ok()?;
            // SAFETY: GetConfigOptionByName returns a palloc'd C string.
            let v = unsafe {
                let p = pg_sys::GetConfigOptionByName(n.as_ptr(), std::ptr::null_mut(), false);
                if p.is_null() {
                    return None;
                }
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            };
            Some((name.to_string(), v))
        })
        .collect()
}

/// Settings as stored in the catalog: `{name=value, ...}`.
pub fn encode_settings(settings: &[(String, String)]) -> Vec<String> {
    settings.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub fn decode_settings(stored: &[String]) -> Vec<(String, String)> {
    stored
        .iter()
        .filter_map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .filter(|(k, _)| RECORDED_SETTINGS.contains(&k.as_str()))
        .collect()
}

/// The settings a refresh of a TVIEW runs under.
pub fn refresh_settings(recorded: &[(String, String)]) -> Vec<(String, String)> {
    let mut s = recorded.to_vec();
    s.push(("search_path".into(), SAFE_SEARCH_PATH.into()));
    s
}

pub fn transport_settings() -> Vec<(String, String)> {
    TRANSPORT_SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
