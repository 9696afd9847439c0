//! Integration tests: a real weft on port 0, real OTLP clients, real files.

mod bad_input;
mod cluster;
mod common;
mod dataset;
mod durability;
mod faults;
mod full_disk;
mod grpc_query;
mod jaeger;
mod jaeger_model;
mod jaeger_v3;
mod limits;
mod node_queries;
mod object_storage;
mod otlp_clients;
mod peel;
mod postgres;
mod query_api;
mod retention;
mod security;
mod service_map;
mod severity;
mod source_filter;
mod tail;
mod ui;
