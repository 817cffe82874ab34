//! Errors with the SQLSTATE, detail and hint `ext` reports them with.

use thiserror::Error;

/// Everything that can go wrong while analysing or planning a TVIEW.
/// `ext` maps each variant to `ereport(ERROR)` with [`TviewError::sqlstate`],
/// [`TviewError::detail`] and [`TviewError::hint`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TviewError {
    #[error("TVIEW {tview} has no key column \"{wanted}\"")]
    NoKeyColumn {
        tview: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("key column \"{column}\" of TVIEW {tview} is not a plain column of a table")]
    KeyNotAColumn { tview: String, column: String },
    #[error("key column \"{column}\" of TVIEW {tview} is not a GROUP BY column")]
    KeyNotGrouped { tview: String, column: String },
    #[error("TVIEW definition uses the volatile function {function}")]
    VolatileFunction { function: String },
    #[error("TVIEW definition depends on the time or the session: {what}")]
    SessionDependent { what: String },
    #[error("{construct} is not supported in a TVIEW definition")]
    Unsupported { construct: String, hint: String },
    #[error("TVIEW cannot read {relation}: {why}")]
    UnsupportedSource { relation: String, why: String },
    #[error("TVIEW dependency cycle: {cycle}")]
    Cycle { cycle: String },
    #[error("could not read the analysed definition: {0}")]
    NodeTree(String),
    #[error("internal error in pg_tviews: {0}")]
    Internal(String),
}

impl TviewError {
    /// The five-character SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            TviewError::NoKeyColumn { .. } => "42703", // undefined_column
            TviewError::KeyNotAColumn { .. } => "42P16", // invalid_table_definition
            TviewError::KeyNotGrouped { .. } => "42P16",
            TviewError::VolatileFunction { .. } => "0A000", // feature_not_supported
            TviewError::SessionDependent { .. } => "0A000",
            TviewError::Unsupported { .. } => "0A000",
            TviewError::UnsupportedSource { .. } => "0A000",
            TviewError::Cycle { .. } => "42P17", // invalid_object_definition
            TviewError::NodeTree(_) | TviewError::Internal(_) => "XX000",
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            TviewError::NoKeyColumn { available, .. } => Some(format!(
                "The definition's columns are: {}.",
                available.join(", ")
            )),
            TviewError::KeyNotAColumn { .. } => Some(
                "Keys are read from the changed rows of the sources, so the key must be a column of a table the definition reads, not an expression."
                    .into(),
            ),
            TviewError::KeyNotGrouped { .. } => Some(
                "In an aggregating definition each TVIEW row is one group, so the key must be a grouping column.".into(),
            ),
            TviewError::VolatileFunction { .. } => Some(
                "A volatile function can return a different value each time it is called, so no refresh could keep the TVIEW equal to its definition.".into(),
            ),
            TviewError::SessionDependent { .. } => Some(
                "A TVIEW row must not depend on when or by whom it was computed.".into(),
            ),
            TviewError::Cycle { .. } => Some("TVIEWs may read other TVIEWs only as a directed acyclic graph.".into()),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            TviewError::NoKeyColumn { wanted, .. } => Some(format!(
                "Add a column named \"{wanted}\" to the select list, or name the key explicitly: CREATE TABLE ... WITH (tviews.key = 'column') AS SELECT ..."
            )),
            TviewError::KeyNotAColumn { .. } => Some(
                "Select the underlying key column itself (for example p.pk_post), and compute derived values in other columns."
                    .into(),
            ),
            TviewError::KeyNotGrouped { column, .. } => Some(format!("Add {column} to GROUP BY, or choose a grouping column as the key.")),
            TviewError::VolatileFunction { .. } => Some(
                "Compute the value when the source row is written (a column with a default or a trigger) and read that column instead.".into(),
            ),
            TviewError::SessionDependent { .. } => Some(
                "Store the time or the user in a column of the source table when the row is written, and read that column.".into(),
            ),
            TviewError::Unsupported { hint, .. } => Some(hint.clone()),
            TviewError::UnsupportedSource { .. } => Some(
                "A TVIEW can read ordinary and partitioned tables, views over them, and other TVIEWs.".into(),
            ),
            TviewError::Cycle { .. } => Some("Drop or redefine one of the TVIEWs named above.".into()),
            TviewError::NodeTree(_) | TviewError::Internal(_) => {
                Some("This is a bug in pg_tviews: please report it with the definition.".into())
            }
        }
    }
}

pub type Result<T, E = TviewError> = std::result::Result<T, E>;
