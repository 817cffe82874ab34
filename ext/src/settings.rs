//! The extension's settings (GUCs).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// When queued refresh work runs.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RefreshMode {
    /// Just before the transaction commits or is prepared (the default).
    #[name = c"commit"]
    Commit,
    /// At the end of each statement, so the transaction reads its own
    /// writes in the TVIEWs before it commits.
    #[name = c"statement"]
    Statement,
}

pub static REFRESH_MODE: GucSetting<RefreshMode> =
    GucSetting::<RefreshMode>::new(RefreshMode::Commit);

pub static ALLOW_DIRECT_WRITES: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn register() {
    GucRegistry::define_enum_guc(
        c"pg_tviews.refresh_mode",
        c"When TVIEWs are refreshed: at commit, or after each statement.",
        c"commit (default): the transaction's writes are reflected in the TVIEWs just before it commits or is prepared. \
statement: after each statement, so the transaction sees its own writes in the TVIEWs; costs more for transactions of many statements. \
Settable per session, role, database, or with SET LOCAL.",
        &REFRESH_MODE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_tviews.allow_direct_writes",
        c"Lets a superuser write TVIEWs directly (for repairs).",
        c"TVIEWs are only written by their refresh; with this on, INSERT, UPDATE, DELETE, TRUNCATE and COPY by a superuser are allowed. \
The TVIEW may then differ from its definition until pg_tviews_refresh() rebuilds it.",
        &ALLOW_DIRECT_WRITES,
        GucContext::Suset,
        GucFlags::default(),
    );
}

pub fn statement_mode() -> bool {
    REFRESH_MODE.get() == RefreshMode::Statement
}
