//! Messaging through the local stack with real WebSocket clients: stored messages with
//! `seq` and `history`, presence in groups and `member.online`/`member.offline`, a token's
//! lifetime on a live socket (`token_expired`, `auth`), and the `claim` join policy. Bad
//! input included: each refusal is a clear error and changes nothing.

use presence::auth::DevTokenSigner;
use presence_local::stack::LocalStack;
use presence_tests::ws::WsClient;
use presence_tests::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn start(env: &[(&str, &str)]) -> LocalStack {
    let mut vars = vec![
        ("DISCONNECT_GRACE_SECONDS", "1"),
        ("EXPIRY_SCHEDULE_SECONDS", "1"),
    ];
    vars.extend_from_slice(env);
    local_stack(&vars).await
}

/// A token of `user` (at st-olav-icu, trondelag) expiring in `life_s`, with `groups`.
fn token_for(user: &str, life_s: i64, groups: Option<&[&str]>) -> String {
    let groups: Option<Vec<String>> = groups.map(|g| g.iter().map(|s| s.to_string()).collect());
    DevTokenSigner::new(DEV_SECRET.as_bytes()).sign_granting(
        &identity(user, "st-olav-icu", "trondelag"),
        presence::now_ms() / 1000 + life_s,
        groups.as_deref(),
    )
}

async fn client_with(stack: &LocalStack, token: &str) -> WsClient {
    WsClient::connect(&format!("{}?token={token}", stack.ws.websocket_url())).await
}

async fn client(stack: &LocalStack, user: &str) -> WsClient {
    client_with(stack, &token_for(user, 3600, None)).await
}

