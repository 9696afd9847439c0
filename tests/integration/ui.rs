//! The web UI is served by weft itself, from files embedded in the binary.

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_and_its_assets_are_served() {
    let server = TestServer::start().await;
    for (path, content_type, must_contain) in [
        ("/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/api/v1/logs"),
        ("/ui/style.css", "text/css", "--error"),
    ] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let ct = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        let body = response.text().await.unwrap();
        assert!(body.contains(must_contain), "{path} lacks {must_contain}");
    }
    server.stop().await;
}
