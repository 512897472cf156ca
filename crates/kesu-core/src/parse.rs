//! The error every word-list and rules parser returns: a message and, when
//! the problem is on one line, its 1-based line. The caller that knows the
//! file ([`crate::lists::ListError`]) adds the file name.

/// A file's text that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ParseError {
    /// 1-based line of the offending row, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    /// An error on line `line`.
    pub fn at(line: usize, message: impl Into<String>) -> ParseError {
        ParseError { line: Some(line), message: message.into() }
    }

    /// An error about the whole file.
    pub fn whole(message: impl Into<String>) -> ParseError {
        ParseError { line: None, message: message.into() }
    }
}
