//! The one error type of the engine. The glue maps each kind to a SQLSTATE once (src/sql/errors.rs).

use std::fmt;

/// What went wrong, in terms a database user understands; each maps to one SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 22023 invalid_parameter_value
    InvalidParameter,
    /// 22004 null_value_not_allowed
    NullValue,
    /// 42704 undefined_object
    UndefinedObject,
    /// 42703 undefined_column
    UndefinedColumn,
    /// 42804 datatype_mismatch
    DatatypeMismatch,
    /// 55000 object_not_in_prerequisite_state
    NotReady,
    /// 54000 program_limit_exceeded
    TooLarge,
    /// 53200 out_of_memory: a buffer the machine cannot give (the size is in the detail)
    OutOfMemory,
    /// XX001 data_corrupted: a stored model that does not decode
    Corrupt,
    /// XX000 internal_error: a failure inside a library (e.g. Candle) that is nobody's input
    Internal,
    /// 0A000 feature_not_supported
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RecsysError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type Result<T> = std::result::Result<T, RecsysError>;

impl fmt::Display for RecsysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl RecsysError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RecsysError { kind, message: message.into(), detail: None, hint: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
