//! Parser for weft's query language.
//!
//! ```text
//! query   := or
//! or      := and ("OR" and)*
//! and     := unary (["AND"] unary)*          adjacent terms are ANDed
//! unary   := ("NOT" | "-") unary | primary
//! primary := "(" or ")" | term
//! term    := FIELD (":" | ">=" | "<=" | ">" | "<" | "=") value | PHRASE | WORD
//! value   := WORD | PHRASE
//! ```
//! Errors carry the character position where parsing failed and what was expected there.
//!
//! Queries come from clients, so their size is bounded before anything is built from them:
//! [`MAX_QUERY_CHARS`] characters and [`MAX_QUERY_DEPTH`] levels of parentheses and negations.
//! The parser, the compiler and the live-tail matcher all recurse over the expression, so the
//! depth bound is what keeps a hostile query from overflowing a thread's stack.

use super::{CmpOp, Expr, QueryError};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 8192;
/// Deepest nesting of parentheses and `NOT`/`-` accepted.
pub const MAX_QUERY_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    LParen,
    RParen,
    Minus,
    And,
    Or,
    Not,
    Word(String),
    Phrase(String),
    /// `field:value`, `field>=value`, …; the value may be a word or a phrase.
    Filter {
        field: String,
        op: CmpOp,
        value: String,
        phrase: bool,
    },
}

#[derive(Clone, Debug)]
struct Spanned {
    token: Token,
    pos: usize,
}

/// Parses a query. An empty (or all-blank) query is `Ok(None)`: it matches everything.
pub fn parse(input: &str) -> Result<Option<Expr>, QueryError> {
    let chars = input.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(QueryError::syntax(
            MAX_QUERY_CHARS,
            format!("query is {chars} characters long; the limit is {MAX_QUERY_CHARS}"),
        ));
    }
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        end: chars,
        depth: 0,
    };
    let expr = parser.or()?;
    if let Some(t) = parser.peek() {
        let what = if t.token == Token::RParen {
            "an unmatched ')'"
        } else {
            "more input"
        };
        return Err(QueryError::syntax(
            t.pos,
            format!("expected end of query, found {what}"),
        ));
    }
    Ok(Some(expr))
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '"')
}

fn tokenize(input: &str) -> Result<Vec<Spanned>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                tokens.push(Spanned {
                    token: Token::LParen,
                    pos: i,
                });
                i += 1;
            }
            ')' => {
                tokens.push(Spanned {
                    token: Token::RParen,
                    pos: i,
                });
                i += 1;
            }
            '"' => {
                let (text, next) = read_phrase(&chars, i)?;
                tokens.push(Spanned {
                    token: Token::Phrase(text),
                    pos: start,
                });
                i = next;
            }
            '-' if i + 1 < chars.len() && is_word_char(chars[i + 1])
                || chars.get(i + 1) == Some(&'"')
                || chars.get(i + 1) == Some(&'(') =>
            {
                tokens.push(Spanned {
                    token: Token::Minus,
                    pos: i,
                });
                i += 1;
            }
            _ => {
                while i < chars.len()
                    && is_word_char(chars[i])
                    && !is_operator_start(&chars, i, start)
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if i < chars.len() && is_operator_start(&chars, i, start) {
                    let (op, len) = read_operator(&chars, i);
                    i += len;
                    let value_pos = i;
                    if chars.get(i) == Some(&'"') {
                        let (text, next) = read_phrase(&chars, i)?;
                        i = next;
                        tokens.push(Spanned {
                            token: Token::Filter {
                                field: word,
                                op,
                                value: text,
                                phrase: true,
                            },
                            pos: start,
                        });
                    } else {
                        while i < chars.len() && is_word_char(chars[i]) {
                            i += 1;
                        }
                        let value: String = chars[value_pos..i].iter().collect();
                        if value.is_empty() {
                            return Err(QueryError::syntax(
                                value_pos,
                                format!("expected a value after '{word}{}'", op.symbol()),
                            ));
                        }
                        tokens.push(Spanned {
                            token: Token::Filter {
                                field: word,
                                op,
                                value,
                                phrase: false,
                            },
                            pos: start,
                        });
                    }
                } else {
                    let token = match word.as_str() {
                        "AND" | "&&" => Token::And,
                        "OR" | "||" => Token::Or,
                        "NOT" => Token::Not,
                        _ => Token::Word(word),
                    };
                    tokens.push(Spanned { token, pos: start });
                }
            }
        }
    }
    Ok(tokens)
}

