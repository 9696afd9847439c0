//! `GET /api/v1/service-map?start=&end=` (default: the last hour): every service with spans or
//! logs in the range, and the calls between them (`crate::query::service_map`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;

use super::{ApiError, ApiState, authorization};
use crate::query::requests::time_range;
use crate::query::service_map::ServiceMap;

pub(crate) async fn service_map(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<ServiceMap>, ApiError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let range = time_range(get("start"), get("end"))?;
    let map = state
        .query
        .service_map(range, authorization(&headers).as_deref())
        .await?;
    Ok(Json(map))
}
