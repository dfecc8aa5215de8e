//! Named users through real HTTP: each role's allowed and refused actions by personal
//! token, every documented route walked as a viewer, server-side sessions ended by
//! logout (CSRF-checked), disabling and a new password, and the per-user sign-in
//! back-off from several addresses.

use crate::harness::*;
use bulletin::domain::Actor;
use bulletin::ops::users::AddUserInput;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

pub const PASSWORD: &str = "a long enough password";

/// Adds `name` with `role` and returns their personal API token.
pub async fn user_with_token(t: &TestApp, name: &str, role: &str) -> String {
    let ops = t.app.ops();
    let admin = Actor::bootstrap_admin();
    let password = SecretString::from(PASSWORD.to_string());
    ops.add_user(
        &admin,
        AddUserInput {
            name,
            role,
            password: &password,
        },
    )
    .await
    .unwrap();
    ops.issue_token(&admin, name)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_string()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn status_code(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn each_role_is_allowed_its_actions_and_refused_the_others_by_personal_token() {
    let t = spawn_app(Options::default()).await;
    t.list_with("partners", &[("ana@example.org", None)]).await;
    let seed = t.import(&repo_path(SEED_RECORD)).await;
    let http = t.start_http().await;
    let roles = ["viewer", "editor", "approver", "operator", "admin"];
    let mut tokens = Vec::new();
    for r in roles {
        tokens.push((r, user_with_token(&t, &format!("{r}-1"), r).await));
    }
    // (what, allowed roles, request)
    type Req = Box<dyn Fn(&str, &str) -> reqwest::RequestBuilder>;
    let admin = http.admin.clone();
    let c = http.client.clone();
    let url = move |p: &str| format!("{admin}{p}");
    let seed2 = seed.clone();
    let url2 = url.clone();
    let c2 = c.clone();
    let actions: Vec<(&str, &[&str], Req)> = vec![
        (
            "read records",
            &roles,
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, _| c.get(url("/api/records")).bearer_auth(tok)
            }),
        ),
        (
            "upload a record",
            &["editor", "admin"],
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, role| {
                    c.post(url("/api/records"))
                        .bearer_auth(tok)
                        .body(small_record(&format!("up-{role}"), "Uploaded"))
                }
            }),
        ),
        (
            "send back",
            &["approver", "admin"],
            Box::new({
                let (c, url, id) = (c.clone(), url.clone(), seed.clone());
                move |tok, _| {
                    c.post(url(&format!("/api/records/{id}/send-back")))
                        .bearer_auth(tok)
                        .json(&json!({"comment": "check the date"}))
                }
            }),
        ),
        (
            "approve",
            &["approver", "admin"],
            Box::new(move |tok, _| {
                c2.post(url2(&format!("/api/records/{seed2}/approve")))
                    .bearer_auth(tok)
            }),
        ),
        (
            "create a list",
            &["operator", "admin"],
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, role| {
                    c.post(url("/api/lists"))
                        .bearer_auth(tok)
                        .json(&json!({"name": format!("list-{role}")}))
                }
            }),
        ),
        (
            "fire a schedule",
            &["operator", "admin"],
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, _| {
                    c.post(url("/api/schedules/weekday-morning/fire"))
                        .bearer_auth(tok)
                }
            }),
        ),
        (
            "list users",
            &["admin"],
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, _| c.get(url("/api/users")).bearer_auth(tok)
            }),
        ),
        (
            "add a user",
            &["admin"],
            Box::new({
                let (c, url) = (c.clone(), url.clone());
                move |tok, role| {
                    c.post(url("/api/users")).bearer_auth(tok).json(
                        &json!({"name": format!("new-by-{role}"), "role": "viewer", "password": PASSWORD}),
                    )
                }
            }),
        ),
    ];
    for (what, allowed, req) in &actions {
        for (role, tok) in &tokens {
            let (s, v) = status_code(req(tok, role).send().await.unwrap()).await;
            if allowed.contains(role) {
                assert!((200..300).contains(&s), "{role} may {what}: {s} {v}");
            } else {
                assert_eq!(s, 403, "{role} may not {what}: {v}");
                assert_eq!(v["error"]["code"], "forbidden", "{v}");
                let m = v["error"]["message"].as_str().unwrap();
                assert!(m.contains(&format!("role {role}")), "{m}");
            }
        }
    }
    // What was done carries the real names: the approver approved the record sent back
    // (the admin's approval found it approved already), and the editor's upload is theirs.
    let r = t.app.store.record(&seed).await.unwrap().unwrap();
    assert_eq!(r.approved_by.as_deref(), Some("approver-1"));
    let log = t
        .app
        .ops()
        .audit_log(&bulletin::ops::audit::AuditQuery {
            object: Some("record:up-editor"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.entries.len(), 1);
    assert_eq!(
        (
            log.entries[0].actor.as_str(),
            log.entries[0].action.as_str()
        ),
        ("editor-1", "record.import")
    );
}

#[tokio::test]
async fn a_viewer_is_refused_every_change_and_allowed_every_read_of_the_document() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let viewer = user_with_token(&t, "vera", "viewer").await;
    // Reads only administrators may make.
    let admin_only_reads = ["/api/users"];
    let doc = serde_json::to_value(bulletin::http::openapi()).unwrap();
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            // Open routes (health, the login form) declare no security.
            if op["security"].as_array().is_some_and(|s| s.is_empty()) {
                continue;
            }
            // The bounce webhook is served on the public listener, signed by its own
            // secret rather than by a user (tests/it/bounce_webhook.rs).
            if op["tags"][0] == "public" {
                continue;
            }
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let url = format!("{}{concrete}", http.admin);
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http
                .client
                .request(m, &url)
                .bearer_auth(&viewer)
                .send()
                .await
                .unwrap();
            let (s, v) = status_code(r).await;
            walked += 1;
            if method == "get" && !admin_only_reads.contains(&path.as_str()) {
                assert!(s != 401 && s != 403, "viewer GET {path}: {s} {v}");
            } else {
                assert_eq!(s, 403, "viewer {method} {path}: {v}");
            }
        }
    }
    assert!(walked >= 30, "the document has the routes: walked {walked}");
    // Nothing was changed by any of it.
    let log = t
        .app
        .ops()
        .audit_log(&bulletin::ops::audit::AuditQuery {
            actor: Some("vera"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.total, 0, "{:?}", log.entries);
}

/// Signs in with the form; returns the `name=value` cookie pair and the whole Set-Cookie.
async fn sign_in(c: &reqwest::Client, admin: &str, name: &str, password: &str) -> (u16, String) {
    let r = c
        .post(format!("{admin}/login"))
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (s, cookie)
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

async fn api_status(c: &reqwest::Client, admin: &str, cookie: &str) -> u16 {
    c.get(format!("{admin}/api/records"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The CSRF token of the dashboard page's sign-out form.
async fn csrf_of_page(c: &reqwest::Client, admin: &str, cookie: &str) -> String {
    let page = c
        .get(format!("{admin}/dashboard"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn sessions_are_server_side_and_end_by_logout_disable_and_new_password() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let admin_tok = user_with_token(&t, "boss", "admin").await;
    user_with_token(&t, "mai", "operator").await;
    let c = no_redirects();
    let a = &http.admin;

    let (s, set) = sign_in(&c, a, "mai", "wrong password here").await;
    assert_eq!(
        (s, set.as_str()),
        (401, ""),
        "no cookie for a wrong password"
    );
    let (s, set) = sign_in(&c, a, "mai", PASSWORD).await;
    assert_eq!(s, 303);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|x| x == attr), "{attr}: {set}");
    }
    assert!(!set.contains("Secure"), "plain http admin URL: {set}");
    let cookie = pair(&set);
    let id = cookie.split_once('=').unwrap().1.to_string();
    assert_eq!(id.len(), 64, "256 random bits, hex");
    assert_eq!(api_status(&c, a, &cookie).await, 200);
    // A second sign-in is a different session.
    let (_, set2) = sign_in(&c, a, "mai", PASSWORD).await;
    assert_ne!(pair(&set2), cookie);
    // The store keeps the id's hash, not the id: a cookie made of the stored value fails.
    assert_eq!(
        api_status(&c, a, &format!("bulletin_session={}", hex_sha256(&id))).await,
        401
    );

    // A change through the API with the cookie alone (what another site's form could
    // send) is refused; with the session's CSRF token in the header it is made.
    let csrf = csrf_of_page(&c, a, &cookie).await;
    let r = c
        .post(format!("{a}/api/lists"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(r#"{"name": "from-a-form"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "csrf");
    let r = c
        .post(format!("{a}/api/lists"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "from-the-console"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        t.app.ops().list("from-a-form").await.is_err(),
        "nothing made"
    );

    // Sign-out without the CSRF token (a cross-site form) is refused and changes nothing.
    let r = c
        .post(format!("{a}/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(api_status(&c, a, &cookie).await, 200, "still signed in");
    let r = c
        .post(format!("{a}/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(api_status(&c, a, &cookie).await, 401, "logout ended it");
    assert_eq!(
        api_status(&c, a, &pair(&set2)).await,
        200,
        "only that session"
    );

    // Disabling the user ends every session and refuses the password.
    let admin = |path: &str| c.post(format!("{a}{path}")).bearer_auth(&admin_tok);
    assert_eq!(
        admin("/api/users/mai/disable")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(api_status(&c, a, &pair(&set2)).await, 401, "disabled");
    assert_eq!(sign_in(&c, a, "mai", PASSWORD).await.0, 401);
    assert_eq!(
        admin("/api/users/mai/enable")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A new password ends the sessions begun with the old one.
    let (_, set3) = sign_in(&c, a, "mai", PASSWORD).await;
    assert_eq!(api_status(&c, a, &pair(&set3)).await, 200);
    let r = admin("/api/users/mai/password")
        .json(&json!({"password": "the new long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api_status(&c, a, &pair(&set3)).await, 401, "new password");
    assert_eq!(sign_in(&c, a, "mai", PASSWORD).await.0, 401);
    assert_eq!(sign_in(&c, a, "mai", "the new long password").await.0, 303);

    // Each of these is in the audit log under the right name.
    let log: Value = http
        .client
        .get(format!("{a}/api/audit?object=user:mai&limit=100"))
        .bearer_auth(&admin_tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(&str, &str)> = vec![
        ("admin-token", "user.add"),
        ("admin-token", "user.token"),
        ("mai", "login.failed"),
        ("mai", "login"),
        ("mai", "login"),
        ("mai", "logout"),
        ("boss", "user.disable"),
        ("mai", "login.failed"),
        ("boss", "user.enable"),
        ("mai", "login"),
        ("boss", "user.password"),
        ("mai", "login.failed"),
        ("mai", "login"),
    ];
    let want: Vec<(String, String)> = want
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(seen, want);
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_user_name_from_any_address() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    user_with_token(&t, "mai", "viewer").await;
    user_with_token(&t, "li", "viewer").await;
    // Each failure from a different loopback address: the address back-off never starts.
    let from = |n: u8| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from([127, 0, 0, n]))
            .build()
            .unwrap()
    };
    for n in 0..bulletin::http::FREE_FAILURES as u8 {
        let (s, _) = sign_in(&from(10 + n), &http.admin, "mai", "not the password").await;
        assert_eq!(s, 401, "failure {n} is free");
    }
    // The next one locks the name out: even the right password from a fresh address.
    let (s, _) = sign_in(&from(40), &http.admin, "mai", "not the password").await;
    assert_eq!(s, 401);
    let r = from(41)
        .post(format!("{}/login", http.admin))
        .form(&[("name", "mai"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("as this user"));
    // Another name from that same address is not locked.
    assert_eq!(sign_in(&from(41), &http.admin, "li", PASSWORD).await.0, 303);
    // Once the lock-out has passed, the right password works.
    t.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(
        sign_in(&from(42), &http.admin, "mai", PASSWORD).await.0,
        303
    );
}
