//! The web UI: static files from ui/, embedded in the binary so weft needs no second server and
//! no build step. The UI talks to the same HTTP API as everyone else.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// Routes of the UI: `/` and its assets under `/ui/`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { page(STYLE_CSS, "text/css; charset=utf-8") }),
        )
}

fn page(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Files change with the binary; revalidate instead of serving a stale UI after an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
