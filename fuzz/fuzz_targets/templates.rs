//! Log templates: masking never panics and stays within its bounds, every line clusters into a
//! template it fits, and every line fits the filter of its own masked form (what
//! `pattern:"…"` keeps).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_index::templates::{
    Drain, MAX_TOKENS, Payload, body_matches, join, parse_template, tokens,
};

#[derive(Default)]
struct Count(u64);

impl Payload for Count {
    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut drain = Drain::default();
    let lines: Vec<&str> = text.split('\n').collect();
    for line in &lines {
        let masked = tokens(line);
        assert!(masked.len() <= MAX_TOKENS);
        let shown = join(&masked);
        assert!(
            body_matches(&parse_template(&shown), line),
            "{line:?} does not fit its own template {shown:?}"
        );
        drain.add(&masked, Count(1));
    }
    let templates = drain.into_templates();
    let clustered: u64 = templates.iter().map(|t| t.payload.0).sum();
    assert_eq!(clustered, lines.len() as u64);
    for line in &lines {
        let masked = tokens(line);
        if !masked.is_empty() {
            assert!(
                templates.iter().any(|t| body_matches(&t.tokens, line)),
                "{line:?} fits no template"
            );
        }
    }
});
