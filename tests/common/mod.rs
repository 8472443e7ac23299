//! Shared by the tests that run the `gpuwatch` binary.

use std::process::Command;

/// The binary with `args` and a clean environment: the caller's
/// DATABASE_URL, GPUWATCH_* and RUST_LOG are removed, so only what the
/// test passes counts.
#[allow(dead_code)] // not every test file that shares this module runs the binary
pub fn gpuwatch_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpuwatch"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("GPUWATCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `gpuwatch serve`'s router on 127.0.0.1:0 over `db`, migrated first:
/// the base URL and a pool on the same database.
#[allow(dead_code)] // not every test file that shares this module serves
pub async fn serve_in_process(
    db: &gpuwatch_store::testing::TestDb,
    cfg: gpuwatch_api::ApiConfig,
) -> (String, gpuwatch_store::Pool) {
    let store = db.store_config();
    gpuwatch_store::migrate(&store).await.expect("migrate");
    let pool = gpuwatch_store::connect(&store).await.expect("pool");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = gpuwatch_api::router(gpuwatch_api::AppState::new(
        pool.clone(),
        gpuwatch_store::WriterConfig::default(),
        cfg,
        gpuwatch_exporter::Exporter::new(Default::default()),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, pool)
}
