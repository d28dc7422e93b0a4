//! The lexer: manifest text to tokens. Newlines are tokens (the language
//! is line-oriented); `#` starts a comment that runs to the end of the line.

use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Span};

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A name or keyword: a letter or `_`, then letters, digits and `_`.
    Word(String),
    /// A number, decimal or `0x` hexadecimal (`_` separators allowed),
    /// with the unit written right after it (`64KiB`, `2ms`), if any.
    Number {
        /// The value before the unit is applied.
        value: u64,
        /// The unit suffix, empty if none.
        unit: String,
    },
    /// A double-quoted string (no escapes, no newlines).
    Text(String),
    /// `{`
    OpenBrace,
    /// `}`
    CloseBrace,
    /// `->`
    Arrow,
    /// `<->`
    BothWays,
    /// `..`
    DotDot,
    /// The end of a line.
    Newline,
    /// The end of the file.
    End,
}

impl TokenKind {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Self::Word(word) => format!("`{word}`"),
            Self::Number { .. } => "a number".to_owned(),
            Self::Text(_) => "a string".to_owned(),
            Self::OpenBrace => "`{`".to_owned(),
            Self::CloseBrace => "`}`".to_owned(),
            Self::Arrow => "`->`".to_owned(),
            Self::BothWays => "`<->`".to_owned(),
            Self::DotDot => "`..`".to_owned(),
            Self::Newline => "the end of the line".to_owned(),
            Self::End => "the end of the file".to_owned(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts.
    pub span: Span,
}

/// Splits `text` into tokens, ending with [`TokenKind::End`].
///
/// # Errors
///
/// An unexpected character, an unterminated string or a malformed number.
pub fn tokenize(file: &str, text: &str) -> Result<Vec<Token>, Diagnostic> {
    let file: Arc<str> = Arc::from(file);
    let characters: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let mut line: u32 = 1;
    let mut column: u32 = 1;
    while let Some(&character) = characters.get(index) {
        let span = Span { file: file.clone(), line, column };
        let next = characters.get(index + 1).copied();
        let start = index;
        let kind = match character {
            '\n' => {
                index += 1;
                line = line.saturating_add(1);
                column = 1;
                tokens.push(Token { kind: TokenKind::Newline, span });
                continue;
            }
            ' ' | '\t' | '\r' => {
                index += 1;
                column = column.saturating_add(1);
                continue;
            }
            '#' => {
                while characters.get(index).is_some_and(|&c| c != '\n') {
                    index += 1;
                    column = column.saturating_add(1);
                }
                continue;
            }
            '{' => {
                index += 1;
                TokenKind::OpenBrace
            }
            '}' => {
                index += 1;
                TokenKind::CloseBrace
            }
            '-' if next == Some('>') => {
                index += 2;
                TokenKind::Arrow
            }
            '<' if next == Some('-') && characters.get(index + 2) == Some(&'>') => {
                index += 3;
                TokenKind::BothWays
            }
            '.' if next == Some('.') => {
                index += 2;
                TokenKind::DotDot
            }
            '"' => {
                index += 1;
                let mut content = String::new();
                loop {
                    match characters.get(index) {
                        Some('"') => {
                            index += 1;
                            break;
                        }
                        Some('\n') | None => {
                            return Err(Diagnostic::new(
                                &span,
                                "unterminated string",
                                "close the string with `\"` on the same line",
                            ));
                        }
                        Some(&c) => {
                            content.push(c);
                            index += 1;
                        }
                    }
                }
                TokenKind::Text(content)
            }
            c if c.is_ascii_digit() => {
                while characters.get(index).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    index += 1;
                }
                let word: String = characters[start..index].iter().collect();
                lex_number(&word, &span)?
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while characters.get(index).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    index += 1;
                }
                TokenKind::Word(characters[start..index].iter().collect())
            }
            other => {
                return Err(Diagnostic::new(
                    &span,
                    format!("unexpected character `{}`", other.escape_debug()),
                    "names are letters, digits and `_`; comments start with `#`",
                ));
            }
        };
        let length = u32::try_from(index - start).unwrap_or(u32::MAX);
        column = column.saturating_add(length);
        tokens.push(Token { kind, span });
    }
    tokens.push(Token { kind: TokenKind::End, span: Span { file, line, column } });
    Ok(tokens)
}

/// Reads `0x1f`, `4096`, `1_000`, `64KiB` or `2ms` into a value and unit.
fn lex_number(word: &str, span: &Span) -> Result<TokenKind, Diagnostic> {
    let malformed = || {
        Diagnostic::new(
            span,
            format!("malformed number `{word}`"),
            "write decimal (`4096`) or hexadecimal (`0x1000`) digits, then a unit if any (`64KiB`, `2ms`)",
        )
    };
    let (digits, radix) = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(rest) => (rest, 16),
        None => (word, 10),
    };
    let end = digits.find(|c: char| !(c.is_digit(radix) || c == '_')).unwrap_or(digits.len());
    let (number, unit) = digits.split_at(end);
    let number: String = number.chars().filter(|&c| c != '_').collect();
    if number.is_empty() || (radix == 16 && !unit.is_empty()) {
        return Err(malformed());
    }
    let value = u64::from_str_radix(&number, radix).map_err(|_| {
        Diagnostic::new(span, format!("number `{word}` does not fit in 64 bits"), "use a smaller number")
    })?;
    if unit.contains(|c: char| !c.is_ascii_alphabetic()) {
        return Err(malformed());
    }
    Ok(TokenKind::Number { value, unit: unit.to_owned() })
}
