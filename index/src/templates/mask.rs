//! A log body as the tokens patterns are made of, its obviously variable parts already masked.
//!
//! Masking first means `order 123 failed` and `order 456 failed` are one template from the
//! first record on, rather than two clusters that only merge once the second is seen; and it
//! keeps values that are never twice the same (IDs, durations, addresses) from growing the
//! clustering tree. What is masked, each as one [`WILDCARD`] token:
//! - a quoted value, `"…"` or `'…'`, whatever is inside (spaces included), when the quote opens
//!   a token or follows `=` or `:` (so an apostrophe in "don't" is not a quote);
//! - the value of `key=value` when it is variable, keeping `key=`;
//! - any other token with a digit in it: numbers, durations (`12ms`), IPs, UUIDs, hex IDs,
//!   timestamps, paths with IDs in them. Punctuation around it stays (`(<*>),`).
//!
//! Whatever else varies between records is found by the clustering (`super::drain`).

use std::borrow::Cow;

/// A variable token in a template.
pub const WILDCARD: &str = "<*>";

/// Longest body read, in bytes: a template of a megabyte of text says nothing more than its
/// first lines do, and the clustering is linear in the tokens.
pub const MAX_BODY_BYTES: usize = 4096;
/// Most tokens taken from a body.
pub const MAX_TOKENS: usize = 128;

/// The tokens of `body`, masked.
pub fn tokens(body: &str) -> Vec<Cow<'_, str>> {
    let body = truncate(body, MAX_BODY_BYTES);
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len() < MAX_TOKENS {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        // A token ends at whitespace, unless a quote opened inside it runs on.
        let mut quoted = false;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            let b = bytes[i];
            if (b == b'"' || b == b'\'')
                && opens_quote(bytes, start, i)
                && let Some(close) = closing_quote(bytes, i)
            {
                quoted = true;
                i = close + 1;
                continue;
            }
            i += 1;
        }
        let token = &body[start..i];
        out.push(if quoted {
            Cow::Owned(mask_quotes(token))
        } else {
            mask(token)
        });
    }
    out
}

/// The tokens joined as a template is shown.
pub fn join<S: AsRef<str>>(tokens: &[S]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(token.as_ref());
    }
    out
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A quote at `at` opens a quoted value when it starts the token or follows `=`, `:`, `(` or
/// `[`.
fn opens_quote(bytes: &[u8], token_start: usize, at: usize) -> bool {
    at == token_start || matches!(bytes[at - 1], b'=' | b':' | b'(' | b'[')
}

/// The matching quote after the one at `open`, followed by the end, whitespace or punctuation.
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            let next = bytes.get(i + 1);
            if next.is_none_or(|n| !n.is_ascii_alphanumeric()) {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// A token holding quoted values: each quoted value masked, the rest as [`mask`] would.
fn mask_quotes(token: &str) -> String {
    let bytes = token.as_bytes();
    let mut out = String::new();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (b == b'"' || b == b'\'')
            && opens_quote(bytes, 0, i)
            && let Some(close) = closing_quote(bytes, i)
        {
            out.push_str(&token[plain..i]);
            out.push_str(WILDCARD);
            i = close + 1;
            plain = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&mask(&token[plain..]));
    out
}

/// One whitespace-free token: masked when it holds a digit, `key=` kept.
fn mask(token: &str) -> Cow<'_, str> {
    if !token.bytes().any(|b| b.is_ascii_digit()) {
        return Cow::Borrowed(token);
    }
    if let Some(eq) = token.find('=')
        && eq > 0
        && !token[..eq].bytes().any(|b| b.is_ascii_digit())
    {
        let value = &token[eq + 1..];
        return Cow::Owned(format!("{}={}", &token[..eq], mask(value)));
    }
    // Punctuation around the value stays: `(42),` is `(<*>),`.
    let core_start = token
        .find(|c: char| c.is_alphanumeric() || c == '-' || c == '+' || c == '/')
        .unwrap_or(0);
    let core_end = token
        .rfind(|c: char| c.is_alphanumeric() || c == '/')
        .map_or(token.len(), |i| {
            i + token[i..].chars().next().map_or(1, char::len_utf8)
        });
    if core_start >= core_end {
        return Cow::Owned(WILDCARD.to_string());
    }
    Cow::Owned(format!(
        "{}{WILDCARD}{}",
        &token[..core_start],
        &token[core_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(body: &str) -> String {
        join(&tokens(body))
    }

    #[test]
    fn numbers_ids_and_addresses_are_masked_words_are_not() {
        assert_eq!(masked("order 123 failed"), "order <*> failed");
        assert_eq!(masked("order 456 failed"), "order <*> failed");
        assert_eq!(
            masked("user 6f1c2a34-9b0e-4c8d-a1f2-3e4d5c6b7a80 from 10.0.0.12 took 12ms"),
            "user <*> from <*> took <*>"
        );
        assert_eq!(
            masked("retrying (attempt 3), giving up"),
            "retrying (attempt <*>), giving up"
        );
        assert_eq!(masked("GET /api/orders/981 200"), "GET <*> <*>");
        assert_eq!(masked("cache miss"), "cache miss");
    }

    #[test]
    fn key_value_pairs_keep_their_key() {
        assert_eq!(
            masked("request done status=200 route=/checkout latency_ms=31.5"),
            "request done status=<*> route=/checkout latency_ms=<*>"
        );
    }

    #[test]
    fn quoted_values_are_one_token_whatever_is_inside() {
        assert_eq!(
            masked(r#"unknown product "blue suede shoes" in cart"#),
            "unknown product <*> in cart"
        );
        assert_eq!(masked("user='Ann Lee' locked"), "user=<*> locked");
        assert_eq!(masked(r#"name:"a \"b\" c" ok"#), "name:<*> ok");
        // An apostrophe is not a quote, and an unclosed quote masks nothing.
        assert_eq!(masked("don't retry"), "don't retry");
        assert_eq!(masked("say \"hello there"), "say \"hello there");
    }

    #[test]
    fn whitespace_is_normalised_and_size_is_bounded() {
        assert_eq!(masked("  a \t b\n\nc "), "a b c");
        let long = "word ".repeat(10_000);
        assert_eq!(tokens(&long).len(), MAX_TOKENS);
        let wide = "é".repeat(5_000);
        assert!(tokens(&wide)[0].len() <= MAX_BODY_BYTES);
    }
}
