//! Endpoints for agents only. `GET /api/v1/agent/environments`: the running
//! environments placed on the token's host, so an agent pushing over HTTP
//! samples its environments as one writing to the database does. A bound
//! token gets its own host and nothing else; an `--any-host` token names
//! the host it asks for.

use axum::extract::State;
use axum::{Extension, Json};
use gpuwatch_store::placement::{self, PlacedEnvironment};

use crate::auth::Caller;
use crate::extract::Params;
use crate::{ApiError, AppState};

/// Query of `GET /api/v1/agent/environments`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentsQuery {
    /// The host, for a token that is not bound to one; a bound token may
    /// only name its own host.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[^\x00-\x1f\x7f]+$"))]
    pub host: Option<String>,
}

/// The handler.
pub async fn environments(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(q): Params<EnvironmentsQuery>,
) -> Result<Json<Vec<PlacedEnvironment>>, ApiError> {
    let host = caller.agent_host(q.host.as_deref())?;
    crate::extract::text("host", host, 64)?;
    Ok(Json(placement::running_on(st.pool(), host).await?))
}
