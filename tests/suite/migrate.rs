//! `gpuwatch migrate` against real servers: the full seed schema, the metric
//! tables as hypertables / partitioned tables, and a second run that changes nothing.

use gpuwatch_store::{both_backends, migrate, testing::Kind, Backend};

/// Seed 001's 33 tables (its script 06 counts six and names five; the sixth,
/// image_versions, is ours).
const SEED_TABLES: [&str; 33] = [
    "system_configs",
    "customers",
    "workspaces",
    "workspace_members",
    "resource_quotas",
    "hosts",
    "gpus",
    "environments",
    "port_mappings",
    "datasets",
    "dataset_versions",
    "models",
    "model_versions",
    "images",
    "image_versions",
    "host_metrics",
    "gpu_metrics",
    "environment_metrics",
    "billing_records",
    "invoices",
    "training_jobs",
    "inference_services",
    "notifications",
    "audit_logs",
    "alert_rules",
    "alert_records",
    "webhooks",
    "webhook_logs",
    "issues",
    "requirements",
    "comments",
    "artifacts",
    "dataset_usage",
];
/// gpuwatch's own tables beside the seed's (tiers of the metric tables, API
/// tokens, the alerter's groups, outbox, silences and inhibition rules,
/// billing's status history, prices and meter state, the DLWorkspace sync's
/// job history, cursor, retries, cluster records and owner map).
const OWN_TABLES: [&str; 27] = [
    "gpu_metrics_fleet_1h",
    "gpu_metrics_fleet_1d",
    "host_metrics_fleet_1h",
    "host_metrics_fleet_1d",
    "environment_metrics_fleet_1h",
    "environment_metrics_fleet_1d",
    "gpu_metrics_1h",
    "gpu_metrics_1d",
    "host_metrics_1h",
    "host_metrics_1d",
    "environment_metrics_1h",
    "environment_metrics_1d",
    "api_tokens",
    "alert_groups",
    "alert_outbox",
    "silences",
    "inhibit_rules",
    "environment_status_history",
    "billing_meter_state",
    "billing_recompute_queue",
    "billing_prices",
    "billing_meter_errors",
    "training_job_status_history",
    "dlworkspace_cursors",
    "dlworkspace_retry",
    "dlworkspace_clusters",
    "dlworkspace_owner_map",
];
const METRIC_TABLES: [&str; 3] = ["host_metrics", "gpu_metrics", "environment_metrics"];

