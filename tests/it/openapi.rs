//! docs/openapi.json is exactly the document the admin router generates from its own
//! declarations (`bulletin::http::openapi`), and each documented operation answers on the
//! real server as documented: 401 without a token where a token is required, and never
//! "no such route" (404) or "no such method" (405).

use crate::harness::*;
use serde_json::Value;

/// The command that rewrites docs/openapi.json from the router.
const REGENERATE: &str = "BULLETIN_BLESS=1 cargo test --test it openapi::";

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = bulletin::http::openapi_json();
    let path = repo_path("docs/openapi.json");
    if std::env::var_os("BULLETIN_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing docs/openapi.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let (line, (was, now)) = checked_in
            .lines()
            .chain(std::iter::repeat(""))
            .zip(generated.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("", "")));
        panic!(
            "docs/openapi.json is stale: it is not the document the router generates.\n\
             First difference, line {}:\n  checked in: {was}\n  generated:  {now}\n\
             Regenerate it with `{REGENERATE}` and commit it.",
            line + 1
        );
    }
}

fn generated_operations() -> (Value, Vec<(String, String)>) {
    let doc = serde_json::to_value(bulletin::http::openapi()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // A path item's other keys (`servers`) are not operations.
        for method in item.as_object().unwrap().keys().filter(|k| *k != "servers") {
            ops.push((method.clone(), path.clone()));
        }
    }
    (doc, ops)
}

#[test]
fn the_document_has_the_admin_api_and_the_dashboard_and_says_which_are_open() {
    let (doc, ops) = generated_operations();
    // In path order (serde_json's maps are sorted).
    let open: Vec<String> = ops
        .iter()
        .filter(|(m, p)| {
            doc["paths"][p][m]["security"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        })
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        open,
        [
            // The console: its pages send a browser without a session to /login.
            "get /console",
            "get /console/audit",
            "get /console/bulletins",
            "get /console/bulletins/{id}",
            "post /console/bulletins/{id}",
            "get /console/bulletins/{id}/confirm",
            "get /console/lists",
            "get /console/lists/{name}",
            "post /console/lists/{name}",
            "get /console/lists/{name}/export",
            "post /console/lists/{name}/import",
            "get /console/notice",
            "post /console/notice",
            "get /console/records",
            "post /console/records/upload",
            "post /console/records/{id}/approve",
            "post /console/records/{id}/send-back",
            "get /console/schedules",
            "get /console/schedules/{name}/fire",
            "post /console/schedules/{name}/fire",
            "get /dashboard",
            "get /dashboard/bounces/{id}/raw",
            "get /healthz",
            "get /login",
            "post /login",
            "post /logout",
            "get /readyz",
        ]
    );
    // 40 API, dashboard and webhook operations, 20 of the console.
    assert_eq!(ops.len(), 60, "{ops:?}");
    // The one operation served on the public listener: its own server and security.
    let hook = &doc["paths"]["/webhooks/bounce"];
    assert_eq!(hook["servers"][0]["url"], "http://127.0.0.1:8081", "{hook}");
    assert_eq!(
        hook["post"]["security"],
        serde_json::json!([{"webhook_signature": []}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["webhook_signature"]["name"],
        "X-Bulletin-Signature"
    );
    for code in ["200", "400", "401", "404", "409", "503"] {
        assert!(
            hook["post"]["responses"][code].is_object(),
            "{code}: {hook}"
        );
    }
    for (m, p) in &ops {
        let op = &doc["paths"][p][m];
        if !open.contains(&format!("{m} {p}")) && p != "/webhooks/bounce" {
            assert_eq!(
                op["security"],
                serde_json::json!([{"bearer": []}]),
                "{m} {p}"
            );
            assert_eq!(
                op["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
                "{m} {p}"
            );
        }
        assert!(op["summary"].is_string(), "{m} {p} has no summary");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        serde_json::json!({"type": "http", "scheme": "bearer"})
    );
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let target = r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(&doc, |v, k| &v[k]));
        assert!(
            target.is_some_and(|t| !t.is_null()),
            "{r} points at nothing"
        );
    }
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_documented_operation_answers_with_its_security() {
    let (doc, ops) = generated_operations();
    let t = spawn_app(Options {
        bounces: Some("[bounces.webhook]\n".into()),
        ..Default::default()
    })
    .await;
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
        // The webhook is served on the public listener and wants its signature.
        let public = doc["paths"][&path][&method]["tags"][0] == "public";
        let base = if public { &http.public } else { &http.admin };
        let url = format!("{base}{}", path.replace("{id}", "1").replace("{name}", "x"));
        let req = match method.as_str() {
            "get" => no_redirects.get(&url),
            "post" => no_redirects.post(&url),
            "delete" => no_redirects.delete(&url),
            other => panic!("unexpected method {other} for {path}"),
        };
        let status = req.send().await.unwrap().status().as_u16();
        if open {
            assert!(
                ![401, 404, 405].contains(&status),
                "{method} {path} is documented as open but answered {status}"
            );
        } else if public {
            assert_eq!(status, 401, "{method} {path} must want its signature");
        } else {
            assert_eq!(status, 401, "{method} {path} must want the token");
        }
    }
}
