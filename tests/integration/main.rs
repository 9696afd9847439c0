//! Integration tests: a real weft on port 0, real OTLP clients, real files.

mod bad_input;
mod common;
mod durability;
mod otlp_clients;
mod retention;
