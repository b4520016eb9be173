//! The admin API (functions/admin-api) through the local stack's HTTP API, with real
//! WebSocket clients on the same stack: publish to a group and to a user, disconnect a user
//! (their session ends at once), remove, ban and unban members, presence. Bad input included:
//! each refusal is a clear JSON error and changes nothing; without the key nothing reaches the
//! function.

use presence::config::Env;
use presence_local::stack::{DEFAULT_ADMIN_API_KEY, LocalStack, StackOptions};
use presence_tests::ws::WsClient;
use presence_tests::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Frames that must not come: how long a test listens for them.
const QUIET: Duration = Duration::from_millis(400);

async fn start(env: &[(&str, &str)]) -> LocalStack {
    let mut vars = vec![("EXPIRY_SCHEDULE_SECONDS", "1")];
    vars.extend_from_slice(env);
    local_stack(&vars).await
}

/// `method path` on the admin API with `headers` and `body`: the status and the JSON body.
async fn call(
    stack: &LocalStack,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, text) = http(method, &format!("{}{path}", stack.http_url), headers, body).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, v)
}

/// `method path` with the admin key.
async fn admin(stack: &LocalStack, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    call(
        stack,
        method,
        path,
        &[
            ("x-presence-admin-key", DEFAULT_ADMIN_API_KEY),
            ("content-type", "application/json"),
        ],
        &body,
    )
    .await
}

async fn client_at(
    stack: &LocalStack,
    user: &str,
    facility: &str,
    session: Option<&str>,
) -> WsClient {
    let t = token(DEV_SECRET.as_bytes(), user, facility, "trondelag");
    let mut url = format!("{}?token={t}", stack.ws.websocket_url());
    if let Some(s) = session {
        url.push_str(&format!("&session_id={s}"));
    }
    WsClient::connect(&url).await
}

async fn client(stack: &LocalStack, user: &str) -> WsClient {
    client_at(stack, user, "st-olav-icu", None).await
}

/// No frame of type `ty` within [`QUIET`].
async fn none_of(ws: &mut WsClient, ty: &str) {
    let got = ws.wait_for(ty, QUIET).await;
    assert!(got.is_none(), "unexpected {ty}: {got:?}");
}

#[tokio::test]
async fn publish_reaches_the_groups_members_stored_with_a_seq() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    let mut eve = client(&stack, "eve").await;
    ann.join("chat:ops").await;
    bob.join("chat:ops").await;

    let before = presence::now_ms();
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"group": "chat:ops", "data": {"text": "drill at 10"}}),
    )
    .await;
    assert_eq!((status, body.clone()), (202, json!({"seq": 1})), "{body}");
    for ws in [&mut ann, &mut bob] {
        let m = ws.expect("message").await;
        assert_eq!(m["group"], "chat:ops");
        assert_eq!(m["from"], Value::Null, "published by the backend: {m}");
        assert_eq!(m["data"], json!({"text": "drill at 10"}));
        assert_eq!(m["seq"], 1);
        let ts = m["ts"].as_i64().unwrap();
        assert!((before..=presence::now_ms()).contains(&ts), "ts {ts}");
    }
    none_of(&mut eve, "message").await;

    // With a sender: stored like a member's message, next seq.
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"group": "chat:ops", "data": "second", "from": "ops-bot"}),
    )
    .await;
    assert_eq!((status, body["seq"].as_u64()), (202, Some(2)), "{body}");
    let m = bob.expect("message").await;
    assert_eq!(
        (m["from"].as_str(), m["seq"].as_u64()),
        (Some("ops-bot"), Some(2))
    );
    let history = ann
        .request(json!({"action": "history", "group": "chat:ops"}))
        .await;
    let stored: Vec<(u64, Value)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m["from"].clone()))
        .collect();
    assert_eq!(
        stored,
        [(1, Value::Null), (2, json!("ops-bot"))],
        "{history}"
    );

    // An automatic group: every connection at the facility.
    let (status, _) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"group": "facility:st-olav-icu", "data": "fire alarm test"}),
    )
    .await;
    assert_eq!(status, 202);
    for ws in [&mut ann, &mut bob, &mut eve] {
        let m = ws.expect("message").await;
        assert_eq!(
            (m["group"].as_str(), m["seq"].as_u64()),
            (Some("facility:st-olav-icu"), Some(1))
        );
    }

    let billing = stack.billing();
    assert_eq!(billing.invocations("admin-api"), 3, "{billing:#?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn publish_to_a_user_reaches_every_device() {
    let stack = start(&[]).await;
    let mut phone = client(&stack, "ann").await;
    let mut laptop = client_at(&stack, "ann", "st-olav-er", None).await;
    let mut bob = client(&stack, "bob").await;
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"user": "ann", "data": {"shift": "night"}}),
    )
    .await;
    assert_eq!((status, body), (202, json!({"seq": 1})));
    for ws in [&mut phone, &mut laptop] {
        let m = ws.expect("message").await;
        assert_eq!(
            (
                m["group"].as_str(),
                &m["from"],
                &m["data"],
                m["seq"].as_u64()
            ),
            (
                Some("user:ann"),
                &Value::Null,
                &json!({"shift": "night"}),
                Some(1)
            )
        );
    }
    none_of(&mut bob, "message").await;
    let (_, body) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"user": "ann", "data": 2}),
    )
    .await;
    assert_eq!(body["seq"], 2, "the user's own history counts on");
    stack.shutdown().await;
}

