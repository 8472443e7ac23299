//! `/metrics` read by the real thing: `gpuwatch serve` runs as a process
//! over a database holding known samples, `promtool check metrics` checks
//! its output, and a real Prometheus scrapes it; the PromQL of
//! dcgm-exporter's Grafana dashboard must return what the database holds,
//! and a host that stopped reporting must not appear at all.

use crate::common::{self, free_port, ChildGuard, Prometheus};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpuwatch_store::{both_backends, migrate};
use serde_json::Value;

/// Two live hosts with two GPUs each (one allocated to environment e1 of
/// customer acme), and a host whose last sample is 20 minutes old.
async fn seed(c: &tokio_postgres::Client) {
    c.batch_execute(
        "INSERT INTO hosts (id, name, hostname, ip_address, os_type, total_cpu, total_memory, total_gpu) VALUES
            ('a', 'a', 'gpu-a', '10.0.0.1', 'linux', 32, 1 << 30, 2),
            ('b', 'b', 'gpu-b', '10.0.0.2', 'linux', 32, 1 << 30, 2),
            ('s', 's', 'gpu-stale', '10.0.0.3', 'linux', 32, 1 << 30, 1);
         INSERT INTO gpus (host_id, gpu_index, uuid, name, pci_bus_id, driver_version) VALUES
            ('a', 0, 'GPU-a0', 'NVIDIA H100 80GB HBM3', '00000000:3B:00.0', '550.54.15'),
            ('a', 1, 'GPU-a1', 'NVIDIA H100 80GB HBM3', '00000000:3C:00.0', '550.54.15'),
            ('b', 0, 'GPU-b0', 'Tesla T4', '00000000:3B:00.0', '550.54.15'),
            ('b', 1, 'GPU-b1', 'Tesla T4', '00000000:3C:00.0', '550.54.15'),
            ('s', 0, 'GPU-s0', 'Tesla T4', '00000000:3B:00.0', '550.54.15');
         INSERT INTO customers (username, email, password_hash) VALUES ('acme', 'ops@acme.example', 'x');
         INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, gpu)
            SELECT 'e1', id, 'a', 'train', 'pytorch:2', 'running', 8, 1 << 30, 1 FROM customers;
         UPDATE gpus SET status = 'allocated', allocated_to = 'e1' WHERE uuid = 'GPU-a1';
         INSERT INTO gpu_metrics (gpu_id, host_id, utilization_percent, temperature, power_draw,
                                  memory_used, memory_free, sm_clock, energy_consumed_mj, xid_last, collected_at)
         SELECT g.id, g.host_id, v.util, v.temp, v.power, v.used, 1 << 30, 1980, 123456789, v.xid,
                now() - v.ago * interval '1 second'
           FROM gpus g JOIN (VALUES
                ('GPU-a0', 10.0, 61.0, 100.5, 2147483648, NULL::int, 5),
                ('GPU-a1', 30.0, 72.0, 200.25, 1048576, 79, 30),
                ('GPU-a1', 30.0, 72.0, 200.25, 1048576, NULL, 5),
                ('GPU-b0', 50.0, 55.0, 300.0, 0, NULL, 5),
                ('GPU-b1', 70.0, 45.0, 50.0, 0, NULL, 5),
                ('GPU-s0', 99.0, 99.0, 999.0, 0, NULL, 1200))
             AS v(uuid, util, temp, power, used, xid, ago) ON v.uuid = g.uuid;
         UPDATE gpu_metrics SET encoder_util_percent = 12.5, decoder_util_percent = 40
          WHERE gpu_id = (SELECT id FROM gpus WHERE uuid = 'GPU-b0');
         INSERT INTO host_metrics (host_id, cpu_load_1m, memory_used, memory_available, network_rx_bytes, collected_at) VALUES
            ('a', 1.5, 1000, 3000, 123, now() - interval '5 seconds'),
            ('b', 0.25, 2000, 2000, 456, now() - interval '5 seconds'),
            ('s', 9.0, 1, 1, 1, now() - interval '20 minutes');",
    )
    .await
    .expect("seed");
}

