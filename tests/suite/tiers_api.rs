//! `GET /api/v1/series` returns what is stored: every aggregate (avg, min,
//! max, sum, count, p95 for gauges; increase and rate for counters) over
//! 1 hour (raw rows), 7 days (hourly rows) and 1 year (daily rows), per
//! series and for the fleet, equals the same computation over raw rows.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use gpuwatch_aggregator::{run_once, AggregatorConfig};
use gpuwatch_api::ApiConfig;
use gpuwatch_store::{both_backends, GpuSample};
use reqwest::StatusCode;

use crate::aggregator::{day_start, setup};
use crate::common::ApiClient;

/// A plausible sample of GPU `g` at `t`; the energy counter resets every
/// 97 hours (an agent restart).
fn sample(g: i64, t: DateTime<Utc>, i: i64) -> GpuSample {
    let v = ((i * 7919 + g * 104_729) % 1000) as f64;
    let since_reset = t.timestamp().rem_euclid(97 * 3_600);
    GpuSample {
        gpu_id: g,
        host_id: format!("h{g}"),
        collected_at: t,
        utilization_percent: Some(v / 10.0),
        temperature: Some(30.0 + v / 20.0),
        energy_consumed_mj: Some(since_reset * 250 + g * 3),
        ..Default::default()
    }
}

/// The aggregate over raw rows per step bucket, as the API must answer it.
fn raw_sql(agg: &str, metric: &str) -> String {
    let e = match agg {
        "avg" => format!("(sum({metric}::numeric) / nullif(count({metric}), 0))::float8"),
        "sum" => format!("sum({metric}::numeric)::float8"),
        "count" => format!("count({metric})::float8"),
        "min" => format!("min({metric})::float8"),
        "max" => format!("max({metric})::float8"),
        _ => format!("percentile_cont(0.95) WITHIN GROUP (ORDER BY {metric})::float8"),
    };
    format!(
        "SELECT date_bin($4::text::interval, collected_at, '2000-01-01 00:00:00+00'), {e}
         FROM gpu_metrics WHERE ($1::bigint[] IS NULL OR gpu_id = ANY ($1)) AND collected_at BETWEEN $2 AND $3
         GROUP BY 1 ORDER BY 1"
    )
}

/// Reset-corrected increase per bucket over raw rows, or the rate (that
/// increase over the seconds it accrued in, per series, summed): each step
/// between consecutive samples counts in the later sample's bucket.
const RAW_COUNTER: &str = "
    WITH d AS (
        SELECT gpu_id, collected_at AS t, date_bin($4::text::interval, collected_at, '2000-01-01 00:00:00+00') AS b,
               CASE WHEN energy_consumed_mj >= lag(energy_consumed_mj) OVER w THEN energy_consumed_mj - lag(energy_consumed_mj) OVER w
                    WHEN lag(energy_consumed_mj) OVER w IS NULL THEN 0 ELSE energy_consumed_mj END AS dv,
               coalesce(extract(epoch FROM collected_at - lag(collected_at) OVER w), 0) AS dt
        FROM gpu_metrics WHERE gpu_id = ANY ($1) WINDOW w AS (PARTITION BY gpu_id ORDER BY collected_at)
    ), s AS (
        SELECT b, sum(dv) AS dv, sum(dt) AS dt FROM d
        WHERE t >= date_bin($4::text::interval, $2, '2000-01-01 00:00:00+00') AND t <= $3 GROUP BY gpu_id, b
    )
    SELECT b, CASE WHEN $5 = 'rate' THEN sum(dv / dt)::float8 ELSE sum(dv)::float8 END FROM s GROUP BY 1 ORDER BY 1";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

