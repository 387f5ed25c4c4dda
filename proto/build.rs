//! Compiles the `.proto` files with `protox` (a protobuf compiler written in Rust), so a fresh
//! machine builds with cargo alone: no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/auth/v1/auth.proto", "proto/orders/v1/orders.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
