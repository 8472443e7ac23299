//! A hostile or buggy agent against `POST /api/v1/ingest` and the direct
//! sink's ingest path, on a real database: a GPU takeover, environment
//! samples for someone else's environment, and batches that would have
//! been half-written. Each is refused with a 4xx/409 that names the field
//! or the holder, and every table it could touch is byte-for-byte what it
//! was before.

use crate::ingest::{json, payload, post, start, token};

use chrono::{Duration, DurationRound, Utc};
use gpuwatch_api::ApiConfig;
use gpuwatch_store::testing::TestDb;
use gpuwatch_store::{both_backends, EnvSample, IngestPayload};
use serde_json::Value;

/// Every table an ingest may write, each dumped as its rows' text, ordered.
const TABLES: [&str; 6] = [
    "hosts",
    "gpus",
    "gpu_metrics",
    "host_metrics",
    "environment_metrics",
    "environments",
];

pub(crate) async fn dump(db: &TestDb) -> Vec<String> {
    let c = db.client().await;
    let mut out = Vec::new();
    for t in TABLES {
        let q =
            format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {t} t");
        let rows: String = c.query_one(&q, &[]).await.unwrap().get(0);
        out.push(format!("{t}:\n{rows}"));
    }
    out
}

/// Places environment `env` of a fresh customer on `host` (which must exist).
async fn place_environment(db: &TestDb, env: &str, host: &str) {
    db.client()
        .await
        .execute(
            "WITH c AS (INSERT INTO customers (username, email, password_hash)
                        VALUES ($1::text, $1::text || '@example.com', 'x') RETURNING id)
             INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory)
             SELECT $1::text, c.id, $2::text, $1::text, 'img', 'running', 4, 1073741824 FROM c",
            &[&env, &host],
        )
        .await
        .unwrap();
}

fn env_sample(env: &str, host: Option<&str>) -> EnvSample {
    EnvSample {
        env_id: env.into(),
        host_id: host.unwrap_or_default().into(),
        collected_at: Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
            - Duration::minutes(1),
        cpu_usage_percent: Some(42.0),
        ..Default::default()
    }
}

/// Posts `p` with `token`, asserts a refusal in `want` that mentions every
/// one of `names`, and that no table changed.
async fn refused(
    s: &crate::ingest::Server,
    db: &TestDb,
    token: &str,
    p: &IngestPayload,
    want: &[u16],
    names: &[&str],
) {
    let before = dump(db).await;
    let (code, v) = post(s, Some(token), json(p), None).await;
    assert!(
        want.contains(&code),
        "wanted one of {want:?}, got {code}: {v}"
    );
    let text = v.to_string();
    for n in names {
        assert!(text.contains(n), "the answer must name {n:?}: {v}");
    }
    assert_eq!(
        dump(db).await,
        before,
        "a refused batch changed the tables: {v}"
    );
}

