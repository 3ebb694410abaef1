//! Standalone demo upstream server (HTTP/1.1 + h2c) for trying out weir.
//!
//! ```text
//! cargo run --example upstream -- --listen 127.0.0.1:9001 --name repo-1
//! curl -s 'http://127.0.0.1:9001/some/path?x=1'
//! curl -s 'http://127.0.0.1:9001/healthz'
//! curl -s 'http://127.0.0.1:9001/?delay_ms=200&status=503'
//! curl -s 'http://127.0.0.1:9001/?bytes=1000000' | wc -c
//! ```
//!
//! See `examples/support/upstream_server.rs` for the full behaviour.

#[path = "support/upstream_server.rs"]
mod upstream_server;

use std::net::SocketAddr;

use clap::Parser;

/// Demo upstream server: echoes requests as JSON.
#[derive(Parser, Debug)]
#[command(name = "upstream")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Name reported as "server" in every JSON response.
    #[arg(long, default_value = "upstream")]
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let args = Args::parse();
    let addr = upstream_server::bind(args.listen, &args.name)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    tracing::info!(name = %args.name, %addr, "upstream listening on http://{addr} (HTTP/1.1 + h2c)");

    tokio::signal::ctrl_c().await?;
    Ok(())
}
