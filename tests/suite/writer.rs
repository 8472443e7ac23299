//! The batch writer against real servers: idempotent re-sends, overlaps,
//! duplicates inside one batch, partitions made on demand, all three tables.

use chrono::{DateTime, Duration, DurationRound, Utc};
use gpuwatch_store::{
    both_backends, migrate, BatchWriter, EnvSample, GpuSample, HostSample, WriterConfig,
};

fn t0() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap() - Duration::hours(2)
}

fn gpu_rows(n: usize, start: DateTime<Utc>) -> Vec<GpuSample> {
    (0..n)
        .map(|i| GpuSample {
            gpu_id: (i % 10) as i64 + 1,
            host_id: format!("h{}", i % 10 / 4),
            collected_at: start + Duration::seconds((i / 10) as i64 * 10),
            utilization_percent: Some(i as f64 * 0.37 % 100.0),
            memory_used: Some(i as i64 * 1_000_003),
            temperature: Some(40.0 + (i % 50) as f64 / 4.0),
            power_draw: if i % 7 == 0 { None } else { Some(123.456) },
            sm_clock: Some(1_410),
            xid_last: (i % 97 == 0).then_some(79),
            ..Default::default()
        })
        .collect()
}

async fn writer(db: &gpuwatch_store::testing::TestDb, chunk_rows: usize) -> BatchWriter {
    let cfg = db.store_config();
    migrate(&cfg).await.expect("migrate");
    let pool = gpuwatch_store::connect(&cfg).await.expect("pool");
    BatchWriter::new(
        pool,
        WriterConfig {
            connections: 3,
            chunk_rows,
        },
    )
}

async fn count(db: &gpuwatch_store::testing::TestDb, table: &str) -> i64 {
    db.client()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

both_backends! {
    async fn a_batch_sent_twice_is_stored_once(db) {
        let w = writer(&db, 250).await;
        let rows = gpu_rows(1_000, t0());
        let first = w.write(&rows).await.expect("first write");
        assert_eq!((first.inserted, first.duplicates, first.dedup_chunks), (1_000, 0, 0));
        let again = w.write(&rows).await.expect("re-sent batch must not error");
        assert_eq!((again.inserted, again.duplicates), (0, 1_000));
        assert_eq!(count(&db, "gpu_metrics").await, 1_000);

        // What was stored is what was sent, NULLs included.
        let c = db.client().await;
        let r = &rows[7];
        let got = c
            .query_one(
                "SELECT utilization_percent, memory_used, power_draw, sm_clock, xid_last FROM gpu_metrics
                 WHERE gpu_id = $1 AND collected_at = $2",
                &[&r.gpu_id, &r.collected_at],
            )
            .await
            .unwrap();
        assert_eq!(got.get::<_, Option<f64>>(0), r.utilization_percent);
        assert_eq!(got.get::<_, Option<i64>>(1), r.memory_used);
        assert_eq!(got.get::<_, Option<f64>>(2), None);
        assert_eq!(got.get::<_, Option<i32>>(3), Some(1_410));
        assert_eq!(got.get::<_, Option<i32>>(4), None);
    }
}

both_backends! {
    async fn an_overlapping_batch_stores_only_the_new_rows(db) {
        let w = writer(&db, 100).await;
        let rows = gpu_rows(1_000, t0());
        w.write(&rows[..600]).await.unwrap();
        let s = w.write(&rows[400..]).await.unwrap();
        assert_eq!((s.rows, s.inserted, s.duplicates), (600, 400, 200));
        // Only the chunks holding duplicates took the slow path.
        assert_eq!(s.dedup_chunks, 2);
        assert_eq!(count(&db, "gpu_metrics").await, 1_000);
    }
}

both_backends! {
    async fn a_duplicate_inside_one_batch_is_stored_once(db) {
        let w = writer(&db, 1_000).await;
        let mut rows = gpu_rows(50, t0());
        rows.push(rows[3].clone());
        let s = w.write(&rows).await.expect("duplicate inside a batch must not error");
        assert_eq!((s.inserted, s.duplicates), (50, 1));
        assert_eq!(count(&db, "gpu_metrics").await, 50);
    }
}

both_backends! {
    async fn old_and_future_days_get_their_partitions(db) {
        let w = writer(&db, 1_000).await;
        let mut rows = gpu_rows(20, t0() - Duration::days(30));
        rows.extend(gpu_rows(20, t0() + Duration::days(20)));
        w.write(&rows).await.expect("rows outside the pre-created days must still land");
        assert_eq!(count(&db, "gpu_metrics").await, 40);
    }
}

both_backends! {
    async fn host_and_environment_samples_round_trip(db) {
        let w = writer(&db, 1_000).await;
        let at = t0();
        let hosts: Vec<HostSample> = (0..5)
            .map(|i| HostSample {
                host_id: format!("host-{i}"),
                collected_at: at,
                cpu_usage_percent: Some(12.5 * i as f64),
                network_rx_bytes: Some(1 << 40),
                gpu_avg_power: Some(250.0),
                ..Default::default()
            })
            .collect();
        let envs: Vec<EnvSample> = (0..3)
            .map(|i| EnvSample {
                env_id: format!("env-{i}"),
                host_id: "host-0".into(),
                collected_at: at,
                gpu_usage_percent: Some(85.0),
                ..Default::default()
            })
            .collect();
        for _ in 0..2 {
            w.write(&hosts).await.unwrap();
            w.write(&envs).await.unwrap();
        }
        assert_eq!(count(&db, "host_metrics").await, 5);
        assert_eq!(count(&db, "environment_metrics").await, 3);
        let rx: i64 = db
            .client()
            .await
            .query_one("SELECT network_rx_bytes FROM host_metrics WHERE host_id = 'host-3'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rx, 1 << 40);
    }
}

both_backends! {
    async fn parallel_writers_of_the_same_batch_store_it_once(db) {
        let w = std::sync::Arc::new(writer(&db, 200).await);
        let rows = std::sync::Arc::new(gpu_rows(2_000, t0()));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (w, rows) = (w.clone(), rows.clone());
                tokio::spawn(async move { w.write(&rows).await })
            })
            .collect();
        let mut inserted = 0;
        for t in tasks {
            inserted += t.await.unwrap().expect("concurrent re-send must not error").inserted;
        }
        assert_eq!(inserted, 2_000);
        assert_eq!(count(&db, "gpu_metrics").await, 2_000);
    }
}

both_backends! {
    async fn a_read_write_url_rechecks_each_pooled_connection_and_still_writes(db) {
        let mut cfg = db.store_config();
        migrate(&cfg).await.unwrap();
        cfg.url.push_str(if cfg.url.contains('?') { "&" } else { "?" });
        cfg.url.push_str("target_session_attrs=read-write");
        let pool = gpuwatch_store::connect(&cfg).await.expect("pool with the standby check");
        let w = BatchWriter::new(pool, WriterConfig { connections: 2, chunk_rows: 100 });
        // Several chunks: connections are checked out, returned and recycled.
        for start in [t0(), t0() + Duration::hours(1)] {
            w.write(&gpu_rows(500, start)).await.expect("write through recycled connections");
        }
        assert_eq!(count(&db, "gpu_metrics").await, 1_000);
    }
}
