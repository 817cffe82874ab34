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
}

pub fn statement_mode() -> bool {
    REFRESH_MODE.get() == RefreshMode::Statement
}
