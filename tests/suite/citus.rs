//! The schema after every migration against the Citus layout declared in
//! `gpuwatch_store::citus`: what `create_distributed_table` and
//! `create_reference_table` would refuse, read from the live catalogue on
//! both backends. Citus itself is not installed here (see DESIGN).

use gpuwatch_store::citus::{Placement, LAYOUT};
use gpuwatch_store::{both_backends, migrate};
use tokio_postgres::Client;

/// Every problem Citus would have with `layout` on the connected schema.
async fn problems(c: &Client, layout: &[(&str, Placement)]) -> Vec<String> {
    let mut out = Vec::new();
    let of = |t: &str| layout.iter().find(|(n, _)| *n == t).map(|(_, p)| *p);
    let tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace
                AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &tables {
        if of(t).is_none() {
            out.push(format!(
                "{t}: not classified in gpuwatch_store::citus::LAYOUT"
            ));
        }
    }
    for (t, _) in layout {
        if !tables.iter().any(|x| x == t) {
            out.push(format!("{t}: declared in the layout but not in the schema"));
        }
    }
    let mut types = Vec::new();
    for (t, p) in layout {
        let Placement::Distributed(col) = p else {
            continue;
        };
        if !tables.iter().any(|x| x == t) {
            continue;
        }
        distributed(c, t, col, &mut out, &mut types).await;
    }
    types.sort();
    types.dedup();
    if types.len() > 1 {
        out.push(format!(
            "distribution columns of one co-location group differ in type: {types:?}"
        ));
    }
    foreign_keys(c, &of, &mut out).await;
    out
}

/// A distributed table's column is NOT NULL and in every unique index,
/// primary key and exclusion constraint.
async fn distributed(
    c: &Client,
    t: &str,
    col: &str,
    out: &mut Vec<String>,
    types: &mut Vec<String>,
) {
    let column = c
        .query_opt(
            "SELECT a.attnotnull, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
              WHERE a.attrelid = $1::text::regclass AND a.attname = $2 AND NOT a.attisdropped",
            &[&t, &col],
        )
        .await
        .expect("distribution column");
    let Some(column) = column else {
        out.push(format!("{t}: has no distribution column {col}"));
        return;
    };
    if !column.get::<_, bool>(0) {
        out.push(format!(
            "{t}.{col}: nullable (Citus refuses NULL in the distribution column)"
        ));
    }
    types.push(column.get(1));
    let keys = c
        .query(
            "SELECT i.indexrelid::regclass::text,
                    EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid
                             AND a.attname = $2 AND a.attnum = ANY (i.indkey))
               FROM pg_index i
              WHERE i.indrelid = $1::text::regclass AND (i.indisunique OR i.indisexclusion)",
            &[&t, &col],
        )
        .await
        .expect("unique indexes");
    for k in keys {
        if !k.get::<_, bool>(1) {
            let name: String = k.get(0);
            out.push(format!(
                "{t}: unique index or constraint {name} lacks {col}"
            ));
        }
    }
}

/// Foreign keys Citus accepts: distributed → distributed only on the
/// distribution columns of both, distributed → reference, reference →
/// reference, local → reference or local.
async fn foreign_keys(c: &Client, of: &impl Fn(&str) -> Option<Placement>, out: &mut Vec<String>) {
    let fks = c
        .query(
            "SELECT f.conname::text, s.relname::text, d.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(f.conkey) WITH ORDINALITY k (n, o)
                          JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.n ORDER BY k.o),
                    ARRAY(SELECT a.attname::text FROM unnest(f.confkey) WITH ORDINALITY k (n, o)
                          JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.n ORDER BY k.o)
               FROM pg_constraint f
               JOIN pg_class s ON s.oid = f.conrelid
               JOIN pg_class d ON d.oid = f.confrelid
              WHERE f.contype = 'f' AND f.connamespace = current_schema()::regnamespace
                AND f.conparentid = 0 AND NOT s.relispartition",
            &[],
        )
        .await
        .expect("foreign keys");
    for fk in fks {
        let (name, from, to): (String, String, String) = (fk.get(0), fk.get(1), fk.get(2));
        let (cols, refs): (Vec<String>, Vec<String>) = (fk.get(3), fk.get(4));
        let (Some(a), Some(b)) = (of(&from), of(&to)) else {
            continue; // unclassified: reported already
        };
        use Placement::{Distributed, Local, Reference};
        let refused = match (a, b) {
            (Distributed(x), Distributed(y)) => {
                let paired = cols.iter().zip(&refs).any(|(c, r)| c == x && r == y);
                (!paired).then(|| format!("does not pair {from}.{x} with {to}.{y}"))
            }
            (Distributed(_), Reference) | (Reference, Reference) => None,
            (Local, Reference | Local) => None,
            (a, b) => Some(format!("{a:?} table to {b:?} table")),
        };
        if let Some(why) = refused {
            out.push(format!("foreign key {name} ({from} -> {to}): {why}"));
        }
    }
}

