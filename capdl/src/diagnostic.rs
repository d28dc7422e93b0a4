//! Source positions and the one error type every stage reports.

use std::fmt;
use std::sync::Arc;

/// Where something is in a manifest: file name, line and column (both
/// counted from 1; columns count characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The manifest's file name, as given to the parser.
    pub file: Arc<str>,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// An error in a manifest: where, what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The position the error points at.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(span: &Span, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { span: span.clone(), message: message.into(), hint: hint.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: error: {}\n  hint: {}", self.span, self.message, self.hint)
    }
}

impl std::error::Error for Diagnostic {}
