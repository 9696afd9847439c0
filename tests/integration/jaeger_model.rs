//! The Jaeger answer model the `jaeger` tests decode weft's answers with, checked against
//! answers of a real Jaeger (`../shared/reference`). Apart from `jaeger`, whose tests run again
//! against each object store: this one reads no storage.

use crate::jaeger::{Envelope, Trace, check_trace, reference};

#[test]
fn the_model_decodes_jaegers_own_answers() {
    let trace: Trace = serde_json::from_str(&reference("jaeger-trace-example.json")).unwrap();
    check_trace(&trace);
    let envelope: Envelope<Vec<Trace>> =
        serde_json::from_str(&reference("jaeger-from-otlp-example.json")).unwrap();
    envelope.data.unwrap().iter().for_each(check_trace);
}
