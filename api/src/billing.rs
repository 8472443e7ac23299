//! Usage reports, invoices and prices for finance: thin handlers over
//! [`gpuwatch_billing`], which owns the money arithmetic and its one
//! rounding rule. Amounts travel as decimal strings, never floats.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gpuwatch_billing::{
    BillingError, Invoice, InvoicePage, InvoiceQuery, NewPrice, PriceEntry, Transition,
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::extract::{Body, Params, PathParam};
use crate::{ApiError, AppState};

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Invalid(problems) => {
                let mut err = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid request: {}", problems.join("; ")),
                );
                err.details = problems;
                err
            }
            BillingError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, what),
            BillingError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, what),
            BillingError::Store(e) => e.into(),
        }
    }
}

/// The JSON answer of a usage report.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageReport {
    /// Rows; their amounts sum exactly to the invoice lines they split.
    pub rows: Vec<gpuwatch_billing::UsageRow>,
}

/// `GET /api/v1/reports/usage`: JSON, or CSV with `format=csv`.
pub async fn usage(
    State(st): State<AppState>,
    Params(q): Params<gpuwatch_billing::UsageQuery>,
) -> Result<Response, ApiError> {
    let spec = q.validate()?;
    let rows = gpuwatch_billing::usage_report(st.pool().readers(), &spec).await?;
    if spec.format == gpuwatch_billing::ReportFormat::Csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"usage.csv\"",
                ),
            ],
            gpuwatch_billing::to_csv(&rows),
        )
            .into_response());
    }
    Ok(Json(UsageReport { rows }).into_response())
}

/// `GET /api/v1/invoices`
pub async fn list_invoices(
    State(st): State<AppState>,
    Params(q): Params<InvoiceQuery>,
) -> Result<Json<InvoicePage>, ApiError> {
    Ok(Json(gpuwatch_billing::list_invoices(st.pool(), &q).await?))
}

/// `GET /api/v1/invoices/{id}`
pub async fn get_invoice(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Invoice>, ApiError> {
    Ok(Json(gpuwatch_billing::get_invoice(st.pool(), id).await?))
}

async fn transition(st: &AppState, id: i64, t: Transition) -> Result<Json<Invoice>, ApiError> {
    let inv =
        gpuwatch_billing::transition(st.pool(), id, t, chrono::Utc::now(), st.invoice_due_days())
            .await?;
    Ok(Json(inv))
}

/// `POST /api/v1/invoices/{id}/issue`: draft → issued; from then on it never changes.
pub async fn issue_invoice(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Invoice>, ApiError> {
    transition(&st, id, Transition::Issue).await
}

/// `POST /api/v1/invoices/{id}/pay`: issued → paid.
pub async fn pay_invoice(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Invoice>, ApiError> {
    transition(&st, id, Transition::Pay).await
}

/// `POST /api/v1/invoices/{id}/void`: draft or issued → void.
pub async fn void_invoice(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Invoice>, ApiError> {
    transition(&st, id, Transition::Void).await
}

/// `GET /api/v1/prices`
pub async fn list_prices(State(st): State<AppState>) -> Result<Json<Vec<PriceEntry>>, ApiError> {
    Ok(Json(gpuwatch_billing::list_prices(st.pool()).await?))
}

/// `POST /api/v1/prices`: a new effective-dated price; the one it follows is closed.
pub async fn add_price(
    State(st): State<AppState>,
    Body(p): Body<NewPrice>,
) -> Result<(StatusCode, Json<PriceEntry>), ApiError> {
    let entry = gpuwatch_billing::add_price(st.pool(), &p).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}