/// A disconnected user's sockets close, and the session they carried ends now: the facility
/// goes offline at once, not a grace (30 s here) later.
#[tokio::test]
async fn disconnect_closes_every_socket_and_ends_the_session_at_once() {
    let stack = start(&[("DISCONNECT_GRACE_SECONDS", "30")]).await;
    let mut watcher = client(&stack, "ann").await;
    let mut tab = client_at(&stack, "bo", "st-olav-er", Some("tab-b")).await;
    let mut phone = client_at(&stack, "bo", "st-olav-er", None).await;
    let e = watcher.expect("facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("st-olav-er"), Some("online")),
        "{e}"
    );

    let at = presence::now_ms();
    let (status, body) = admin(&stack, "POST", "/v1/admin/users/bo/disconnect", Value::Null).await;
    assert_eq!((status, body), (200, json!({"connections": 2})));
    assert!(
        tab.closed_within(Duration::from_secs(5)).await,
        "the tab's socket stays open"
    );
    assert!(
        phone.closed_within(Duration::from_secs(5)).await,
        "the phone's socket stays open"
    );

    let e = watcher.expect("facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("st-olav-er"), Some("offline")),
        "{e}"
    );
    let since = e["since_ms"].as_i64().unwrap();
    assert!(
        (at..at + 5_000).contains(&since),
        "offline since {since}, disconnected at {at}: the session lingered"
    );
    let (_, body) = admin(
        &stack,
        "GET",
        "/v1/admin/groups/facility%3Ast-olav-er/presence",
        Value::Null,
    )
    .await;
    assert_eq!(body, json!({"group": "facility:st-olav-er", "members": []}));

    let (status, body) = admin(&stack, "POST", "/v1/admin/users/bo/disconnect", Value::Null).await;
    assert_eq!(
        (status, body),
        (200, json!({"connections": 0})),
        "nothing left"
    );
    // The watcher is untouched.
    let pong = watcher.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    stack.shutdown().await;
}

