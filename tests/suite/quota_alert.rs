//! Issue 7's quota alert through issue 5's alerter: a customer holding 90 %
//! or more of a quota fires the shipped "quota nearly used" rule, with its
//! annotation rendered, and nothing fires for a customer below it.

use gpuwatch_store::{both_backends, migrate};

both_backends! {
    async fn a_customer_near_its_quota_fires_the_quota_rule(db) {
        let cfg = db.store_config();
        migrate(&cfg).await.expect("migrate");
        let pool = gpuwatch_store::connect(&cfg).await.unwrap();
        let c = db.client().await;
        c.batch_execute(
            "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'near', 'n@example.com', 'x'), (2, 'far', 'f@example.com', 'x');
             INSERT INTO hosts (id, name, ip_address, os_type, total_cpu, total_memory) VALUES ('h1', 'h1', '10.0.0.1', 'linux', 64, 1 << 40);
             INSERT INTO resource_quotas (customer_id, max_gpu, max_cpu) VALUES (1, 4, 100), (2, 8, 100);
             INSERT INTO environments (id, customer_id, host_id, name, image, status, cpu, memory, gpu) VALUES
                ('e1', 1, 'h1', 'a', 'img', 'running', 8, 1 << 30, 2),
                ('e2', 1, 'h1', 'b', 'img', 'running', 8, 1 << 30, 2),
                ('e3', 2, 'h1', 'c', 'img', 'running', 8, 1 << 30, 2);",
        ).await.unwrap();
        let alerter = gpuwatch_alerter::AlerterConfig::default();
        gpuwatch_alerter::evaluate_once(&pool, &alerter).await.expect("evaluation");
        let rows = c.query(
            "SELECT a.labels->>'customer_id', a.labels->>'resource_type', a.value, a.annotations->>'summary'
               FROM alert_records a JOIN alert_rules r ON r.id = a.rule_id
              WHERE r.name = 'quota nearly used' AND a.state = 'firing'", &[]).await.unwrap();
        let got: Vec<(String, String, f64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        assert_eq!(got, vec![(
            "1".to_string(), "gpu".to_string(), 100.0,
            "customer 1 uses 100% of its gpu quota".to_string(),
        )]);
    }
}