/// Tables a user sees: top-level ones, not partitions or gpuwatch's ledger.
async fn user_tables(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND c.relname NOT LIKE 'gpuwatch\\_%' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Everything a migration could change: columns, indexes, constraints,
/// triggers, functions, the ledger and system_configs rows.
async fn snapshot(c: &tokio_postgres::Client) -> Vec<String> {
    let queries = [
        "SELECT table_name || '.' || column_name || ':' || data_type || ':' || coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = 'public'",
        "SELECT indexname || ':' || indexdef FROM pg_indexes WHERE schemaname = 'public'",
        "SELECT conname || ':' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
        "SELECT proname || ':' || md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        "SELECT version || ':' || checksum || ':' || applied_at::text FROM gpuwatch_schema_migrations",
        "SELECT config_key || '=' || config_value || ':' || updated_at::text FROM system_configs",
    ];
    let mut out = Vec::new();
    for q in queries {
        for r in c.query(q, &[]).await.unwrap() {
            out.push(r.get::<_, String>(0));
        }
    }
    out.sort();
    out
}

both_backends! {
    async fn creates_every_seed_table_and_a_second_run_changes_nothing(db) {
        let cfg = db.store_config();
        let first = migrate(&cfg).await.expect("first migrate");
        assert_eq!(first.applied.len(), gpuwatch_store::migrations().len());
        let c = db.client().await;

        let mut expected: Vec<String> = SEED_TABLES.iter().chain(OWN_TABLES.iter()).map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(user_tables(&c).await, expected, "tables differ from seed 001's list plus the tiers");

        let before = snapshot(&c).await;
        let second = migrate(&cfg).await.expect("second migrate");
        assert!(second.applied.is_empty(), "second run applied {:?}", second.applied);
        assert_eq!(second.already_applied, gpuwatch_store::migrations().len());
        assert_eq!(snapshot(&c).await, before, "second run changed the schema");

        let recorded: String = c
            .query_one("SELECT config_value FROM system_configs WHERE config_key = 'storage.backend'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(recorded, first.backend.name());
    }
}

both_backends! {
    async fn metric_tables_are_hypertables_or_daily_partitioned(db) {
        let report = migrate(&db.store_config()).await.unwrap();
        let c = db.client().await;
        match db.kind {
            Kind::TimescaleDb => {
                assert!(matches!(report.backend, Backend::TimescaleDb { .. }), "{:?}", report.backend);
                for t in METRIC_TABLES {
                    let secs: f64 = c
                        .query_one(
                            "SELECT extract(epoch FROM d.time_interval)::float8
                             FROM timescaledb_information.dimensions d
                             WHERE d.hypertable_name = $1 AND d.column_name = 'collected_at'",
                            &[&t],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{t} is not a hypertable on collected_at: {e}"))
                        .get(0);
                    assert_eq!(secs, 86_400.0, "{t} chunks are not 1 day");
                }
            }
            Kind::Postgres => {
                assert_eq!(report.backend, Backend::Postgres);
                for t in METRIC_TABLES {
                    let row = c
                        .query_one(
                            "SELECT c.relkind::text, pg_get_partkeydef(c.oid),
                                    (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid)
                             FROM pg_class c WHERE c.relname = $1",
                            &[&t],
                        )
                        .await
                        .unwrap();
                    assert_eq!(row.get::<_, String>(0), "p", "{t} is not partitioned");
                    assert_eq!(row.get::<_, String>(1), "RANGE (collected_at)");
                    // Yesterday through a week ahead exist before any insert.
                    assert!(row.get::<_, i64>(2) >= 9, "{t} has {} partitions", row.get::<_, i64>(2));
                }
            }
        }
        // Identity of every metric table is (series, collected_at).
        for (t, key) in [("host_metrics", "host_id, collected_at"), ("gpu_metrics", "gpu_id, collected_at"), ("environment_metrics", "env_id, collected_at")] {
            let def: String = c
                .query_one(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
                    &[&t],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(def, format!("PRIMARY KEY ({key})"), "{t}");
        }
    }
}

both_backends! {
    async fn every_time_column_is_timestamptz(db) {
        migrate(&db.store_config()).await.unwrap();
        let c = db.client().await;
        let naive: Vec<String> = c
            .query(
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                 WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(naive.is_empty(), "columns without time zone: {naive:?}");
        // labels columns have GIN indexes (seed 001/004).
        let missing: Vec<String> = c
            .query(
                "SELECT c.table_name FROM information_schema.columns c
                 WHERE c.table_schema = 'public' AND c.column_name = 'labels' AND c.data_type = 'jsonb'
                   AND NOT EXISTS (SELECT 1 FROM pg_indexes i WHERE i.tablename = c.table_name
                                   AND i.indexdef ILIKE '%USING gin (labels)%')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(missing.is_empty(), "labels without a GIN index: {missing:?}");
    }
}

both_backends! {
    async fn updated_at_follows_every_update(db) {
        migrate(&db.store_config()).await.unwrap();
        let c = db.client().await;
        c.batch_execute(
            "INSERT INTO system_configs (config_key, config_value, config_type, updated_at)
             VALUES ('t', '1', 'integer', now() - interval '1 day')",
        )
        .await
        .unwrap();
        c.batch_execute("UPDATE system_configs SET config_value = '2' WHERE config_key = 't'").await.unwrap();
        let fresh: bool = c
            .query_one("SELECT updated_at > now() - interval '1 minute' FROM system_configs WHERE config_key = 't'", &[])
            .await
            .unwrap()
            .get(0);
        assert!(fresh, "the updated_at trigger did not fire");
    }
}
