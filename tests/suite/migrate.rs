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
const OWN_TABLES: [&str; 28] = [
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
    "billing_customer_settings",
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
        // Identity of every metric table is (series, collected_at) and the
        // host, the distribution column (migration 0032).
        for (t, key) in [("host_metrics", "host_id, collected_at"), ("gpu_metrics", "gpu_id, collected_at, host_id"), ("environment_metrics", "env_id, collected_at, host_id")] {
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

/// `prosrc` of every function a file of migrations/functions/ defines,
/// with the file's text: the current definition is the file's.
async fn functions_match_their_files(c: &tokio_postgres::Client) {
    for f in gpuwatch_store::migration_functions() {
        let name = f.name.trim_end_matches(".sql");
        let rows = c
            .query("SELECT prosrc FROM pg_proc WHERE proname = $1 AND pronamespace = 'public'::regnamespace", &[&name])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{name} is defined {} times", rows.len());
        let src: String = rows[0].get(0);
        assert!(
            f.sql.contains(src.trim()),
            "{name} is not the definition of functions/{}",
            f.name
        );
    }
}

both_backends! {
    async fn a_database_migrated_before_function_files_upgrades_cleanly(db) {
        let cfg = db.store_config();
        // What the build before the function files and migration 0022 did.
        let old = gpuwatch_store::migrate_as_of(&cfg, 21).await.expect("migrate as the old build did");
        assert!(old.functions.is_empty());
        let c = db.client().await;
        let up = migrate(&cfg).await.expect("upgrade");
        let newer: Vec<&str> = gpuwatch_store::migrations().iter().filter(|m| m.version > 21).map(|m| m.name).collect();
        assert_eq!(up.applied, newer);
        assert_eq!(up.functions.len(), gpuwatch_store::migration_functions().len(), "every function file is applied once");
        functions_match_their_files(&c).await;
        let before = snapshot(&c).await;
        let again = migrate(&cfg).await.expect("second migrate");
        assert!(again.applied.is_empty() && again.functions.is_empty(), "{again:?}");
        assert_eq!(snapshot(&c).await, before, "second run changed the schema");
    }
}

both_backends! {
    async fn a_changed_function_file_is_applied_by_the_next_migrate(db) {
        let cfg = db.store_config();
        migrate(&cfg).await.expect("migrate");
        let c = db.client().await;
        // A database whose function differs from its file, as after a fix to
        // the file: the ledger's checksum no longer matches the file's.
        c.batch_execute(
            "CREATE OR REPLACE FUNCTION gpuwatch_retention_days(key text, fallback integer) RETURNS integer
             LANGUAGE sql STABLE AS $$ SELECT -1 $$;
             UPDATE gpuwatch_schema_functions SET checksum = 'old' WHERE name = 'gpuwatch_retention_days.sql';",
        )
        .await
        .unwrap();
        let pending = gpuwatch_store::pending_migrations(&c).await.unwrap();
        assert_eq!(pending, ["functions/gpuwatch_retention_days.sql applied with other contents"]);
        let run = migrate(&cfg).await.expect("migrate again");
        assert_eq!(run.functions, ["gpuwatch_retention_days.sql"], "only the changed file is applied");
        let days: i32 = c.query_one("SELECT gpuwatch_retention_days('retention.raw_days', 7)", &[]).await.unwrap().get(0);
        assert_eq!(days, 7);
        functions_match_their_files(&c).await;
    }
}

both_backends! {
    async fn raw_metric_tables_have_exactly_the_catalogued_columns(db) {
        migrate(&db.store_config()).await.expect("migrate");
        let c = db.client().await;
        for (table, catalogue) in gpuwatch_store::catalogue::tables() {
            let mut got: Vec<(String, String, bool)> = c
                .query(
                    "SELECT column_name::text, data_type::text, is_nullable = 'YES' FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = $1",
                    &[&table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            got.sort();
            let mut want: Vec<(String, String, bool)> = catalogue
                .iter()
                .map(|col| (col.name.to_string(), col.sql.information_schema().to_string(), col.nullable))
                .collect();
            want.sort();
            assert_eq!(got, want, "{table} differs from store/src/catalogue");
        }
    }
}
