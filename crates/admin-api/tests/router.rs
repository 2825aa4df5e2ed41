//! The router driven with `tower::ServiceExt::oneshot`: auth, the OpenAPI document against the
//! route table, validation, pool actions, events paging, health, metrics text. The proxy is
//! bound but no PostgreSQL is needed: nothing here opens a server connection.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use pgtide_admin_api::routes::endpoints;
use pgtide_admin_api::{router, AdminState, Tokens};
use pgtide_config::{Loader, Role};
use pgtide_pool_core::events::{Event, EventKind};
use pgtide_pool_core::{FailureClass, Proxy, ProxyHandle};
use serde_json::{json, Value};
use tower::ServiceExt;

const OPERATOR: &str = "operator-token-for-tests-0001";
const VIEWER: &str = "viewer-token-for-tests-00001";
const DB_PASSWORD: &str = "db-password-never-shown";

async fn proxy() -> ProxyHandle {
    let config = Loader::new()
        .without_env()
        .set("pgtide.listen", "127.0.0.1:0")
        .set("pgtide.auth_type", "trust")
        .set("databases.app.host", "127.0.0.1")
        // Nothing listens there: no test here connects.
        .set("databases.app.port", 1i64)
        .set("databases.app.password", DB_PASSWORD)
        .load()
        .expect("config");
    Proxy::bind(config).await.expect("bind").handle()
}

fn tokens() -> Tokens {
    Tokens::none()
        .with("sre-oncall", Role::Operator, OPERATOR)
        .with("dashboard", Role::Viewer, VIEWER)
}

