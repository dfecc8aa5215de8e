//! docs/openapi.json describes exactly the admin router's routes, and each one answers
//! on the real server as documented: 401 without a token where a token is required.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn documented() -> (Value, BTreeSet<(String, String)>) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path("docs/openapi.json")).unwrap())
            .expect("docs/openapi.json is JSON");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    (doc, ops)
}

#[test]
fn openapi_lists_exactly_the_routes() {
    let (_, doc) = documented();
    let routed: BTreeSet<(String, String)> = bulletin::http::AUTHED_ROUTES
        .iter()
        .chain(bulletin::http::OPEN_ROUTES)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&doc).collect();
    let stale: Vec<_> = doc.difference(&routed).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes not in docs/openapi.json: {missing:?}; documented but not routed: {stale:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_answers_with_its_security() {
    let (doc, ops) = documented();
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (method, path) in ops {
        let open = doc["paths"][&path][&method]["security"]
            .as_array()
            .is_some_and(|a| a.is_empty());
        let url = format!("{}{}", http.admin, path.replace("{id}", "1"));
        let req = match method.as_str() {
            "get" => no_redirects.get(&url),
            "post" => no_redirects.post(&url),
            other => panic!("unexpected method {other} for {path}"),
        };
        let status = req.send().await.unwrap().status().as_u16();
        if open {
            assert!(
                ![401, 404, 405].contains(&status),
                "{method} {path} is documented as open but answered {status}"
            );
        } else {
            assert_eq!(status, 401, "{method} {path} must want the token");
        }
    }
}
