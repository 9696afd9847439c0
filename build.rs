//! Compiles weft's own gRPC services from proto/ with protox, a pure-Rust protobuf compiler,
//! so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors =
        protox::compile(["weft/v1/query.proto", "weft/v1/severity.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