both_backends! {
    async fn every_aggregate_of_the_series_api_equals_raw_over_1h_7d_and_1y(db) {
        let (pool, w) = setup(&db).await;
        let end = day_start(Utc::now());
        // A year and a day every 30 minutes, the last two hours every 10 s.
        let mut rows = Vec::new();
        for g in [1i64, 2] {
            let mut i = 0;
            let mut t = end - Duration::days(366);
            while t < end {
                rows.push(sample(g, t, i));
                i += 1;
                t += if t >= end - Duration::hours(2) { Duration::seconds(10) } else { Duration::minutes(30) };
            }
        }
        w.write(&rows).await.unwrap();
        let c = pool.get().await.unwrap();
        // Raw rows are kept for the comparison; tier choice follows the step.
        c.execute("UPDATE system_configs SET config_value = '400' WHERE config_key IN ('retention.raw_days', 'retention.daily_days')", &[]).await.unwrap();
        let cfg = AggregatorConfig { max_hourly_buckets_per_run: 10_000, max_daily_buckets_per_run: 400, lateness_secs: 0, ..Default::default() };
        while !run_once(&pool, &cfg, end + Duration::hours(2)).await.unwrap().unwrap().caught_up() {}
        let s = ApiClient::start(&db, ApiConfig::default()).await;
        let token = s.token("viewer").await;
        let to = end - Duration::seconds(1);
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut checked = 0;
        for (range, span, step, sql_step) in [("1h", Duration::hours(1), "1m", "1 minute"), ("7d", Duration::days(7), "1h", "1 hour"), ("1y", Duration::days(364), "1d", "1 day")] {
            let from = end - span;
            let cases = ["avg", "min", "max", "sum", "count", "p95"]
                .into_iter()
                // p95 is kept for utilisation only.
                .flat_map(|a| [(a, "utilization_percent", Some(vec![1i64, 2])), (a, if a == "p95" { "utilization_percent" } else { "temperature" }, None)])
                .chain([("increase", "energy_consumed_mj", Some(vec![1, 2])), ("rate", "energy_consumed_mj", Some(vec![1, 2]))]);
            for (agg, metric, ids) in cases {
                let id_param = ids.as_ref().map(|v| format!("&ids={}", v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))).unwrap_or_default();
                let path = format!("/api/v1/series?source=gpu&metric={metric}&agg={agg}&from={}&to={}&step={step}{id_param}", fmt(from), fmt(to));
                let (st, body) = s.get(&path, Some(&token)).await;
                assert_eq!(st, StatusCode::OK, "{path}: {body}");
                assert_eq!(body["agg"], agg);
                let got: Vec<(DateTime<Utc>, f64)> = body["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p["t"].as_str().unwrap().parse().unwrap(), p["v"].as_f64().unwrap()))
                    .collect();
                let want: Vec<(DateTime<Utc>, f64)> = if metric == "energy_consumed_mj" {
                    c.query(RAW_COUNTER, &[&ids, &from, &to, &sql_step, &agg]).await.unwrap()
                } else {
                    c.query(&raw_sql(agg, metric), &[&ids, &from, &to, &sql_step]).await.unwrap()
                }
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
                assert!(want.len() > 50, "{range} {agg}: {} raw buckets", want.len());
                assert_eq!(got.len(), want.len(), "{range} {agg} {metric} {ids:?}: bucket count");
                for (g, e) in got.iter().zip(&want) {
                    assert_eq!(g.0, e.0, "{range} {agg} {metric}");
                    assert!(close(g.1, e.1), "{range} {agg} {metric} {ids:?} at {}: api {}, raw {}", g.0, g.1, e.1);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 3 * 14);
        // A closed set: an unknown aggregate is a 400 that names the field.
        let (st, body) = s.get(&format!("/api/v1/series?source=gpu&metric=temperature&agg=median&from={}&to={}", fmt(end - Duration::hours(1)), fmt(to)), Some(&token)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("agg"), "{body}");
        // A gauge asked as a counter, and a p95 that is not kept, say so.
        for (metric, agg, says) in [("temperature", "rate", "no counter"), ("temperature", "p95", "no p95")] {
            let (st, body) = s.get(&format!("/api/v1/series?source=gpu&metric={metric}&agg={agg}&ids=1&from={}&to={}", fmt(end - Duration::hours(1)), fmt(to)), Some(&token)).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.to_string().contains(says), "{metric} {agg}: {body}");
        }
    }
}
