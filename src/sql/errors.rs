//! The one mapping from engine errors to PostgreSQL error reports (SQLSTATE, message, detail, hint).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

use crate::engine::{ErrorKind, RecsysError};

pub type SqlResult<T> = Result<T, ErrorReport>;

impl From<RecsysError> for ErrorReport {
    fn from(e: RecsysError) -> Self {
        let code = match e.kind {
            ErrorKind::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ErrorKind::NullValue => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            ErrorKind::UndefinedObject => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            ErrorKind::UndefinedColumn => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            ErrorKind::DatatypeMismatch => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            ErrorKind::NotReady => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ErrorKind::TooLarge => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            ErrorKind::OutOfMemory => PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
            ErrorKind::Corrupt => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            ErrorKind::Internal => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            ErrorKind::Unsupported => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        };
        let mut report = ErrorReport::new(code, e.message, "pg_recsys");
        if let Some(d) = e.detail {
            report = report.set_detail(d);
        }
        if let Some(h) = e.hint {
            report = report.set_hint(h);
        }
        report
    }
}

/// An SPI failure that is not a PostgreSQL ERROR (those propagate with their own SQLSTATE) is a
/// bug in this extension: report it as an internal error with what SPI said.
pub fn spi(e: pgrx::spi::SpiError) -> ErrorReport {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_recsys: SPI failed: {e}"), "pg_recsys")
}

/// A SQL argument that must not be NULL.
pub fn required<T>(value: Option<T>, name: &str) -> SqlResult<T> {
    value.ok_or_else(|| RecsysError::new(ErrorKind::NullValue, format!("{name} must not be NULL")).into())
}

/// `n` of recommend/similar_items: at least 1.
pub fn positive_n(n: Option<i32>) -> SqlResult<usize> {
    let n = required(n, "n")?;
    if n < 1 {
        return Err(RecsysError::invalid(format!("n must be at least 1, got {n}")).into());
    }
    Ok(n as usize)
}

/// The first column of the first row of a read-only query, None when it has no row. Unlike
/// `Spi::get_one_with_args` it does not mark the transaction as writing, which takes a
/// transaction id: the serving path must work on a hot standby, which has none to give.
pub fn read_one<T: pgrx::FromDatum + pgrx::IntoDatum>(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> SqlResult<Option<T>> {
    pgrx::spi::Spi::connect(|c| {
        let t = c.select(sql, None, args)?;
        if t.is_empty() {
            return Ok(None);
        }
        t.first().get_one::<T>()
    })
    .map_err(spi)
}
