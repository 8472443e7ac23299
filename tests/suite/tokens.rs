//! `gpuwatch token` as an operator uses it, against a real `gpuwatch serve`:
//! agent tokens bound to a host unless `--any-host` says otherwise, a
//! listing that never shows a secret, expiry, and revocation that takes
//! effect through the token cache within its period.

use std::time::Duration;

use gpuwatch_store::testing::{Kind, TestDb};

use crate::common::{create_token, gpuwatch_command, gpuwatch_run, psql, wait_for, ServeProc};

async fn migrated() -> (TestDb, String) {
    let db = TestDb::new(Kind::Postgres).await;
    let url = db.store_config().url;
    gpuwatch_run(&["migrate"], &[("DATABASE_URL", url.clone())]);
    (db, url)
}

fn list(url: &str) -> String {
    gpuwatch_run(&["token", "list"], &[("DATABASE_URL", url.to_string())])
}

/// Status of GET `path` with `token`, and the body.
fn get(base: &str, path: &str, token: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_without_a_host_is_refused_unless_any_host_is_explicit() {
    let (_db, url) = migrated().await;
    let out = gpuwatch_command(&["token", "create", "--role", "agent", "--name", "loose"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unbound agent token was created");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--host") && err.contains("--any-host"),
        "the refusal says how to fix it: {err}"
    );
    assert_eq!(
        psql(&url, "SELECT count(*) FROM api_tokens"),
        "0",
        "nothing was stored"
    );
    // The database refuses an unbound agent token too, whoever writes it.
    assert_eq!(
        psql(
            &url,
            "INSERT INTO api_tokens (name, role, token_hash, token_prefix) \
             VALUES ('raw', 'agent', repeat('a', 64), 'gwt_x') RETURNING id"
        ),
        ""
    );

    let bound = create_token(
        &url,
        &["--role", "agent", "--host", "gpu01", "--name", "gpu01"],
    );
    let gateway = create_token(
        &url,
        &["--role", "agent", "--any-host", "--name", "gateway"],
    );
    let viewer = create_token(&url, &["--role", "viewer", "--name", "grafana"]);
    let table = list(&url);
    for secret in [&bound, &gateway, &viewer] {
        assert!(
            !table.contains(secret.as_str()),
            "the list shows a secret:\n{table}"
        );
        assert!(
            table.contains(&secret[..12]),
            "the list names each prefix:\n{table}"
        );
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_end().ends_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    assert!(row("gateway").contains("(any host)"), "{table}");
    assert!(row("gpu01").contains(" gpu01 "), "{table}");
    assert!(row("grafana").contains(" viewer "), "{table}");
    for header in ["PREFIX", "ROLE", "HOST", "CREATED", "LAST USED", "EXPIRES"] {
        assert!(table.lines().next().unwrap().contains(header), "{table}");
    }
    for bad in [
        &["--role", "agent", "--host", "a", "--any-host"][..],
        &["--role", "viewer", "--any-host"][..],
        &["--role", "viewer", "--expires", "soon"][..],
    ] {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(bad);
        let out = gpuwatch_command(&args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM api_tokens"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_a_clear_message_and_use_is_listed() {
    let (_db, url) = migrated().await;
    let serve = ServeProc::start(&url, &[]);
    let token = create_token(
        &url,
        &["--role", "viewer", "--expires", "30d", "--name", "soon"],
    );
    let (status, body) = get(&serve.url, "/api/v1/hosts?limit=50", &token);
    assert_eq!(status, 200, "{body}");
    let table = list(&url);
    let row = table
        .lines()
        .find(|l| l.ends_with("soon"))
        .unwrap()
        .to_string();
    assert!(row.contains(" live "), "{table}");
    assert_eq!(
        row.split_whitespace().filter(|c| c.ends_with('Z')).count(),
        3,
        "created, last used and expiry are all shown: {table}"
    );
    // Time passing, without waiting 30 days: the expiry moves into the past.
    psql(
        &url,
        "UPDATE api_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'",
    );
    let mut last = (0, String::new());
    wait_for(
        "the expired token to be refused",
        Duration::from_secs(60),
        || {
            last = get(&serve.url, "/api/v1/hosts?limit=50", &token);
            last.0 == 401
        },
    );
    assert!(
        last.1.contains("expired") && last.1.contains("gpuwatch token create"),
        "the refusal says the token expired and what to do: {}",
        last.1
    );
    assert!(list(&url).lines().any(|l| l.contains(" expired ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_within_the_cache_period() {
    let (_db, url) = migrated().await;
    let serve = ServeProc::start(&url, &[("GPUWATCH_API__TOKEN_CACHE", "5s".into())]);
    let token = create_token(&url, &["--role", "viewer", "--name", "leaving"]);
    for _ in 0..3 {
        assert_eq!(get(&serve.url, "/api/v1/hosts", &token).0, 200);
    }
    let id = psql(&url, "SELECT id FROM api_tokens WHERE name = 'leaving'");
    gpuwatch_run(&["token", "revoke", &id], &[("DATABASE_URL", url.clone())]);
    // The bound is the cache period plus slack for a loaded machine; what is
    // checked is that revocation wins, not how fast.
    let mut last = (0, String::new());
    wait_for(
        "the revoked token to be refused",
        Duration::from_secs(60),
        || {
            last = get(&serve.url, "/api/v1/hosts", &token);
            last.0 == 401
        },
    );
    assert!(last.1.contains("revoked"), "{}", last.1);
    // And it stays refused.
    assert_eq!(get(&serve.url, "/api/v1/hosts", &token).0, 401);
}