both_backends! {
    async fn a_gpu_of_another_host_is_refused_naming_its_holder(db) {
        let s = start(&db, ApiConfig::default()).await;
        let tv = token(&s.pool, "agent", Some("host-v")).await;
        let tb = token(&s.pool, "agent", Some("host-b")).await;
        let (code, v) = post(&s, Some(&tv), json(&payload("host-v", 1)), None).await;
        assert_eq!(code, 200, "{v}");

        // B lists V's GPU at a free index and reports 149 °C for it.
        let mut p = payload("host-b", 1);
        p.gpus[1].uuid = "GPU-host-v-0".into();
        for r in p.batch.gpu.iter_mut().filter(|r| r.uuid == "GPU-host-b-1") {
            r.uuid = "GPU-host-v-0".into();
            r.sample.temperature = Some(149.0);
        }
        refused(&s, &db, &tb, &p, &[409], &["GPU-host-v-0", "host-v"]).await;

        // Neither the database nor the server's inventory cache kept the takeover:
        // V goes on reporting its own GPU, and it is still V's.
        let mut again = payload("host-v", 1);
        for r in &mut again.batch.gpu {
            r.sample.collected_at += Duration::seconds(30);
        }
        for h in &mut again.batch.host {
            h.collected_at += Duration::seconds(30);
        }
        let (code, v) = post(&s, Some(&tv), json(&again), None).await;
        assert_eq!(code, 200, "{v}");
        let c = db.client().await;
        let holder: String = c
            .query_one("SELECT host_id FROM gpus WHERE uuid = 'GPU-host-v-0'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(holder, "host-v");
        let hot: i64 = c
            .query_one("SELECT count(*) FROM gpu_metrics WHERE temperature > 100", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(hot, 0, "no foreign sample landed in V's series");
    }
}

both_backends! {
    async fn environment_samples_must_name_an_environment_on_the_reporting_host(db) {
        let s = start(&db, ApiConfig::default()).await;
        let tv = token(&s.pool, "agent", Some("host-v")).await;
        let tb = token(&s.pool, "agent", Some("host-b")).await;
        for (t, h) in [(&tv, "host-v"), (&tb, "host-b")] {
            let (code, v) = post(&s, Some(t), json(&payload(h, 1)), None).await;
            assert_eq!(code, 200, "{v}");
        }
        place_environment(&db, "env-v", "host-v").await;

        let mut p = payload("host-b", 1);
        p.batch.env.push(env_sample("env-v", Some("host-b")));
        refused(&s, &db, &tb, &p, &[403, 409, 422], &["batch.env[0].env_id", "env-v"]).await;

        let mut p = payload("host-b", 1);
        p.batch.env.push(env_sample("env-v", None));
        refused(&s, &db, &tb, &p, &[403, 409, 422], &["batch.env[0].env_id", "env-v"]).await;

        let mut p = payload("host-b", 1);
        p.batch.env.push(env_sample("env-nowhere", None));
        refused(&s, &db, &tb, &p, &[404, 409, 422], &["batch.env[0].env_id", "env-nowhere"]).await;

        // Its own host may report it.
        let mut p = payload("host-v", 1);
        p.batch.env.push(env_sample("env-v", None));
        let (code, v) = post(&s, Some(&tv), json(&p), None).await;
        assert_eq!(code, 200, "{v}");
        let n: i64 = db
            .client()
            .await
            .query_one("SELECT count(*) FROM environment_metrics WHERE env_id = 'env-v'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
}

/// Payloads that each break one rule the schema enforces, late in the
/// batch, with the field the answer must name.
fn half_writes() -> Vec<(&'static str, IngestPayload, &'static str)> {
    let base = || payload("half-host", 2);
    let mut cases = Vec::new();
    let mut add = |what, f: &dyn Fn(&mut IngestPayload), field| {
        let mut p = base();
        f(&mut p);
        cases.push((what, p, field));
    };
    add(
        "a 40-character compute_capability",
        &|p| p.gpus[1].compute_capability = "9".repeat(40),
        "gpus[1].compute_capability",
    );
    add(
        "two GPUs at index 0",
        &|p| p.gpus[1].gpu_index = 0,
        "gpus[1].gpu_index",
    );
    add(
        "a NUL in an env id",
        &|p| p.batch.env.push(env_sample("env\0x", None)),
        "batch.env[0].env_id",
    );
    add(
        "a NUL in the host name",
        &|p| p.host.name = "half\0host".into(),
        "host.name",
    );
    add(
        "a NUL in a GPU name",
        &|p| p.gpus[1].name = "L40S\0".into(),
        "gpus[1].name",
    );
    add(
        "a NUL in a label value",
        &|p| p.host.labels = serde_json::json!({"zone": "a\u{0}b"}),
        "host.labels",
    );
    add(
        "labels that are an array",
        &|p| p.host.labels = serde_json::json!([]),
        "host.labels",
    );
    add(
        "labels holding a number",
        &|p| p.host.labels = serde_json::json!({"zone": 7}),
        "host.labels",
    );
    add(
        "an unknown os_type",
        &|p| p.host.os_type = "plan9".into(),
        "host.os_type",
    );
    add(
        "a negative total_cpu",
        &|p| p.host.total_cpu = -1,
        "host.total_cpu",
    );
    add(
        "a negative total_disk",
        &|p| p.host.total_disk = -1,
        "host.total_disk",
    );
    add(
        "a 300-character hostname",
        &|p| p.host.hostname = "h".repeat(300),
        "host.hostname",
    );
    add(
        "a 21-character arch",
        &|p| p.host.arch = "x".repeat(21),
        "host.arch",
    );
    add(
        "a 65-character ip_address",
        &|p| p.host.ip_address = "1".repeat(65),
        "host.ip_address",
    );
    add(
        "a 200-character GPU uuid",
        &|p| {
            let long = format!("GPU-{}", "f".repeat(196));
            p.gpus[1].uuid = long.clone();
            for r in p
                .batch
                .gpu
                .iter_mut()
                .filter(|r| r.uuid == "GPU-half-host-1")
            {
                r.uuid = long.clone();
            }
        },
        "gpus[1].uuid",
    );
    add(
        "a 65-character brand",
        &|p| p.gpus[0].brand = "N".repeat(65),
        "gpus[0].brand",
    );
    add(
        "a negative power_limit",
        &|p| p.gpus[1].power_limit = Some(-5),
        "gpus[1].power_limit",
    );
    add(
        "a 65-character env id",
        &|p| p.batch.env.push(env_sample(&"e".repeat(65), None)),
        "batch.env[0].env_id",
    );
    cases
}

both_backends! {
    async fn a_batch_the_schema_would_refuse_is_refused_whole_and_names_the_field(db) {
        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", None).await;
        // A registered host with samples: the refusals below must leave it as it is.
        let (code, v) = post(&s, Some(&t), json(&payload("steady-host", 2)), None).await;
        assert_eq!(code, 200, "{v}");
        for (what, p, field) in half_writes() {
            let before = dump(&db).await;
            let (code, v) = post(&s, Some(&t), json(&p), None).await;
            assert!((400..500).contains(&code), "{what}: wanted a 4xx, got {code}: {v}");
            assert!(v.to_string().contains(field), "{what}: the answer must name {field}: {v}");
            assert_eq!(dump(&db).await, before, "{what}: a refused batch changed the tables");
        }
        // The same host re-registering with a bad GPU keeps its old inventory whole.
        let mut p = payload("steady-host", 2);
        p.gpus[1].compute_capability = "9".repeat(40);
        refused(&s, &db, &t, &p, &[422], &["gpus[1].compute_capability"]).await;
    }
}

both_backends! {
    async fn the_direct_path_refuses_what_the_api_refuses(db) {
        let store = db.store_config();
        gpuwatch_store::migrate(&store).await.unwrap();
        let pool = gpuwatch_store::connect(&store).await.unwrap();
        let mut sink = gpuwatch_collector::sinks::copy::CopySink::new(pool, Default::default());
        let good = payload("direct-host", 1);
        sink.register(&vec![(good.host.clone(), good.gpus.clone())]).await.unwrap();
        sink.send(&good.batch).await.unwrap();
        for (what, p, field) in half_writes() {
            let before = dump(&db).await;
            let inv = vec![(p.host.clone(), p.gpus.clone())];
            let result = match sink.register(&inv).await {
                Ok(()) => sink.send(&p.batch).await.map(|_| ()),
                Err(e) => Err(e),
            };
            let e = result.expect_err(what);
            assert!(!e.transient, "{what}: a bad batch is not worth retrying: {e}");
            assert!(e.message.contains(field), "{what}: the error must name {field}: {e}");
            assert_eq!(dump(&db).await, before, "{what}: a refused batch changed the tables");
        }
    }
}

/// What a field holds, so that most mutations keep the JSON type and reach
/// validation rather than stop at deserialisation.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Int,
    Float,
    Labels,
    Time,
}

/// Where a mutation lands in a valid payload's JSON, and what it holds.
const PATHS: &[(&str, Kind)] = &[
    ("/version", Kind::Int),
    ("/host/id", Kind::Text),
    ("/host/name", Kind::Text),
    ("/host/hostname", Kind::Text),
    ("/host/ip_address", Kind::Text),
    ("/host/os_type", Kind::Text),
    ("/host/os_version", Kind::Text),
    ("/host/arch", Kind::Text),
    ("/host/total_cpu", Kind::Int),
    ("/host/total_memory", Kind::Int),
    ("/host/total_disk", Kind::Int),
    ("/host/total_gpu", Kind::Int),
    ("/host/labels", Kind::Labels),
    ("/host/labels/zone", Kind::Text),
    ("/gpus/0/uuid", Kind::Text),
    ("/gpus/1/uuid", Kind::Text),
    ("/gpus/1/gpu_index", Kind::Int),
    ("/gpus/0/gpu_index", Kind::Int),
    ("/gpus/0/name", Kind::Text),
    ("/gpus/1/brand", Kind::Text),
    ("/gpus/0/architecture", Kind::Text),
    ("/gpus/1/compute_capability", Kind::Text),
    ("/gpus/0/memory_total", Kind::Int),
    ("/gpus/1/power_limit", Kind::Int),
    ("/gpus/0/temperature_limit", Kind::Int),
    ("/gpus/0/pci_bus_id", Kind::Text),
    ("/gpus/1/driver_version", Kind::Text),
    ("/gpus/1/host_id", Kind::Text),
    ("/batch/gpu/0/uuid", Kind::Text),
    ("/batch/gpu/1/sample/temperature", Kind::Float),
    ("/batch/gpu/2/sample/utilization_percent", Kind::Float),
    ("/batch/gpu/3/sample/energy_consumed_mj", Kind::Int),
    ("/batch/gpu/0/sample/collected_at", Kind::Time),
    ("/batch/gpu/3/sample/host_id", Kind::Text),
    ("/batch/host/0/cpu_usage_percent", Kind::Float),
    ("/batch/host/0/host_id", Kind::Text),
    ("/batch/host/1/collected_at", Kind::Time),
    ("/batch/env/0/env_id", Kind::Text),
    ("/batch/env/0/host_id", Kind::Text),
    ("/batch/env/0/cpu_usage_percent", Kind::Float),
    ("/batch/env/0/memory_used", Kind::Int),
];

/// Values of each kind: the schema's limits and one past them, NUL, other
/// hosts' GPUs and environments, times out of range; and, for one mutation
/// in five, a value of any kind (a wrong JSON type).
fn values(kind: Kind) -> Vec<Value> {
    let x = |n: usize| Value::String("x".repeat(n));
    let j = |v: Value| v;
    match kind {
        Kind::Text => vec![
            j("".into()),
            j("\u{0}".into()),
            j("a\u{0}b".into()),
            x(20),
            x(21),
            x(32),
            x(33),
            x(64),
            x(65),
            x(128),
            x(129),
            x(257),
            j("linux".into()),
            j("windows".into()),
            j("plan9".into()),
            j("GPU-prop-other-0".into()),
            j("GPU-prop-host-0".into()),
            j("GPU-prop-host-1".into()),
            j("env-prop".into()),
            j("env-other".into()),
            j("env-nope".into()),
            j("prop-other".into()),
            j("prop-host".into()),
            j("é".repeat(20).into()),
            j("é".repeat(21).into()),
        ],
        Kind::Int => vec![
            j(0.into()),
            j(1.into()),
            j((-1).into()),
            j(1023.into()),
            j(1024.into()),
            j(2_147_483_647_i64.into()),
            j(2_147_483_648_i64.into()),
            j(i64::MAX.into()),
        ],
        Kind::Float => vec![
            j(0.into()),
            j((-0.5).into()),
            j(100.into()),
            j(100.5.into()),
            j(149.0.into()),
            j(151.0.into()),
            j(1e300.into()),
            j((-1e300).into()),
        ],
        Kind::Labels => vec![
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!({"k": 1}),
            serde_json::json!({"k": "v\u{0}"}),
            serde_json::json!({"k\u{0}": "v"}),
            serde_json::json!({"k": {"nested": "v"}}),
            serde_json::json!({"rack": "r1"}),
            Value::Null,
        ],
        Kind::Time => vec![
            j("2099-01-01T00:00:00Z".into()),
            j("1999-01-01T00:00:00Z".into()),
            j("not a time".into()),
            j("2026-12-01T14:00:00+02:00".into()),
        ],
    }
}

fn any_value() -> Vec<Value> {
    let mut all: Vec<Value> = [Kind::Text, Kind::Int, Kind::Float, Kind::Labels, Kind::Time]
        .into_iter()
        .flat_map(values)
        .collect();
    all.extend([Value::Null, serde_json::json!(true), serde_json::json!([1])]);
    all
}

/// Case `k`'s valid payload: fresh times (each case an hour-minute of its
/// own), one environment sample.
fn valid_case(k: usize) -> IngestPayload {
    let mut p = payload("prop-host", 2);
    let back = Duration::seconds(60 * k as i64);
    for r in &mut p.batch.gpu {
        r.sample.collected_at -= back;
    }
    for h in &mut p.batch.host {
        h.collected_at -= back;
    }
    let mut e = env_sample("env-prop", None);
    e.collected_at -= back;
    p.batch.env.push(e);
    p
}

async fn total_rows(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM gpu_metrics) + (SELECT count(*) FROM host_metrics)
                  + (SELECT count(*) FROM environment_metrics)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

both_backends! {
    async fn mutated_payloads_never_get_a_5xx_and_a_refusal_changes_nothing(db) {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

        let s = start(&db, ApiConfig::default()).await;
        let t = token(&s.pool, "agent", Some("prop-host")).await;
        let other = token(&s.pool, "agent", Some("prop-other")).await;
        assert_eq!(post(&s, Some(&other), json(&payload("prop-other", 1)), None).await.0, 200);
        assert_eq!(post(&s, Some(&t), json(&payload("prop-host", 1)), None).await.0, 200);
        place_environment(&db, "env-prop", "prop-host").await;
        place_environment(&db, "env-other", "prop-other").await;

        // A fixed seed: the same 150 cases on every run and backend.
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]);
        let mut runner = TestRunner::new_with_rng(Config::default(), rng);
        let anything = any_value();
        // (path, wrong type?, value): a wrong JSON type one time in five.
        let mutation = proptest::collection::vec((0..PATHS.len(), proptest::bool::weighted(0.2), 0..1000usize), 1..=3);
        let (mut accepted, mut refused) = (0, 0);
        let mut by_status = std::collections::BTreeMap::new();
        for k in 0..150 {
            let muts = mutation.new_tree(&mut runner).unwrap().current();
            let mut v = serde_json::to_value(valid_case(k)).unwrap();
            let mut what = Vec::new();
            for (p, wrong_type, x) in &muts {
                let (path, kind) = PATHS[*p];
                let pool = if *wrong_type { anything.clone() } else { values(kind) };
                let value = pool[*x % pool.len()].clone();
                what.push(format!("{path} = {value}"));
                if let Some(slot) = v.pointer_mut(path) {
                    *slot = value;
                }
            }
            let before = dump(&db).await;
            let rows_before = total_rows(&db).await;
            let body = serde_json::to_vec(&v).unwrap();
            let (code, answer) = post(&s, Some(&t), body.clone(), None).await;
            *by_status.entry(code).or_insert(0) += 1;
            assert!(code < 500, "case {k} {what:?}: {code} {answer}");
            if code == 200 {
                accepted += 1;
                let inserted = answer["inserted"].as_i64().unwrap();
                assert_eq!(total_rows(&db).await, rows_before + inserted, "case {k} {what:?}: {answer}");
                // Stored exactly once: the same batch again stores nothing.
                let (code, again) = post(&s, Some(&t), body, None).await;
                assert_eq!(code, 200, "case {k} {what:?}: {again}");
                assert_eq!(again["inserted"].as_i64(), Some(0), "case {k} {what:?}: {again}");
                assert_eq!(total_rows(&db).await, rows_before + inserted);
            } else {
                refused += 1;
                assert_eq!(dump(&db).await, before, "case {k} {what:?}: refused with {code} but changed the tables");
            }
        }
        println!("ingest property test ({:?}): {accepted} accepted, {refused} refused; by status {by_status:?}", db.kind);
        assert!(accepted > 0 && refused > 0, "the mutations must exercise both outcomes");
    }
}
