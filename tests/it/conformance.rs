//! The server keeps to its published spec where the schema fuzzing and the generated
//! clients (.ci/e2e/schemathesis.sh, .ci/e2e/clients.sh) found it did not: value types of
//! JSON bodies, form bodies checked like JSON ones, nulls and optional fields as documented,
//! and no way for an admin to lock the tenant out of its own API.

use serde_json::{json, Value};

use crate::harness::{Resp, TestServer};

/// Resolves a `#/components/schemas/X` reference of the published spec.
fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    &spec["components"]["schemas"][name]
}

#[tokio::test]
async fn json_bodies_must_have_the_types_of_the_spec() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    // A boolean or a number where the spec says string is refused, not turned into text.
    for body in [
        json!({"display_name": false}),
        json!({"display_name": 12}),
        json!({"email": ["a@example.com"]}),
    ] {
        s.patch("/api/v1/users/me", &t.admin, body.clone())
            .await
            .expect(422, "validation_failed");
    }
    let me = s.get("/api/v1/users/me", &t.admin).await;
    assert_eq!(me.body["user"]["display_name"], "admin", "{}", me.body);
    // Nested values too: an item of a string array.
    let r = s
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"name": "typed", "methods": ["me.get", 3]}),
        )
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(r.errors(), vec!["methods[1]: must be a string"]);
    // The right types, and null for an optional field, are still fine.
    let r = s
        .patch(
            "/api/v1/users/me",
            &t.admin,
            json!({"display_name": "Ada", "email": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["display_name"], "Ada");
}

#[tokio::test]
async fn introspection_forms_are_checked_like_json() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let form = |token: String| {
        let req = s
            .client
            .post(s.url("/api/v1/introspect"))
            .bearer_auth(&t.admin)
            .form(&[("token", token)]);
        async move { Resp::from(req.send().await.unwrap()).await }
    };
    // Over the documented maxLength (8192), as form and as JSON.
    let r = form("x".repeat(9000)).await;
    r.expect(422, "validation_failed");
    assert_eq!(r.errors(), vec!["token: must have at most 8192 characters"]);
    let r = s
        .post(
            "/api/v1/introspect",
            &t.admin,
            json!({"token": "x".repeat(9000)}),
        )
        .await;
    r.expect(422, "validation_failed");
    assert_eq!(r.errors(), vec!["token: must have at most 8192 characters"]);
    // Within it, the form is answered.
    let r = form("not-a-token".into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
}

#[tokio::test]
async fn the_last_admin_keeps_api_access_and_changes_its_password_itself() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("acme").await;
    let me = s.get("/api/v1/users/me", &t.admin).await;
    let admin_id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/users/{admin_id}");
    s.patch(&path, &t.admin, json!({"api_access": false}))
        .await
        .expect(409, "last_admin");
    // Another admin without api_access cannot use the API: it does not count.
    let other = s.user(&t, "alice", "admin", "person").await;
    let r = s
        .patch(
            &format!("/api/v1/users/{}", other.id),
            &t.admin,
            json!({"api_access": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.patch(&path, &t.admin, json!({"api_access": false}))
        .await
        .expect(409, "last_admin");
    s.delete(&format!("/api/v1/users/{}", other.id), &t.admin)
        .await;
    // Your own password goes through changePassword, which asks for the current one.
    s.patch(
        &path,
        &t.admin,
        json!({"password": "A-brand-new-secret-42"}),
    )
    .await
    .expect(409, "use_change_password");
    let me = s.get("/api/v1/users/me", &t.admin).await;
    assert_eq!(me.status, 200, "the session still works: {}", me.body);
    s.login("acme", "admin", &t.admin_password).await;
}

#[tokio::test]
async fn the_spec_says_what_the_server_answers() {
    let s = TestServer::start().await;
    let r = s
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    let spec = &r.body;
    // `errors` is left out of a problem when empty, so it is not required.
    let problem = schema(spec, "Problem");
    assert!(
        !problem["required"]
            .as_array()
            .unwrap()
            .contains(&json!("errors")),
        "{problem}"
    );
    // Optional fields are answered as null: they are nullable. References among them are
    // wrapped in anyOf (siblings of $ref are ignored; allOf of an enum breaks generators).
    for (name, s) in spec["components"]["schemas"].as_object().unwrap() {
        let required = s["required"].as_array().cloned().unwrap_or_default();
        for (field, prop) in s["properties"].as_object().into_iter().flatten() {
            if !required.contains(&json!(field)) && prop.get("default").is_none() {
                assert_eq!(prop["nullable"], true, "{name}.{field}: {prop}");
            }
            assert!(prop.get("allOf").is_none(), "{name}.{field}: {prop}");
            assert!(
                prop.get("$ref").is_none() || prop.as_object().unwrap().len() == 1,
                "{name}.{field}: {prop}"
            );
        }
    }
    assert_eq!(
        schema(spec, "UserDto")["properties"]["email"]["nullable"],
        true
    );
    // A JSON body and a form body of one operation have schemas of their own, so generated
    // clients can tell them apart.
    let login = &spec["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"];
    assert_eq!(
        login["application/json; charset=utf-8"]["schema"]["$ref"],
        "#/components/schemas/LoginBody"
    );
    assert_eq!(
        login["application/x-www-form-urlencoded"]["schema"]["$ref"],
        "#/components/schemas/LoginForm"
    );
}