async fn app() -> (Router, AdminState) {
    let state = AdminState::builder(proxy().await).tokens(tokens()).build();
    (router(state.clone()), state)
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json, www)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn no_token_is_401_a_wrong_one_401_and_counted_a_viewer_write_403() {
    let (app, state) = app().await;
    let (s, body, www) = call(&app, "GET", "/v1/pools", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    assert!(www.starts_with("Bearer"), "{www}");

    let (s, body, _) = call(
        &app,
        "GET",
        "/v1/pools",
        Some("not-a-token-at-all-000"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        !body.to_string().contains("not-a-token"),
        "the token is not echoed"
    );

    let (s, _, _) = call(&app, "GET", "/v1/pools", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    let patch = Some(json!({"max_size": 2}));
    let (s, body, _) = call(
        &app,
        "PATCH",
        "/v1/pools/app/app",
        Some(VIEWER),
        patch.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dashboard"));
    let (s, _, _) = call(&app, "PATCH", "/v1/pools/app/app", Some(OPERATOR), patch).await;
    assert_eq!(s, StatusCode::OK);

    use pgtide_admin_api::auth::AuthFailure;
    let f = state.auth_failures();
    assert_eq!(
        (
            f.get(AuthFailure::Missing),
            f.get(AuthFailure::Invalid),
            f.get(AuthFailure::Forbidden)
        ),
        (1, 1, 1)
    );
    let text = pgtide_admin_api::metrics::render(&state);
    assert!(
        text.contains("pgtide_admin_auth_failures_total{reason=\"invalid\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains(VIEWER) && !text.contains(OPERATOR));
}

#[tokio::test]
async fn without_tokens_only_health_readiness_metrics_and_the_document_answer() {
    let state = AdminState::builder(proxy().await).build();
    let app = router(state);
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        let (s, _, _) = call(&app, "GET", path, None, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (s, body, _) = call(&app, "GET", "/v1/pools", Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens_file"));
}

#[tokio::test]
async fn metrics_may_require_a_token() {
    let state = AdminState::builder(proxy().await)
        .tokens(tokens())
        .metrics_need_token(true)
        .build();
    let app = router(state);
    assert_eq!(
        call(&app, "GET", "/metrics", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "GET", "/metrics", Some(VIEWER), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
}

/// (METHOD, path) of every operation in the OpenAPI document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(pgtide_admin_api::OPENAPI).expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<(String, String)> = endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );

    // And the router really answers each documented operation (not its fallbacks); the
    // shutdown last, since it stops this test's proxy.
    let (app, _) = app().await;
    let mut ops: Vec<_> = documented.into_iter().collect();
    ops.sort_by_key(|(_, p)| p == "/v1/shutdown");
    for (method, path) in ops {
        let concrete = path
            .replace("{database}", "app")
            .replace("{user}", "app")
            .replace("{key}", "max_size")
            .replace("{id}", "424242");
        let body = (method == "PATCH").then(|| json!({"acquire_timeout": "3s"}));
        let (s, v, _) = call(&app, &method, &concrete, Some(OPERATOR), body).await;
        assert!(
            !["no_route", "method_not_allowed"].contains(&code(&v))
                && s != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}: {s} {v}"
        );
    }
    let (s, v, _) = call(&app, "GET", "/v1/nope", Some(OPERATOR), None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_route"));
    let (s, v, _) = call(&app, "PUT", "/v1/pools", Some(OPERATOR), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn the_served_document_is_docs_openapi_json() {
    let (app, _) = app().await;
    let (s, v, _) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let file: Value = serde_json::from_str(pgtide_admin_api::OPENAPI).unwrap();
    assert_eq!(v, file);
}

#[tokio::test]
async fn the_config_is_served_with_its_secrets_redacted() {
    let (app, _) = app().await;
    let (s, v, _) = call(&app, "GET", "/v1/config", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["databases"]["app"]["password"], "<redacted>");
    assert_eq!(v["admin"]["listen"], "127.0.0.1:9930");
    let text = v.to_string();
    for secret in [DB_PASSWORD, OPERATOR, VIEWER] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

fn limit<'a>(pool: &'a Value, key: &str) -> &'a Value {
    &pool["limits"][key]
}

#[tokio::test]
async fn a_patch_applies_whole_or_is_refused_with_every_problem() {
    let (app, _) = app().await;
    let op = Some(OPERATOR);
    let (s, v, _) = call(
        &app,
        "PATCH",
        "/v1/pools/app/app",
        op,
        Some(json!({"max_size": 3, "acquire_timeout": "2s"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(limit(&v, "max_size")["value"], 3);
    assert_eq!(limit(&v, "max_size")["source"], "override");
    assert_eq!(limit(&v, "acquire_timeout")["value"], "2s");
    assert_eq!(v["size"]["max"], 3);

    // Three bad keys, three problems, nothing changed.
    let bad = json!({"max_size": 0, "acquire_timeout": "soon", "no_such_key": 1, "min_size": 1});
    let (s, v, _) = call(&app, "PATCH", "/v1/pools/app/app", op, Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "invalid_limits");
    let keys: BTreeSet<&str> = v["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    for k in ["max_size", "acquire_timeout", "no_such_key"] {
        assert!(keys.iter().any(|x| x.contains(k)), "{k} not named: {v}");
    }
    let (_, v, _) = call(&app, "GET", "/v1/pools/app/app", op, None).await;
    assert_eq!(limit(&v, "max_size")["value"], 3, "nothing changed");
    assert_eq!(
        limit(&v, "min_size")["source"],
        "default",
        "min_size rolled back"
    );

    // Keys that only fit together apply in any order; nested groups and null work.
    let both = json!({"min_size": 25, "max_size": 30, "adaptive": {"enabled": false}});
    let (s, v, _) = call(&app, "PATCH", "/v1/pools/app/app", op, Some(both)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(limit(&v, "min_size")["value"], 25);
    assert_eq!(limit(&v, "adaptive.enabled")["value"], false);
    let (s, v, _) = call(
        &app,
        "PATCH",
        "/v1/pools/app/app",
        op,
        Some(json!({"min_size": null, "adaptive.enabled": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(limit(&v, "min_size")["source"], "default");

    // DELETE of an override: the configuration's value again; twice is a 404.
    let (s, v, _) = call(
        &app,
        "DELETE",
        "/v1/pools/app/app/overrides/max_size",
        op,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(limit(&v, "max_size")["value"], 20);
    assert_eq!(limit(&v, "max_size")["source"], "default");
    let (s, _, _) = call(
        &app,
        "DELETE",
        "/v1/pools/app/app/overrides/max_size",
        op,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _, _) = call(
        &app,
        "PATCH",
        "/v1/pools/nope/app",
        op,
        Some(json!({"max_size": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let req = Request::builder()
        .method("PATCH")
        .uri("/v1/pools/app/app")
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn pause_resume_drain_and_reconnect_change_the_pools_state() {
    let (app, _) = app().await;
    let (s, v, _) = call(&app, "GET", "/v1/pools/app/app", Some(VIEWER), None).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::NOT_FOUND, "not_found"),
        "no pool before a client"
    );
    for (action, state) in [
        ("pause", "paused"),
        ("resume", "open"),
        ("drain", "draining"),
        ("resume", "open"),
        ("reconnect", "open"),
    ] {
        let (s, v, _) = call(
            &app,
            "POST",
            &format!("/v1/pools/app/app/{action}"),
            Some(OPERATOR),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{action}: {v}");
        assert_eq!(v["state"], state, "{action}");
    }
    let (s, v, _) = call(&app, "GET", "/v1/pools", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["pools"][0]["name"], "app/app");
    assert!(v["pools"][0]["decisions"].is_array(), "{v}");
    let (s, _, _) = call(
        &app,
        "POST",
        "/v1/pools/nope/app/pause",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_are_paged_by_cursor_and_filtered() {
    let (app, state) = app().await;
    let ring = &state.proxy().shared().events;
    for i in 0..5 {
        let mut e = Event::new(EventKind::Failure, "app/app", format!("e{i}"));
        e.class = Some(if i % 2 == 0 {
            FailureClass::ConnectRefused
        } else {
            FailureClass::AcquireTimeout
        });
        ring.push(e);
    }
    let (s, v, _) = call(&app, "GET", "/v1/events?limit=2", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    let msgs = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(msgs(&v), ["e0", "e1"]);
    let next = v["next"].as_u64().unwrap();
    let (_, v, _) = call(
        &app,
        "GET",
        &format!("/v1/events?since={next}"),
        Some(VIEWER),
        None,
    )
    .await;
    assert_eq!(msgs(&v), ["e2", "e3", "e4"]);
    let last = v["next"].as_u64().unwrap();
    let (_, v, _) = call(
        &app,
        "GET",
        &format!("/v1/events?since={last}"),
        Some(VIEWER),
        None,
    )
    .await;
    assert!(msgs(&v).is_empty());
    assert_eq!(
        v["next"].as_u64().unwrap(),
        last,
        "the cursor stays when nothing is new"
    );
    let (_, v, _) = call(
        &app,
        "GET",
        "/v1/events?class=acquire_timeout&pool=app/app",
        Some(VIEWER),
        None,
    )
    .await;
    assert_eq!(msgs(&v), ["e1", "e3"]);
    assert_eq!(v["events"][0]["kind"], "failure");
    assert!(v["events"][0]["at"].as_str().unwrap().ends_with('Z'));
    let (s, _, _) = call(&app, "GET", "/v1/events?class=bogus", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn clients_servers_and_kill() {
    let (app, _) = app().await;
    let (s, v, _) = call(&app, "GET", "/v1/clients?state=waiting", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["clients"], json!([]));
    let (s, _, _) = call(&app, "GET", "/v1/clients?state=asleep", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v, _) = call(&app, "GET", "/v1/servers", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["servers"], json!([]));
    let (s, _, _) = call(&app, "DELETE", "/v1/clients/7", Some(VIEWER), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call(&app, "DELETE", "/v1/clients/7", Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_is_open_and_readiness_ends_with_the_shutdown() {
    let (app, _) = app().await;
    let (s, v, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v, _) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["databases"][0]["database"], "app");
    let (s, v, _) = call(&app, "POST", "/v1/reload", Some(OPERATOR), None).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "no config source in this test: {v}"
    );
    let (s, v, _) = call(&app, "POST", "/v1/shutdown", Some(OPERATOR), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "shutting_down");
    let (s, v, _) = call(&app, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["shutting_down"], true);
    assert_eq!(
        call(&app, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (app, _) = app().await;
    call(
        &app,
        "POST",
        "/v1/pools/app/app/pause",
        Some(OPERATOR),
        None,
    )
    .await;
    let req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let families = common::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (kind, samples) = &families["pgtide_pool_admission"];
    assert_eq!(kind, "gauge");
    assert!(samples
        .iter()
        .any(|s| s.labels["state"] == "paused" && s.value == 1.0));
    let (kind, samples) = &families["pgtide_acquire_wait_seconds"];
    assert_eq!(kind, "histogram");
    assert!(samples
        .iter()
        .any(|s| s.name == "pgtide_acquire_wait_seconds_bucket" && s.labels["le"] == "+Inf"));
    assert_eq!(families["pgtide_pool_size_max"].1[0].value, 20.0);
}