#[tokio::test]
async fn remove_tells_each_device_and_the_other_members_once() {
    let stack = start(&[]).await;
    let mut phone = client(&stack, "ann").await;
    let mut laptop = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    phone.join("chat:ward").await;
    bob.join("chat:ward").await;

    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/groups/chat%3Award/remove",
        json!({"user": "ann"}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"removed": true})));
    for ws in [&mut phone, &mut laptop] {
        let left = ws.expect("left").await;
        assert_eq!(left["group"], "chat:ward", "{left}");
    }
    let m = bob.expect("member.left").await;
    assert_eq!(
        (m["group"].as_str(), m["user"].as_str()),
        (Some("chat:ward"), Some("ann"))
    );
    none_of(&mut bob, "member.left").await;
    none_of(&mut phone, "member.left").await;

    let refused = laptop
        .request(json!({"action": "send", "group": "chat:ward", "data": "still here?"}))
        .await;
    assert_eq!(refused["code"], "not_member", "{refused}");
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/groups/chat:ward/remove",
        json!({"user": "ann"}),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"removed": false})),
        "not a member any more"
    );
    // Removing is not banning: ann may join again.
    phone.join("chat:ward").await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_ban_removes_and_refuses_join_until_lifted() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    ann.join("chat:ward").await;
    bob.join("chat:ward").await;

    let before = presence::now_ms();
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/groups/chat%3Award/ban",
        json!({"user": "ann", "seconds": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let until = body["banned_until_ms"].as_i64().unwrap();
    assert!(
        (before + 3_600_000..=presence::now_ms() + 3_600_000).contains(&until),
        "{body}"
    );
    assert_eq!(ann.expect("left").await["group"], "chat:ward");
    assert_eq!(bob.expect("member.left").await["user"], "ann");
    let refused = ann
        .request(json!({"action": "join", "group": "chat:ward"}))
        .await;
    assert_eq!(refused["code"], "banned", "{refused}");

    let (status, body) = admin(
        &stack,
        "DELETE",
        "/v1/admin/groups/chat%3Award/ban/ann",
        Value::Null,
    )
    .await;
    assert_eq!((status, body), (200, json!({"lifted": true})));
    ann.join("chat:ward").await;
    let (_, body) = admin(
        &stack,
        "DELETE",
        "/v1/admin/groups/chat:ward/ban/ann",
        Value::Null,
    )
    .await;
    assert_eq!(body, json!({"lifted": false}), "no ban left");

    // Without seconds: until lifted.
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/groups/chat:ward/ban",
        json!({"user": "ann"}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"banned_until_ms": null})));
    let refused = ann
        .request(json!({"action": "join", "group": "chat:ward"}))
        .await;
    assert_eq!(refused["code"], "banned", "{refused}");
    // A ban of a second ends by itself.
    let (_, body) = admin(
        &stack,
        "POST",
        "/v1/admin/groups/chat:short/ban",
        json!({"user": "bob", "seconds": 1}),
    )
    .await;
    assert!(body["banned_until_ms"].is_i64(), "{body}");
    let refused = bob
        .request(json!({"action": "join", "group": "chat:short"}))
        .await;
    assert_eq!(refused["code"], "banned", "{refused}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    bob.join("chat:short").await;
    stack.shutdown().await;
}