async fn get_text(url: &str) -> Option<String> {
    let resp = reqwest::get(url).await.ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

async fn promql(prom: &str, q: &str) -> Vec<Value> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .expect("prometheus answers")
        .json()
        .await
        .expect("prometheus JSON");
    assert_eq!(resp["status"], "success", "{q}: {resp}");
    resp["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value(v: &Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

async fn wait_for<F, Fut, T>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// promtool's lint rejects names that dcgm-exporter and node_exporter
/// themselves use (camelCase labels such as modelName, MemAvailable_bytes,
/// dcgm counters without _total); being a drop-in means keeping them.
/// Anything else it says — above all a parse error — fails the test.
fn promtool_problems(text: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/test.sh)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let inherited = [
        "label names should be written in 'snake_case' not 'camelCase'",
        "node_memory_MemAvailable_bytes metric names should be written in 'snake_case' not 'camelCase'",
        "node_memory_MemTotal_bytes metric names should be written in 'snake_case' not 'camelCase'",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter metrics should have \"_total\" suffix",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter metrics should have \"_total\" suffix",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL counter metrics should have \"_total\" suffix",
    ];
    let problems: Vec<String> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !inherited.iter().any(|i| l.contains(i)))
        .map(str::to_string)
        .collect();
    // Exit 3 is "lint problems only"; anything else but 0 is a failure to parse.
    if !matches!(out.status.code(), Some(0) | Some(3)) {
        return vec![format!("promtool exited {:?}: {said}", out.status.code())];
    }
    problems
}

