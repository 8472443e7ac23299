//! Currency and tax: a price without a currency bills in the customer's
//! currency, else `billing.default_currency`; a tax rate per customer, else
//! the default, is applied once per invoice by the money rule and shown.

use super::common::*;
use chrono::Duration;
use gpuwatch_billing::format::ReportFormat;
use gpuwatch_billing::invoice::{cut_invoices_with, render, InvoiceDefaults, InvoiceOptions};
use gpuwatch_billing::money::Currency;
use gpuwatch_billing::{get_invoice, meter_until_caught_up, MeterOptions};
use gpuwatch_store::both_backends;

both_backends! {
    async fn default_currency_and_tax_apply_where_price_and_customer_give_none(db) {
        let (pool, c) = setup(&db).await;
        c.batch_execute(
            "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from) VALUES
               ('cpu', '', 0.05, NULL, '2026-01-01'), ('memory', '', 0.01, NULL, '2026-01-01');
             INSERT INTO billing_customer_settings (customer_id, tax_rate, currency) VALUES (1, 0.06, 'USD');",
        )
        .await
        .unwrap();
        record(&c, &running("env-1", 1, 4, 0, None, "2026-10-31T20:00:00Z")).await;
        record(&c, &running("env-2", 2, 2, 0, None, "2026-10-31T22:00:00Z")).await;
        let opts = MeterOptions { default_currency: Some(Currency::parse("EUR").unwrap()), ..hourly() };
        let m = meter_until_caught_up(&pool, &opts, t("2026-11-01T00:10:00Z")).await.unwrap();
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        let issue = InvoiceOptions { grace: Duration::hours(0), auto_issue: true, due_days: 30 };
        let defaults = InvoiceDefaults { tax_rate: d("0.1") };
        let ids = cut_invoices_with(&pool, &issue, &defaults, t("2026-11-01T00:20:00Z")).await.unwrap().invoices;
        assert_eq!(ids.len(), 2);
        let one = get_invoice(&pool, ids[0]).await.unwrap();
        let two = get_invoice(&pool, ids[1]).await.unwrap();
        // 4 cores x 4 h x 0.05 + 8 GiB x 4 h x 0.01 = 1.12; 6% = 0.0672 -> 0.07.
        assert_eq!((one.currency.as_str(), one.subtotal, one.tax_rate, one.tax, one.total), ("USD", d("1.12"), d("0.06"), d("0.07"), d("1.19")));
        // 2 cores x 2 h x 0.05 + 8 GiB x 2 h x 0.01 = 0.36; 10% = 0.036 -> 0.04.
        assert_eq!((two.currency.as_str(), two.subtotal, two.tax_rate, two.tax, two.total), ("EUR", d("0.36"), d("0.1"), d("0.04"), d("0.40")));
        let text = render(std::slice::from_ref(&one), ReportFormat::Text);
        assert!(text.contains("subtotal $1.12  tax $0.07 (6%)  total $1.19"), "{text}");
        let csv = render(&[one], ReportFormat::Csv);
        assert!(csv.lines().nth(1).unwrap().ends_with(",1.19,invoice,0.06,0.07"), "{csv}");

        // Without any currency to fall back on, the period is bad input, named.
        record(&c, &running("env-3", 3, 1, 0, None, "2026-11-01T00:00:00Z")).await;
        let r = meter_until_caught_up(&pool, &hourly(), t("2026-11-01T01:10:00Z")).await.unwrap();
        assert!(r.errors.iter().any(|e| e.contains("env-3") && e.contains("billing.default_currency")), "{:?}", r.errors);
    }
}