both_backends! {
    async fn the_schema_fits_the_declared_citus_layout(db) {
        migrate(&db.store_config()).await.expect("migrate");
        let found = problems(&db.client().await, LAYOUT).await;
        assert!(found.is_empty(), "Citus would refuse:\n{}", found.join("\n"));
    }
}

both_backends! {
    async fn the_layout_check_sees_what_citus_refuses(db) {
        migrate(&db.store_config()).await.expect("migrate");
        let c = db.client().await;
        c.batch_execute(
            "CREATE TABLE probe_dist (host_id VARCHAR(64), id int PRIMARY KEY);
             CREATE TABLE probe_other (host_id text NOT NULL, d int, PRIMARY KEY (host_id, d),
                 FOREIGN KEY (d) REFERENCES probe_dist (id));
             CREATE TABLE probe_ref (id int PRIMARY KEY, d int REFERENCES probe_dist (id));
             CREATE TABLE probe_stray (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
        let mut layout = LAYOUT.to_vec();
        layout.extend([
            ("probe_dist", Placement::Distributed("host_id")),
            ("probe_other", Placement::Distributed("host_id")),
            ("probe_ref", Placement::Reference),
            ("probe_gone", Placement::Local),
        ]);
        let found = problems(&c, &layout).await.join("\n");
        for want in [
            "probe_stray: not classified",
            "probe_gone: declared in the layout but not in the schema",
            "probe_dist.host_id: nullable",
            "probe_dist: unique index or constraint probe_dist_pkey lacks host_id",
            "differ in type",
            "(probe_other -> probe_dist): does not pair probe_other.host_id with probe_dist.host_id",
            "(probe_ref -> probe_dist): Reference table to Distributed",
        ] {
            assert!(found.contains(want), "{want:?} not in:\n{found}");
        }
    }
}

both_backends! {
    async fn the_upgrade_gives_every_stored_row_a_host_and_requeues_the_tiers(db) {
        let cfg = db.store_config();
        gpuwatch_store::migrate_as_of(&cfg, 30).await.expect("migrate as the build before 0032 did");
        let c = db.client().await;
        let at = chrono::Utc::now() - chrono::Duration::days(1);
        c.execute(
            "SELECT gpuwatch_ensure_partitions('environment_metrics', ($1::timestamptz - interval '1 day')::date, ($1::timestamptz + interval '1 day')::date)",
            &[&at],
        )
        .await
        .unwrap();
        c.batch_execute(
            "INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory)
                 VALUES ('h1', 'h1', '10.0.0.1', 'linux', 8, 1073741824);
             WITH c AS (INSERT INTO customers (username, email, password_hash)
                        VALUES ('u', 'u@example.com', 'x') RETURNING id)
             INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory)
             SELECT 'env-placed', c.id, 'h1', 'e', 'img', 'running', 4, 1073741824 FROM c;
             INSERT INTO environment_metrics_1h (env_id, bucket, sample_count, cpu_usage_percent_count,
                 memory_used_count, memory_usage_percent_count, gpu_usage_percent_count, gpu_memory_used_count)
                 VALUES ('env-placed', date_trunc('hour', now()) - interval '1 day', 1, 0, 0, 0, 0, 0);
             UPDATE gpuwatch_tier_state SET watermark = now() - interval '1 hour';",
        )
        .await
        .unwrap();
        for env in ["env-placed", "env-unknown"] {
            c.execute(
                "INSERT INTO environment_metrics (env_id, host_id, collected_at) VALUES ($1, NULL, $2)",
                &[&env, &at],
            )
            .await
            .unwrap();
        }
        c.execute("DELETE FROM gpuwatch_tier_invalidations", &[]).await.unwrap();
        migrate(&cfg).await.expect("upgrade");
        let hosts: Vec<(String, String)> = c
            .query("SELECT env_id::text, host_id::text FROM environment_metrics ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want = [("env-placed", "h1"), ("env-unknown", "")].map(|(e, h)| (e.to_string(), h.to_string()));
        assert_eq!(hosts, want);
        let tier: String = c.query_one("SELECT host_id::text FROM environment_metrics_1h", &[]).await.unwrap().get(0);
        assert_eq!(tier, "h1");
        let queued: Vec<(String, String)> = c
            .query("SELECT DISTINCT source, tier FROM gpuwatch_tier_invalidations ORDER BY 1, 2", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want = [("environment_metrics", "1d"), ("environment_metrics", "1h"), ("gpu_metrics", "1d"), ("gpu_metrics", "1h")]
            .map(|(s, t)| (s.to_string(), t.to_string()));
        assert_eq!(queued, want, "buckets inside raw retention are recomputed with the host in the key");
    }
}