#[tokio::test]
async fn presence_lists_members_with_live_devices() {
    let stack = start(&[]).await;
    let mut phone = client(&stack, "ann").await;
    let _laptop = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    let _eve = client(&stack, "eve").await;
    phone.join("chat:ward").await;
    bob.join("chat:ward").await;
    let (status, body) = admin(
        &stack,
        "GET",
        "/v1/admin/groups/chat%3Award/presence",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"group": "chat:ward", "members": [
            {"user": "ann", "devices": 2},
            {"user": "bob", "devices": 1}
        ]})
    );
    bob.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = admin(
            &stack,
            "GET",
            "/v1/admin/groups/chat:ward/presence",
            Value::Null,
        )
        .await;
        if body["members"] == json!([{"user": "ann", "devices": 2}]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob still present: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = admin(
        &stack,
        "GET",
        "/v1/admin/groups/chat:empty/presence",
        Value::Null,
    )
    .await;
    assert_eq!(body, json!({"group": "chat:empty", "members": []}));
    stack.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_clear_errors_and_change_nothing() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    ann.join("chat:ops").await;
    let publish = json!({"group": "chat:ops", "data": "x"}).to_string();
    let json_type = ("content-type", "application/json");

    // Without the key (or with a wrong one) nothing reaches the function.
    for headers in [
        vec![json_type],
        vec![json_type, ("x-presence-admin-key", "not-the-key-at-all")],
    ] {
        let (status, body) = call(&stack, "POST", "/v1/admin/publish", &headers, &publish).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("x-presence-admin-key")
        );
    }
    let (status, _) = call(&stack, "POST", "/v1/admin/users/ann/disconnect", &[], "").await;
    assert_eq!(status, 401);
    assert_eq!(
        stack.billing().invocations("admin-api"),
        0,
        "the function ran"
    );

    let huge = json!({"group": "chat:ops", "data": "x".repeat(70 * 1024)}).to_string();
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        (
            "POST",
            "/v1/admin/publish",
            "{\"group\":".into(),
            400,
            "bad_request",
            "JSON",
        ),
        (
            "POST",
            "/v1/admin/publish",
            String::new(),
            400,
            "bad_request",
            "empty",
        ),
        (
            "POST",
            "/v1/admin/publish",
            "[1,2]".into(),
            400,
            "bad_request",
            "object",
        ),
        (
            "POST",
            "/v1/admin/publish",
            json!({"group": "chat:ops", "data": 1, "urgent": true}).to_string(),
            400,
            "bad_request",
            "unknown field \"urgent\"",
        ),
        (
            "POST",
            "/v1/admin/publish",
            json!({"group": "chat:ops"}).to_string(),
            400,
            "bad_request",
            "data",
        ),
        (
            "POST",
            "/v1/admin/publish",
            huge,
            413,
            "body_too_large",
            "limit",
        ),
        (
            "POST",
            "/v1/admin/publish",
            json!({"group": "lobby", "data": 1}).to_string(),
            400,
            "bad_request",
            "group",
        ),
        (
            "POST",
            "/v1/admin/publish",
            json!({"group": "chat:ops", "user": "ann", "data": 1}).to_string(),
            400,
            "bad_request",
            "either",
        ),
        (
            "GET",
            "/v1/admin/groups/lobby/presence",
            String::new(),
            400,
            "bad_request",
            "group",
        ),
        (
            "GET",
            "/v1/admin/groups/chat%3Aa%20b/presence",
            String::new(),
            400,
            "bad_request",
            "group",
        ),
        (
            "POST",
            "/v1/admin/groups/user%3Aann/remove",
            json!({"user": "ann"}).to_string(),
            400,
            "bad_request",
            "only chat groups",
        ),
        (
            "POST",
            "/v1/admin/groups/facility:st-olav-icu/ban",
            json!({"user": "ann"}).to_string(),
            400,
            "bad_request",
            "only chat groups",
        ),
        (
            "POST",
            "/v1/admin/groups/chat:ops/ban",
            json!({"user": "ann", "seconds": 0}).to_string(),
            400,
            "bad_request",
            "seconds",
        ),
        (
            "POST",
            "/v1/admin/groups/chat:ops/remove",
            json!({"user": "a/b"}).to_string(),
            400,
            "bad_request",
            "user",
        ),
        (
            "POST",
            "/v1/admin/users/a%2Fb/disconnect",
            String::new(),
            400,
            "bad_request",
            "user",
        ),
    ];
    let invoked = cases.len() as u64;
    for (method, path, body, status, code, says) in cases {
        let (got, answer) = call(
            &stack,
            method,
            path,
            &[("x-presence-admin-key", DEFAULT_ADMIN_API_KEY), json_type],
            &body,
        )
        .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {path}: {message}");
    }

    // Routes that do not exist: 404, as API Gateway answers, without the function.
    for (method, path) in [
        ("POST", "/v1/admin/nope"),
        ("GET", "/v1/admin/publish"),
        ("POST", "/v1/admin/groups/chat:ops/presence"),
        ("PUT", "/v1/admin/groups/chat:ops/ban/ann"),
    ] {
        for key in [DEFAULT_ADMIN_API_KEY, "wrong-key-123"] {
            let (status, body) =
                call(&stack, method, path, &[("x-presence-admin-key", key)], "").await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{method} {path}"
            );
        }
    }
    assert_eq!(stack.billing().invocations("admin-api"), invoked);

    // Nothing was published, removed or banned: the next message is seq 1, ann is a member.
    let got = ann.wait_for("message", QUIET).await;
    assert!(got.is_none(), "a refused request delivered {got:?}");
    let (status, body) = admin(
        &stack,
        "POST",
        "/v1/admin/publish",
        json!({"group": "chat:ops", "data": "ok"}),
    )
    .await;
    assert_eq!((status, body), (202, json!({"seq": 1})));
    assert_eq!(ann.expect("message").await["data"], "ok");
    let sent = ann
        .request(json!({"action": "send", "group": "chat:ops", "data": "still a member"}))
        .await;
    assert_eq!(sent["type"], "sent", "{sent}");
    stack.shutdown().await;
}

/// `ADMIN_API_KEY` sets the key; the default one no longer opens the API.
#[tokio::test]
async fn the_key_is_configurable() {
    let stack = start(&[("ADMIN_API_KEY", "a-better-secret-key")]).await;
    let path = "/v1/admin/groups/chat:ops/presence";
    let (status, _) = call(
        &stack,
        "GET",
        path,
        &[("x-presence-admin-key", DEFAULT_ADMIN_API_KEY)],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &stack,
        "GET",
        path,
        &[("x-presence-admin-key", "a-better-secret-key")],
        "",
    )
    .await;
    assert_eq!((status, body["members"].clone()), (200, json!([])));
    stack.shutdown().await;
    let err = LocalStack::start(
        &Env::from_pairs([("ADMIN_API_KEY", "short")]),
        StackOptions {
            http_port: 0,
            ws_port: 0,
            ..StackOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ADMIN_API_KEY"), "{err}");
}