both_backends! {
    async fn prometheus_reads_what_the_database_holds(db) {
        migrate(&db.store_config()).await.expect("migrate");
        let c = db.client().await;
        seed(&c).await;

        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let _serve = ChildGuard(
            common::gpuwatch_command(&["serve"])
                .env("DATABASE_URL", &db.url)
                .env("GPUWATCH_LISTEN", format!("127.0.0.1:{port}"))
                .env("GPUWATCH_EXPORTER__REFRESH_SECS", "1")
                .env("GPUWATCH_EXPORTER__STALENESS_SECS", "600")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("gpuwatch serve"),
        );
        let metrics = wait_for("a /metrics snapshot", Duration::from_secs(60), || async {
            get_text(&format!("{base}/metrics")).await.filter(|t| t.contains("DCGM_FI_DEV_GPU_TEMP"))
        })
        .await;

        let problems = promtool_problems(&metrics);
        assert!(problems.is_empty(), "promtool check metrics: {problems:#?}");
        assert!(metrics.contains(
            r#"DCGM_FI_DEV_GPU_TEMP{gpu="1",UUID="GPU-a1",pci_bus_id="00000000:3C:00.0",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-a",DCGM_FI_DRIVER_VERSION="550.54.15",environment="e1",customer="acme"} 72"#
        ), "{metrics}");
        assert!(metrics.contains(r#"DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a0""#), "{metrics}");
        assert!(metrics.contains("modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-a\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"} 2048\n"),
            "FB_USED in MiB: {metrics}");
        assert!(metrics.contains(r#"node_memory_MemTotal_bytes{Hostname="gpu-a",host_id="a"} 4000"#), "{metrics}");
        // NVML's encoder and decoder utilisation, under dcgm-exporter's names,
        // only for the GPU that reported them.
        for (name, help, value) in [
            ("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", " 12.5"),
            ("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", " 40"),
        ] {
            assert!(metrics.contains(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n")), "{metrics}");
            let lines: Vec<&str> = metrics.lines().filter(|l| l.starts_with(&format!("{name}{{"))).collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with(&format!(r#"{name}{{gpu="0",UUID="GPU-b0""#)) && lines[0].ends_with(value), "{lines:?}");
        }
        assert!(!metrics.contains("gpu-stale"), "a silent host must drop out: {metrics}");
        // gpuwatch's own metrics ride along.
        assert!(metrics.contains("gpuwatch_exporter_series{source=\"gpu\"} 4"), "{metrics}");
        assert!(metrics.contains("# TYPE gpuwatch_exporter_refresh_duration_seconds histogram"), "{metrics}");

        // A real Prometheus scraping every second.
        let prometheus = Prometheus::start(&[("gpuwatch", format!("127.0.0.1:{port}"))]);
        let prom = prometheus.url.clone();
        wait_for("Prometheus to scrape gpuwatch", Duration::from_secs(90), || async {
            let r = reqwest::Client::new().get(format!("{prom}/api/v1/query"))
                .query(&[("query", "count(DCGM_FI_DEV_GPU_TEMP)")]).send().await.ok()?
                .json::<Value>().await.ok()?;
            let n = r["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()?;
            (n == 4.0).then_some(())
        })
        .await;

        // DCGM_FI_DEV_GPU_TEMP{Hostname=…}: one series per GPU, its latest temperature.
        let rows = c.query(
            "SELECT g.gpu_index::text, m.temperature FROM gpus g
               CROSS JOIN LATERAL (SELECT temperature FROM gpu_metrics WHERE gpu_id = g.id ORDER BY collected_at DESC LIMIT 1) m
              WHERE g.host_id = 'a' ORDER BY 1", &[]).await.unwrap();
        let mut got: Vec<(String, f64)> = promql(&prom, r#"DCGM_FI_DEV_GPU_TEMP{Hostname="gpu-a"}"#).await.iter()
            .map(|r| (r["metric"]["gpu"].as_str().unwrap().to_string(), value(r))).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, want);

        // avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL) against the same average in SQL.
        let rows = c.query(
            "SELECT h.hostname, avg(m.u) FROM gpus g JOIN hosts h ON h.id = g.host_id
               CROSS JOIN LATERAL (SELECT utilization_percent u, collected_at FROM gpu_metrics WHERE gpu_id = g.id ORDER BY collected_at DESC LIMIT 1) m
              WHERE m.collected_at > now() - interval '10 minutes' GROUP BY 1 ORDER BY 1", &[]).await.unwrap();
        let mut got: Vec<(String, f64)> = promql(&prom, "avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL)").await.iter()
            .map(|r| (r["metric"]["Hostname"].as_str().unwrap().to_string(), value(r))).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, want);

        // sum(DCGM_FI_DEV_POWER_USAGE): the fleet's draw, silent host excluded.
        let want: f64 = c.query_one(
            "SELECT sum(m.p) FROM gpus g
               CROSS JOIN LATERAL (SELECT power_draw p, collected_at FROM gpu_metrics WHERE gpu_id = g.id ORDER BY collected_at DESC LIMIT 1) m
              WHERE m.collected_at > now() - interval '10 minutes'", &[]).await.unwrap().get(0);
        let got = promql(&prom, "sum(DCGM_FI_DEV_POWER_USAGE)").await;
        assert_eq!(value(&got[0]), want);
        assert_eq!(want, 650.75);

        // The sticky last XID, and the allocation labels.
        let got = promql(&prom, r#"DCGM_FI_DEV_XID_ERRORS{UUID="GPU-a1"}"#).await;
        assert_eq!(value(&got[0]), 79.0);
        assert_eq!(got[0]["metric"]["customer"], "acme");
        let got = promql(&prom, r#"count(DCGM_FI_DEV_GPU_TEMP{Hostname="gpu-stale"})"#).await;
        assert!(got.is_empty(), "silent host scraped: {got:?}");
        let got = promql(&prom, r#"node_load1{Hostname="gpu-b"}"#).await;
        assert_eq!(value(&got[0]), 0.25);
    }
}

both_backends! {
    async fn a_snapshot_the_database_cannot_refresh_goes_stale(db) {
        migrate(&db.store_config()).await.expect("migrate");
        let c = db.client().await;
        seed(&c).await;
        let pool = gpuwatch_store::connect(&db.store_config()).await.unwrap();
        let exporter = gpuwatch_exporter::Exporter::new(gpuwatch_exporter::ExporterConfig {
            refresh_secs: 1,
            staleness_secs: 1,
        });
        assert!(exporter.scrape().iter().all(|b| !String::from_utf8_lossy(b).contains("DCGM_")),
            "nothing before the first refresh");
        // With the default 90 s window the seeded samples (5 s old) are live.
        let wide = gpuwatch_exporter::Exporter::new(Default::default());
        let snap = wide.refresh(&pool).await.expect("refresh");
        assert_eq!((snap.gpus, snap.hosts, snap.environments), (4, 2, 0));
        let text: String = wide.scrape().iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-b0\""), "{text}");

        // gzip: the first scrape that asks for it makes later refreshes
        // compress; the members decode to the same fleet text.
        let (_, gzipped) = wide.scrape_encoded(true);
        assert!(!gzipped, "no compressed snapshot exists before a refresh");
        let snap = wide.refresh(&pool).await.expect("refresh");
        let (chunks, gzipped) = wide.scrape_encoded(true);
        assert!(gzipped);
        let joined: Vec<u8> = chunks.concat();
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&joined[..]), &mut decoded).unwrap();
        assert!(decoded.starts_with(std::str::from_utf8(&snap.body).unwrap()), "gzip members decode to the snapshot");
        assert!(decoded.contains("gpuwatch_exporter_refresh_duration_seconds"), "self-metrics follow");

        // With a 1 s window the same data is too old to export.
        let snap = exporter.refresh(&pool).await.expect("refresh");
        assert_eq!(snap.gpus, 0);
        // And a snapshot that is not refreshed is dropped after the window.
        let _ = exporter.refresh(&pool).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(exporter.snapshot().is_none(), "a snapshot older than the window is not served");
    }
}