/// An operator starts a filter only after a non-empty field name made of name characters,
/// so `http://x` and `a:b:c` values still read as the user meant.
fn is_operator_start(chars: &[char], i: usize, word_start: usize) -> bool {
    if i == word_start {
        return false;
    }
    let field_ok = chars[word_start..i]
        .iter()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let url_like =
        chars[i] == ':' && chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/');
    field_ok && !url_like && matches!(chars[i], ':' | '>' | '<' | '=')
}

fn read_operator(chars: &[char], i: usize) -> (CmpOp, usize) {
    let next = chars.get(i + 1).copied();
    match (chars[i], next) {
        ('>', Some('=')) => (CmpOp::Ge, 2),
        ('<', Some('=')) => (CmpOp::Le, 2),
        ('>', _) => (CmpOp::Gt, 1),
        ('<', _) => (CmpOp::Lt, 1),
        ('=', _) => (CmpOp::Eq, 1),
        _ => (CmpOp::Eq, 1),
    }
}

fn read_phrase(chars: &[char], open: usize) -> Result<(String, usize), QueryError> {
    let mut i = open + 1;
    let mut text = String::new();
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((text, i + 1)),
            '\\' if i + 1 < chars.len() => {
                text.push(chars[i + 1]);
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(QueryError::syntax(
        open,
        "expected a closing '\"' for the phrase that starts here".to_string(),
    ))
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    end: usize,
    /// Parentheses and negations open around the token being parsed.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.next)
    }

    fn bump(&mut self) -> Option<Spanned> {
        let t = self.tokens.get(self.next).cloned();
        self.next += 1;
        t
    }

    fn pos(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.and()?];
        while matches!(self.peek(), Some(t) if t.token == Token::Or) {
            self.bump();
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek().map(|t| &t.token) {
                Some(Token::And) => {
                    self.bump();
                    parts.push(self.unary()?);
                }
                Some(Token::Or) | Some(Token::RParen) | None => break,
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::And(parts)
        })
    }

    /// Enters one level of nesting at `pos`, refusing to go past [`MAX_QUERY_DEPTH`].
    fn descend(&mut self, pos: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_QUERY_DEPTH {
            return Err(QueryError::syntax(
                pos,
                format!(
                    "query nests parentheses and negations deeper than {MAX_QUERY_DEPTH} levels (the limit)"
                ),
            ));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if let Some(t) = self.peek()
            && matches!(t.token, Token::Not | Token::Minus)
        {
            let pos = t.pos;
            self.bump();
            self.descend(pos)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let pos = self.pos();
        let Some(t) = self.bump() else {
            return Err(QueryError::syntax(
                pos,
                "expected a word, a \"phrase\", a field:value filter or '('".to_string(),
            ));
        };
        match t.token {
            Token::LParen => {
                self.descend(t.pos)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.bump() {
                    Some(Spanned {
                        token: Token::RParen,
                        ..
                    }) => Ok(inner),
                    _ => Err(QueryError::syntax(
                        self.pos().min(self.end),
                        format!("expected ')' to close the '(' at position {}", t.pos),
                    )),
                }
            }
            Token::Word(w) => Ok(Expr::Text {
                text: w,
                pos: t.pos,
            }),
            Token::Phrase(p) => Ok(Expr::Phrase {
                text: p,
                pos: t.pos,
            }),
            Token::Filter {
                field,
                op,
                value,
                phrase,
            } => Ok(Expr::Filter {
                field,
                op,
                value,
                phrase,
                pos: t.pos,
            }),
            Token::RParen => Err(QueryError::syntax(
                t.pos,
                "expected a term before ')'".to_string(),
            )),
            Token::And | Token::Or => Err(QueryError::syntax(
                t.pos,
                "expected a term before AND/OR".to_string(),
            )),
            Token::Not | Token::Minus => unreachable!("handled by unary"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, pos: usize) -> Expr {
        Expr::Text {
            text: t.to_string(),
            pos,
        }
    }

    #[test]
    fn empty_query_matches_everything() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn adjacent_words_are_anded() {
        assert_eq!(
            parse("card declined").unwrap(),
            Some(Expr::And(vec![text("card", 0), text("declined", 5)]))
        );
    }

    #[test]
    fn or_binds_looser_than_and() {
        let e = parse("a b OR c").unwrap().unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                Expr::And(vec![text("a", 0), text("b", 2)]),
                text("c", 7)
            ])
        );
    }

    #[test]
    fn filters_and_comparisons() {
        let e = parse("service:check* severity>=WARN attr.order.id:\"88 12\"")
            .unwrap()
            .unwrap();
        let Expr::And(parts) = e else {
            panic!("expected AND")
        };
        assert_eq!(
            parts[0],
            Expr::Filter {
                field: "service".into(),
                op: CmpOp::Eq,
                value: "check*".into(),
                phrase: false,
                pos: 0
            }
        );
        assert_eq!(
            parts[1],
            Expr::Filter {
                field: "severity".into(),
                op: CmpOp::Ge,
                value: "WARN".into(),
                phrase: false,
                pos: 15
            }
        );
        assert_eq!(
            parts[2],
            Expr::Filter {
                field: "attr.order.id".into(),
                op: CmpOp::Eq,
                value: "88 12".into(),
                phrase: true,
                pos: 30
            }
        );
    }

    #[test]
    fn negation_forms() {
        assert_eq!(
            parse("-debug").unwrap(),
            Some(Expr::Not(Box::new(text("debug", 1))))
        );
        assert_eq!(
            parse("NOT (a OR b)").unwrap(),
            Some(Expr::Not(Box::new(Expr::Or(vec![
                text("a", 5),
                text("b", 10)
            ]))))
        );
    }

    #[test]
    fn urls_stay_words() {
        assert_eq!(parse("http://x/y").unwrap(), Some(text("http://x/y", 0)));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("a AND (b OR").unwrap_err();
        assert_eq!(e.position(), Some(11));
        let e = parse("\"unclosed").unwrap_err();
        assert_eq!(e.position(), Some(0));
        let e = parse("a )").unwrap_err();
        assert_eq!(e.position(), Some(2));
        let e = parse("service:").unwrap_err();
        assert_eq!(e.position(), Some(8));
        let e = parse("OR a").unwrap_err();
        assert_eq!(e.position(), Some(0));
    }

    /// Regression: 10,000 nested parentheses overflowed the stack of the thread parsing them
    /// and aborted weft (today such a query is over the length limit as well).
    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}a{}", "(".repeat(4_000), ")".repeat(4_000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message().contains("deeper than 32"), "{e}");
        assert_eq!(e.position(), Some(MAX_QUERY_DEPTH));
        let e = parse(&format!("{}a", "NOT ".repeat(2_000))).unwrap_err();
        assert!(e.message().contains("deeper than 32"), "{e}");
        let e = parse(&format!("{}a", "-".repeat(1_000))).unwrap_err();
        assert!(e.message().contains("deeper than 32"), "{e}");
        // At the limit it parses.
        let ok = format!(
            "{}a{}",
            "(".repeat(MAX_QUERY_DEPTH),
            ")".repeat(MAX_QUERY_DEPTH)
        );
        assert_eq!(parse(&ok).unwrap(), Some(text("a", MAX_QUERY_DEPTH)));
        let ok = format!("{}(a)", "-".repeat(MAX_QUERY_DEPTH - 1));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn length_is_bounded() {
        let long = "a ".repeat(MAX_QUERY_CHARS);
        let e = parse(&long).unwrap_err();
        assert!(e.message().contains("limit is 8192"), "{e}");
        assert!(parse(&"a".repeat(MAX_QUERY_CHARS)).is_ok());
    }
}
