//! Alert rules, silences, webhooks, alerts and notifications: thin handlers
//! over [`gpuwatch_alerter::admin`], which validates everything (templates
//! included) and owns the SQL.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use gpuwatch_alerter::admin::{self, Page};
use gpuwatch_alerter::AlerterError;

use crate::auth::Caller;
use crate::extract::{Body, Params, PathParam};
use crate::{ApiError, AppState};

impl From<AlerterError> for ApiError {
    fn from(e: AlerterError) -> Self {
        match e {
            AlerterError::Invalid(problems) => {
                let mut err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the body is not valid: {}", problems.join("; ")),
                );
                err.details = problems;
                err
            }
            AlerterError::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            AlerterError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, what),
            AlerterError::Unreadable(what) => {
                tracing::error!(error = %what, "a stored row does not parse");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, what)
            }
            AlerterError::Store(e) => e.into(),
        }
    }
}

/// Who made a change, as recorded in `created_by`: the token, never its secret.
fn author(c: &Caller) -> String {
    format!("api-token:{}", c.token_id)
}

type Res<T> = Result<Json<T>, ApiError>;

/// `GET /api/v1/alert-rules`
pub async fn list_rules(
    State(st): State<AppState>,
    Params(q): Params<admin::RuleQuery>,
) -> Res<Page<gpuwatch_alerter::rule::Rule>> {
    Ok(Json(admin::list_rules(st.pool(), q).await?))
}

