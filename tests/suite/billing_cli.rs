//! `gpuwatch billing --once` and `gpuwatch report` as finance runs them:
//! a month metered and invoiced, its usage report summing to its invoices,
//! and a period with bad input named on stderr with a non-zero exit.

use crate::common;

use std::process::Output;

use chrono::{Datelike, Duration, TimeZone, Utc};
use gpuwatch_store::both_backends;

fn run(args: &[&str], url: &str) -> Output {
    common::gpuwatch_command(args)
        .env("DATABASE_URL", url)
        .env("GPUWATCH_LOG__LEVEL", "error")
        .env("GPUWATCH_BILLING__INVOICE_GRACE", "0s")
        .output()
        .expect("run gpuwatch")
}

fn money_sum(csv: &str, column: usize) -> i64 {
    // Amounts have exactly two decimals: sum them as cents, no float.
    csv.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(column)
                .unwrap()
                .replace('.', "")
                .parse::<i64>()
                .unwrap()
        })
        .sum()
}

both_backends! {
    async fn billing_once_meters_invoices_and_reports_reconcile(db) {
        let out = run(&["migrate"], &db.url);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let now = Utc::now();
        let this_month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap();
        let last_month = this_month - Duration::days(15);
        let month = last_month.format("%Y-%m").to_string();
        let c = db.client().await;
        c.batch_execute(
            "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x');
             INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from) VALUES
               ('cpu', '', 0.05, 'CNY', '2020-01-01'), ('memory', '', 0.01, 'CNY', '2020-01-01'),
               ('gpu', 'H100', 20, 'CNY', '2020-01-01');",
        )
        .await
        .unwrap();
        let start = this_month - Duration::days(40);
        for (env, model) in [("env-ok", "H100"), ("env-bad", "A100")] {
            c.execute(
                "INSERT INTO environment_status_history (env_id, customer_id, status, cpu, memory, gpu, gpu_model, valid_from)
                 VALUES ($1, 1, 'running', 3, 4294967296, 1, $2, $3)",
                &[&env, &model, &start],
            )
            .await
            .unwrap();
        }
        let out = run(&["billing", "--once"], &db.url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "bad input must fail the run: {stderr}");
        assert!(stderr.contains("environment env-bad resource gpu period"), "{stderr}");
        assert!(stderr.contains("no price in force for model \"A100\""), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(" cut") && !stdout.contains(" 0 invoices cut"), "{stdout}");

        let usage = run(&["report", "usage", "--month", &month, "--format", "csv", "--group-by", "environment"], &db.url);
        assert!(usage.status.success(), "{}", String::from_utf8_lossy(&usage.stderr));
        let usage = String::from_utf8(usage.stdout).unwrap();
        assert!(usage.lines().count() >= 4, "{usage}");
        assert!(usage.lines().skip(1).all(|l| l.contains(",env-ok,")), "env-bad billed nothing: {usage}");
        let invoices = run(&["report", "invoices", "--month", &month, "--format", "csv"], &db.url);
        assert!(invoices.status.success(), "{}", String::from_utf8_lossy(&invoices.stderr));
        let invoices = String::from_utf8(invoices.stdout).unwrap();
        assert_eq!(money_sum(&usage, 10), money_sum(&invoices, 12), "usage report and invoice lines differ:\n{usage}\n{invoices}");
        let text = run(&["report", "invoices", "--month", &month], &db.url);
        assert!(String::from_utf8_lossy(&text.stdout).contains("total ¥"), "{}", String::from_utf8_lossy(&text.stdout));

        let bad = run(&["report", "usage", "--month", "2026-13"], &db.url);
        assert_eq!(bad.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("month: expected a month as YYYY-MM"));
    }
}

both_backends! {
    async fn invoice_and_usage_csv_quote_a_gpu_model_with_a_comma(db) {
        let out = run(&["migrate"], &db.url);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let now = Utc::now();
        let this_month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap();
        let month = (this_month - Duration::days(15)).format("%Y-%m").to_string();
        let c = db.client().await;
        c.batch_execute(
            "INSERT INTO customers (id, username, email, password_hash) VALUES (1, 'c1', 'c1@example.com', 'x');
             INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from) VALUES
               ('cpu', '', 0.05, 'CNY', '2020-01-01'), ('memory', '', 0.01, 'CNY', '2020-01-01'),
               ('gpu', 'A100, 80GB', 20, 'CNY', '2020-01-01');",
        )
        .await
        .unwrap();
        c.execute(
            "INSERT INTO environment_status_history (env_id, customer_id, status, cpu, memory, gpu, gpu_model, valid_from)
             VALUES ('env-1', 1, 'running', 3, 4294967296, 1, 'A100, 80GB', $1)",
            &[&(this_month - Duration::days(40))],
        )
        .await
        .unwrap();
        let out = run(&["billing", "--once"], &db.url);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        for (args, width, model_column) in [
            (vec!["report", "invoices", "--month", &month, "--format", "csv"], 17, 8),
            (vec!["report", "usage", "--month", &month, "--format", "csv", "--group-by", "resource,gpu_model"], 15, 6),
        ] {
            let out = run(&args, &db.url);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
            assert_eq!(reader.headers().unwrap().len(), width, "{args:?}");
            let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a well-formed CSV row")).collect();
            assert!(rows.iter().all(|r| r.len() == width), "{args:?}: {rows:?}");
            assert!(
                rows.iter().any(|r| &r[model_column] == "A100, 80GB"),
                "{args:?}: the GPU model is one field, intact: {rows:?}"
            );
        }
    }
}

both_backends! {
    async fn report_arguments_dates_and_messages_read_as_finance_expects(db) {
        let out = run(&["migrate"], &db.url);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // A date is a range bound at midnight UTC, like the RFC 3339 form.
        for (from, to) in [("2026-10-01", "2026-11-01"), ("2026-10-01T00:00:00Z", "2026-11-01")] {
            let ok = run(&["report", "usage", "--from", from, "--to", to, "--format", "json"], &db.url);
            assert!(ok.status.success(), "{from}..{to}: {}", String::from_utf8_lossy(&ok.stderr));
            assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "[]");
        }

        // Every bad argument: exit 64, one line naming the argument.
        for (args, names) in [
            (vec!["report", "usage", "--from", "2026-10-01x", "--to", "2026-11-01"], "--from"),
            (vec!["report", "usage", "--from", "2026-10-01", "--to", "soon"], "--to"),
            (vec!["report", "usage", "--month", "2026-10", "--customer", "abc"], "--customer"),
            (vec!["report", "invoices", "--customer", "abc"], "--customer"),
            (vec!["report", "usage", "--month", "2026-10", "--format", "xml"], "--format"),
            (vec!["report", "invoices", "--status", "open"], "--status"),
            (vec!["report", "usage", "--month", "2026-10", "--group-by", "team"], "--group-by"),
            (vec!["report", "usage", "--month", "2026-10", "--bogus"], "--bogus"),
        ] {
            let bad = run(&args, &db.url);
            let stderr = String::from_utf8_lossy(&bad.stderr);
            assert_eq!(bad.status.code(), Some(64), "{args:?}: {stderr}");
            assert!(stderr.contains(names), "{args:?} must name {names}: {stderr}");
        }

        // Nothing to meter yet: the summary says so in words, and counts in English.
        let once = run(&["billing", "--once"], &db.url);
        assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
        let text = format!("{}{}", String::from_utf8_lossy(&once.stdout), String::from_utf8_lossy(&once.stderr));
        assert!(!text.contains("reached nothing") && !text.contains("through nothing"), "{text}");
        assert!(text.contains("0 invoices cut"), "{text}");
    }
}