fn seqs(history: &Value) -> Vec<u64> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn messages_get_a_seq_and_a_time_and_history_returns_them_in_order() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    ann.join("chat:ward").await;
    bob.join("chat:ward").await;

    let before = presence::now_ms();
    for i in 1..=3u64 {
        let sent = ann
            .request(json!({"action": "send", "group": "chat:ward", "data": {"n": i}}))
            .await;
        assert_eq!(
            (sent["type"].as_str(), sent["seq"].as_u64()),
            (Some("sent"), Some(i)),
            "{sent}"
        );
        let got = bob.expect("message").await;
        assert_eq!(got["seq"], i);
        assert_eq!(got["from"], "ann");
        assert_eq!(got["data"], json!({"n": i}));
        let ts = got["ts"].as_i64().unwrap();
        assert!(ts >= before && ts <= presence::now_ms(), "ts {ts}");
    }

    let after = bob
        .request(json!({"action": "history", "group": "chat:ward", "after": 1}))
        .await;
    assert_eq!(after["type"], "history", "{after}");
    assert_eq!(seqs(&after), vec![2, 3]);
    assert_eq!(
        (after["complete"].as_bool(), after["more"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(after["messages"][0]["from"], "ann");
    assert_eq!(after["messages"][0]["data"], json!({"n": 2}));

    let newest = bob
        .request(json!({"action": "history", "group": "chat:ward", "limit": 2}))
        .await;
    assert_eq!(seqs(&newest), vec![2, 3], "the newest two, oldest first");
    let paged = bob
        .request(json!({"action": "history", "group": "chat:ward", "after": 0, "limit": 2}))
        .await;
    assert_eq!(
        (seqs(&paged), paged["more"].as_bool()),
        (vec![1, 2], Some(true))
    );
    let beyond = bob
        .request(json!({"action": "history", "group": "chat:ward", "after": 9}))
        .await;
    assert_eq!(
        (seqs(&beyond).len(), beyond["complete"].as_bool()),
        (0, Some(true))
    );

    // Each group counts on its own.
    ann.join("chat:other").await;
    let sent = ann
        .request(json!({"action": "send", "group": "chat:other", "data": "x"}))
        .await;
    assert_eq!(sent["seq"], 1);
}

#[tokio::test]
async fn history_refuses_non_members_and_bad_input_and_changes_nothing() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    let mut eve = client(&stack, "eve").await;
    ann.join("chat:ward").await;
    ann.request(json!({"action": "send", "group": "chat:ward", "data": "secret"}))
        .await;

    let refused = eve
        .request(json!({"action": "history", "group": "chat:ward"}))
        .await;
    assert_eq!(refused["code"], "not_member", "{refused}");
    assert!(refused.get("messages").is_none());
    let refused = eve
        .request(json!({"action": "presence", "group": "chat:ward"}))
        .await;
    assert_eq!(refused["code"], "not_member", "{refused}");

    for (bad, what) in [
        (
            json!({"action": "history", "group": "chat:ward", "limit": 0}),
            "limit",
        ),
        (
            json!({"action": "history", "group": "chat:ward", "limit": 501}),
            "limit",
        ),
        (
            json!({"action": "history", "group": "chat:ward", "after": -1}),
            "after",
        ),
        (
            json!({"action": "history", "group": "chat:ward", "after": "x"}),
            "after",
        ),
        (json!({"action": "history", "group": "lobby"}), "group"),
        (json!({"action": "history"}), "group"),
        (json!({"action": "auth", "token": 7}), "token"),
        (json!({"action": "auth"}), "token"),
    ] {
        let reply = ann.request(bad.clone()).await;
        assert_eq!(reply["code"], "bad_request", "{bad}: {reply}");
        assert!(
            reply["message"].as_str().unwrap().contains(what),
            "{bad}: the error names {what}: {reply}"
        );
    }
    // A message's data over the limit is refused and not stored.
    let huge = "x".repeat(31 * 1024);
    let reply = ann
        .request(json!({"action": "send", "group": "chat:ward", "data": huge}))
        .await;
    assert!(
        matches!(reply["code"].as_str(), Some("bad_request" | "too_large")),
        "{reply}"
    );
    let history = ann
        .request(json!({"action": "history", "group": "chat:ward"}))
        .await;
    assert_eq!(seqs(&history), vec![1], "nothing else was stored");
}

#[tokio::test]
async fn retention_keeps_the_newest_and_says_when_history_is_incomplete() {
    let stack = start(&[("MESSAGE_RETENTION_COUNT", "5")]).await;
    let mut ann = client(&stack, "ann").await;
    ann.join("chat:ward").await;
    for i in 0..8 {
        ann.request(json!({"action": "send", "group": "chat:ward", "data": i}))
            .await;
    }
    let all = ann
        .request(json!({"action": "history", "group": "chat:ward", "after": 0}))
        .await;
    assert_eq!(seqs(&all), vec![4, 5, 6, 7, 8]);
    assert_eq!(all["complete"], false, "1..=3 were dropped: {all}");
    let recent = ann
        .request(json!({"action": "history", "group": "chat:ward", "after": 5}))
        .await;
    assert_eq!(
        (seqs(&recent), recent["complete"].as_bool()),
        (vec![6, 7, 8], Some(true))
    );
}

#[tokio::test]
async fn presence_counts_live_devices_and_members_come_and_go_with_a_grace() {
    let stack = start(&[]).await;
    let mut ann = client(&stack, "ann").await;
    let mut ann_phone = client(&stack, "ann").await;
    let mut bob = client(&stack, "bob").await;
    ann.join("chat:ward").await;
    bob.join("chat:ward").await;

    let p = ann
        .request(json!({"action": "presence", "group": "chat:ward"}))
        .await;
    assert_eq!(
        p["members"],
        json!([{"user": "ann", "devices": 2}, {"user": "bob", "devices": 1}]),
        "{p}"
    );

    // A reconnect within the grace makes no noise.
    bob.close().await;
    let bob = client(&stack, "bob").await;
    assert!(
        ann.wait_for("member.offline", Duration::from_secs(5))
            .await
            .is_none(),
        "a quick reconnect is not announced"
    );

    // Leaving for good: member.offline to the others after the grace, once.
    bob.close().await;
    let offline = ann.expect("member.offline").await;
    assert_eq!(
        offline,
        json!({"type": "member.offline", "group": "chat:ward", "user": "bob"})
    );
    let also = ann_phone.expect("member.offline").await;
    assert_eq!(also["user"], "bob");
    let p = ann
        .request(json!({"action": "presence", "group": "chat:ward"}))
        .await;
    assert_eq!(p["members"], json!([{"user": "ann", "devices": 2}]), "{p}");

    // Coming back: member.online.
    let _bob = client(&stack, "bob").await;
    let online = ann.expect("member.online").await;
    assert_eq!(
        online,
        json!({"type": "member.online", "group": "chat:ward", "user": "bob"})
    );

    // One of ann's two devices going is not news.
    ann_phone.close().await;
    let mut bob_view = client(&stack, "bob").await;
    assert!(
        bob_view
            .wait_for("member.offline", Duration::from_secs(4))
            .await
            .is_none(),
        "ann still has a device"
    );
}

#[tokio::test]
async fn an_expired_token_needs_auth_and_a_socket_without_one_is_closed() {
    let stack = start(&[("TOKEN_EXPIRY_GRACE_SECONDS", "2")]).await;
    let mut ann = client_with(&stack, &token_for("ann", 1, None)).await;
    let pong = ann.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let expired = ann.request(json!({"action": "ping"})).await;
    assert_eq!(expired["code"], "token_expired", "{expired}");

    // Forged, expired and other users' tokens change nothing.
    let forged = DevTokenSigner::new(b"another-secret-another-secret-0123456789").sign(
        &identity("ann", "st-olav-icu", "trondelag"),
        presence::now_ms() / 1000 + 600,
    );
    let reply = ann
        .request(json!({"action": "auth", "token": forged}))
        .await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    let reply = ann
        .request(json!({"action": "auth", "token": token_for("bob", 600, None)}))
        .await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    let reply = ann
        .request(json!({"action": "auth", "token": "not.a.token"}))
        .await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    let still = ann.request(json!({"action": "ping"})).await;
    assert_eq!(still["code"], "token_expired", "nothing changed: {still}");

    // A fresh token of the same user renews the socket.
    let fresh_exp = presence::now_ms() / 1000 + 600;
    let authed = ann
        .request(json!({"action": "auth", "token": token_for("ann", 600, None)}))
        .await;
    assert_eq!(authed["type"], "authed", "{authed}");
    assert!(
        (authed["exp"].as_i64().unwrap() - fresh_exp).abs() <= 2,
        "{authed}"
    );
    assert_eq!(ann.request(json!({"action": "ping"})).await["type"], "pong");

    // Without a fresh token the socket is closed after the grace.
    let mut bob = client_with(&stack, &token_for("bob", 1, None)).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    bob.send_text(&json!({"action": "ping"}).to_string()).await;
    let last = bob.expect("error").await;
    assert_eq!(last["code"], "token_expired");
    assert!(
        bob.closed_within(Duration::from_secs(5)).await,
        "closed after the grace"
    );
}

#[tokio::test]
async fn the_claim_policy_lets_users_join_only_the_groups_their_token_lists() {
    let stack = start(&[("JOIN_POLICY", "claim")]).await;
    let granted = token_for("ann", 3600, Some(&["chat:ops", "chat:trondelag-*"]));
    let mut ann = client_with(&stack, &granted).await;
    for ok in ["chat:ops", "chat:trondelag-icu"] {
        ann.join(ok).await;
    }
    for no in ["chat:opsroom", "chat:viken-icu"] {
        let reply = ann.request(json!({"action": "join", "group": no})).await;
        assert_eq!(reply["code"], "forbidden", "{no}: {reply}");
    }
    let mut bob = client(&stack, "bob").await;
    let reply = bob
        .request(json!({"action": "join", "group": "chat:ops"}))
        .await;
    assert_eq!(
        reply["code"], "forbidden",
        "no groups claim, no chat: {reply}"
    );
    let members = ann
        .request(json!({"action": "members", "group": "chat:ops"}))
        .await;
    assert_eq!(
        members["users"],
        json!(["ann"]),
        "bob was not added: {members}"
    );

    // A malformed groups claim (a string, not a list) refuses the token at connect.
    let claims = json!({"sub": "carl", "facility": "st-olav-icu", "region": "trondelag",
        "exp": presence::now_ms() / 1000 + 600, "groups": "chat:ops"});
    let raw = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_SECRET.as_bytes()),
    )
    .unwrap();
    let refused = WsClient::try_connect(&format!("{}?token={raw}", stack.ws.websocket_url())).await;
    assert!(
        refused.is_err(),
        "a groups claim that is not a list is refused"
    );
}