/// `POST /api/v1/alert-rules`
pub async fn create_rule(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Body(input): Body<admin::RuleInput>,
) -> Result<(StatusCode, Json<gpuwatch_alerter::rule::Rule>), ApiError> {
    let rule = admin::create_rule(st.pool(), input, Some(&author(&c))).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// `GET /api/v1/alert-rules/{id}`
pub async fn get_rule(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Res<gpuwatch_alerter::rule::Rule> {
    Ok(Json(admin::get_rule(st.pool(), id).await?))
}

/// `PUT /api/v1/alert-rules/{id}`
pub async fn update_rule(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
    Body(input): Body<admin::RuleInput>,
) -> Res<gpuwatch_alerter::rule::Rule> {
    Ok(Json(admin::update_rule(st.pool(), id, input).await?))
}

/// `DELETE /api/v1/alert-rules/{id}`
pub async fn delete_rule(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    admin::delete_rule(st.pool(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/silences`
pub async fn list_silences(
    State(st): State<AppState>,
    Params(q): Params<admin::SilenceQuery>,
) -> Res<Page<admin::Silence>> {
    Ok(Json(admin::list_silences(st.pool(), q).await?))
}

/// `POST /api/v1/silences`
pub async fn create_silence(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Body(input): Body<admin::SilenceInput>,
) -> Result<(StatusCode, Json<admin::Silence>), ApiError> {
    let s = admin::create_silence(st.pool(), input, &author(&c)).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// `GET /api/v1/silences/{id}`
pub async fn get_silence(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Res<admin::Silence> {
    Ok(Json(admin::get_silence(st.pool(), id).await?))
}

/// `PUT /api/v1/silences/{id}`
pub async fn update_silence(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    PathParam(id): PathParam<i64>,
    Body(input): Body<admin::SilenceInput>,
) -> Res<admin::Silence> {
    Ok(Json(
        admin::update_silence(st.pool(), id, input, &author(&c)).await?,
    ))
}

/// `DELETE /api/v1/silences/{id}` (expires it)
pub async fn delete_silence(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    admin::delete_silence(st.pool(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/webhooks`
pub async fn list_webhooks(
    State(st): State<AppState>,
    Params(q): Params<admin::WebhookQuery>,
) -> Res<Page<admin::Webhook>> {
    Ok(Json(admin::list_webhooks(st.pool(), q).await?))
}

/// `POST /api/v1/webhooks`; the secret is stored, never returned.
pub async fn create_webhook(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Body(input): Body<admin::WebhookInput>,
) -> Result<(StatusCode, Json<admin::Webhook>), ApiError> {
    let w =
        admin::create_webhook(st.pool(), input, st.webhook_defaults(), Some(&author(&c))).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// `GET /api/v1/webhooks/{id}`
pub async fn get_webhook(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Res<admin::Webhook> {
    Ok(Json(admin::get_webhook(st.pool(), id).await?))
}

/// `PUT /api/v1/webhooks/{id}`; without `secret` the stored one is kept.
pub async fn update_webhook(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
    Body(input): Body<admin::WebhookInput>,
) -> Res<admin::Webhook> {
    Ok(Json(admin::update_webhook(st.pool(), id, input).await?))
}

/// `DELETE /api/v1/webhooks/{id}`
pub async fn delete_webhook(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    admin::delete_webhook(st.pool(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/alerts`: pending and firing.
pub async fn active_alerts(
    State(st): State<AppState>,
    Params(q): Params<admin::AlertQuery>,
) -> Res<Page<admin::AlertRecord>> {
    Ok(Json(admin::list_active_alerts(st.pool(), q).await?))
}

/// `GET /api/v1/alerts/history`: every state, newest first.
pub async fn alert_history(
    State(st): State<AppState>,
    Params(q): Params<admin::AlertQuery>,
) -> Res<Page<admin::AlertRecord>> {
    Ok(Json(admin::alert_history(st.pool(), q).await?))
}

/// `GET /api/v1/notifications`: the outbox, e.g. `?status=dead` for dead letters.
pub async fn list_notifications(
    State(st): State<AppState>,
    Params(q): Params<admin::NotificationQuery>,
) -> Res<Page<admin::Notification>> {
    Ok(Json(admin::list_notifications(st.pool(), q).await?))
}

/// `POST /api/v1/notifications/{id}/replay`: a dead letter goes out again.
pub async fn replay_notification(
    State(st): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    admin::replay_notification(st.pool(), &id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /api/v1/inhibit-rules`
pub async fn list_inhibitions(
    State(st): State<AppState>,
    Params(q): Params<admin::InhibitionQuery>,
) -> Res<Page<admin::Inhibition>> {
    Ok(Json(admin::list_inhibitions(st.pool(), q).await?))
}

/// `POST /api/v1/inhibit-rules`
pub async fn create_inhibition(
    State(st): State<AppState>,
    Body(input): Body<admin::InhibitionInput>,
) -> Result<(StatusCode, Json<admin::Inhibition>), ApiError> {
    let i = admin::create_inhibition(st.pool(), input).await?;
    Ok((StatusCode::CREATED, Json(i)))
}

/// `GET /api/v1/inhibit-rules/{id}`
pub async fn get_inhibition(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Res<admin::Inhibition> {
    Ok(Json(admin::get_inhibition(st.pool(), id).await?))
}

/// `PUT /api/v1/inhibit-rules/{id}`
pub async fn update_inhibition(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
    Body(input): Body<admin::InhibitionInput>,
) -> Res<admin::Inhibition> {
    Ok(Json(admin::update_inhibition(st.pool(), id, input).await?))
}

/// `DELETE /api/v1/inhibit-rules/{id}`
pub async fn delete_inhibition(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode, ApiError> {
    admin::delete_inhibition(st.pool(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/alerts/{id}/acknowledge`: by the calling token's name.
pub async fn acknowledge_alert(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    PathParam(id): PathParam<i64>,
) -> Res<admin::AlertRecord> {
    Ok(Json(
        admin::acknowledge_alert(st.pool(), id, &c.name).await?,
    ))
}

/// `DELETE /api/v1/alerts/{id}/acknowledge`: the acknowledgement taken back.
pub async fn unacknowledge_alert(
    State(st): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Res<admin::AlertRecord> {
    Ok(Json(admin::unacknowledge_alert(st.pool(), id).await?))
}
