//! The WebSocket protocol: client actions in, server messages out (docs/architecture.md,
//! "WebSocket API").

use crate::ids::Group;
use crate::ids::{RegionId, SessionId, UserId};
use crate::messages::StoredMessage;
use crate::protocol::{FacilityStatus, HeartbeatState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest client frame handled (API Gateway's own frame limit).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// A client request (`{"action": ...}`); `ref` is taken off before parsing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ClientAction {
    /// One-way: keeps the session alive (or ends it) and binds it to this socket.
    Heartbeat {
        /// Default: the session the socket carries already.
        #[serde(default)]
        session_id: Option<SessionId>,
        #[serde(default)]
        state: HeartbeatState,
    },
    /// One-way: whether the page is visible (hidden sockets get no region status events but
    /// their own facility's).
    Visibility {
        visible: bool,
    },
    Join {
        group: Group,
    },
    Leave {
        group: Group,
    },
    Send {
        group: Group,
        data: Value,
        #[serde(default)]
        others: bool,
    },
    Members {
        group: Group,
    },
    Snapshot {
        #[serde(default)]
        region: Option<RegionId>,
    },
    Ping,
    /// Stored messages of a group: after `after`, or the newest `limit`.
    History {
        group: Group,
        #[serde(default, deserialize_with = "after_field")]
        after: Option<u64>,
        #[serde(default, deserialize_with = "limit_field")]
        limit: Option<usize>,
    },
    /// Members of a group with a live connection.
    Presence {
        group: Group,
    },
    /// A fresh token for this connection (same user).
    Auth {
        token: String,
    },
}

/// `history`'s `after`: a seq (an integer ≥ 0); the error names the field.
fn after_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("after must be a seq (an integer >= 0), not {v}"))
        }),
    }
}

/// `history`'s `limit`: an integer (its range is checked when served); the error names it.
fn limit_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("limit must be an integer, not {v}"))),
    }
}

impl ClientAction {
    /// The `action` name of the frame.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Heartbeat { .. } => "heartbeat",
            Self::Visibility { .. } => "visibility",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Send { .. } => "send",
            Self::Members { .. } => "members",
            Self::Snapshot { .. } => "snapshot",
            Self::Ping => "ping",
            Self::History { .. } => "history",
            Self::Presence { .. } => "presence",
            Self::Auth { .. } => "auth",
        }
    }
}

/// The action names, for errors about unknown ones.
pub const ACTIONS: &[&str] = &[
    "heartbeat",
    "visibility",
    "join",
    "leave",
    "send",
    "members",
    "snapshot",
    "ping",
    "history",
    "presence",
    "auth",
];

/// The actions API Gateway routes to their own one-way routes (`template.yaml`
/// `HeartbeatRoute`, `VisibilityRoute`): no route response, so no billed reply. Their errors
/// are posted to the connection instead.
pub const ONE_WAY_ACTIONS: &[&str] = &["heartbeat", "visibility"];

/// Whether API Gateway routes `body` to a one-way route: a JSON object whose `action` is one
/// of [`ONE_WAY_ACTIONS`] (its route selection expression is `$request.body.action`).
pub fn names_one_way_action(body: &str) -> bool {
    #[derive(Deserialize)]
    struct Selector<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    body.len() <= MAX_FRAME_BYTES
        && serde_json::from_str::<Selector>(body)
            .ok()
            .and_then(|s| s.action)
            .is_some_and(|a| ONE_WAY_ACTIONS.contains(&a.as_ref()))
}

/// A member in a `presence` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentMember {
    pub user: UserId,
    /// Live connections of the user.
    pub devices: usize,
}

/// A frame that could not be turned into an action: what to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    pub action: Option<String>,
    pub reference: Option<Value>,
}

/// Parses a text frame into its action and `ref`.
pub fn parse_frame(body: &str) -> Result<(ClientAction, Option<Value>), FrameError> {
    let fail =
        |code, message: String, action: Option<String>, reference: Option<Value>| FrameError {
            code,
            message,
            action,
            reference,
        };
    if body.len() > MAX_FRAME_BYTES {
        return Err(fail(
            "too_large",
            format!(
                "frame is {} bytes; the limit is {MAX_FRAME_BYTES}",
                body.len()
            ),
            None,
            None,
        ));
    }
    let mut obj = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            return Err(fail(
                "bad_request",
                "frame must be a JSON object with an \"action\"".into(),
                None,
                None,
            ));
        }
        Err(e) => {
            return Err(fail(
                "bad_request",
                format!("frame is not JSON: {e}"),
                None,
                None,
            ));
        }
    };
    let reference = obj.remove("ref");
    if let Some(r) = &reference {
        let ok = match r {
            Value::String(s) => s.len() <= 128,
            Value::Number(_) => true,
            _ => false,
        };
        if !ok {
            return Err(fail(
                "bad_request",
                "ref must be a number or a string of at most 128 characters".into(),
                None,
                None,
            ));
        }
    }
    let action = match obj.get("action") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => {
            return Err(fail(
                "bad_request",
                "action must be a string".into(),
                None,
                reference,
            ));
        }
        None => {
            return Err(fail(
                "bad_request",
                "frame lacks \"action\"".into(),
                None,
                reference,
            ));
        }
    };
    if !ACTIONS.contains(&action.as_str()) {
        let shown: String = action.chars().take(32).collect();
        return Err(fail(
            "unknown_action",
            format!(
                "unknown action {shown:?}; expected one of {}",
                ACTIONS.join(", ")
            ),
            Some(shown),
            reference,
        ));
    }
    match serde_json::from_value::<ClientAction>(Value::Object(obj.clone())) {
        Ok(a) => Ok((a, reference)),
        Err(e) => Err(fail(
            "bad_request",
            format!("{action}: {}", name_the_field(&obj, &e.to_string())),
            Some(action),
            reference,
        )),
    }
}

/// serde's type errors do not say which field is wrong: the field is the one whose removal
/// turns the error into "missing field" (or cures it).
fn name_the_field(obj: &serde_json::Map<String, Value>, error: &str) -> String {
    if obj.keys().any(|k| error.contains(&format!("`{k}`"))) {
        return error.to_owned();
    }
    for key in obj.keys().filter(|k| *k != "action") {
        let mut without = obj.clone();
        without.remove(key);
        let culprit = match serde_json::from_value::<ClientAction>(Value::Object(without)) {
            Ok(_) => true,
            Err(e) => e.to_string().contains(&format!("missing field `{key}`")),
        };
        if culprit {
            return format!("field `{key}`: {error}");
        }
    }
    error.to_owned()
}

/// A message the server sends (`{"type": ...}`). `ref` echoes the request's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename = "joined")]
    Joined {
        group: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    #[serde(rename = "left")]
    Left {
        group: String,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    #[serde(rename = "member.joined")]
    MemberJoined { group: String, user: UserId },
    #[serde(rename = "member.left")]
    MemberLeft { group: String, user: UserId },
    /// A message to a group: `seq` numbers the group's stored messages (only grows, no
    /// gaps), `ts` is the server's time (ms); `from` is `null` when the team's backend
    /// published without naming a sender.
    #[serde(rename = "message")]
    Message {
        group: String,
        from: Option<UserId>,
        data: Value,
        seq: u64,
        ts: i64,
    },
    /// The sender's acknowledgement of a `send`.
    #[serde(rename = "sent")]
    Sent {
        group: String,
        delivered: usize,
        seq: u64,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    #[serde(rename = "members")]
    Members {
        group: String,
        users: Vec<UserId>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    #[serde(rename = "snapshot")]
    Snapshot {
        region: RegionId,
        facilities: Vec<FacilityStatus>,
        /// The heartbeat interval the server wants from this browser.
        interval_s: u64,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    /// Status events of one region gathered over the coalescing window, oldest first.
    #[serde(rename = "facility.statuses")]
    Statuses {
        region: RegionId,
        statuses: Vec<FacilityStatus>,
    },
    /// Stored messages of a group, oldest first.
    #[serde(rename = "history")]
    History {
        group: String,
        messages: Vec<StoredMessage>,
        /// `false` when retention already dropped some of the asked range.
        complete: bool,
        /// `true` when stored messages after the last one given exist: ask again with
        /// `after` = its `seq`.
        more: bool,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    /// Members of a group with at least one live connection, and how many.
    #[serde(rename = "presence")]
    Presence {
        group: String,
        members: Vec<PresentMember>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    /// `auth` accepted: the connection's token now expires at `exp` (seconds).
    #[serde(rename = "authed")]
    Authed {
        exp: i64,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    /// A member's first device connected (not a reconnect within the grace).
    #[serde(rename = "member.online")]
    MemberOnline { group: String, user: UserId },
    /// A member's last device went and did not come back within the grace.
    #[serde(rename = "member.offline")]
    MemberOffline { group: String, user: UserId },
    #[serde(rename = "pong")]
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
    #[serde(rename = "error")]
    Error {
        code: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        action: Option<String>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none", default)]
        reference: Option<Value>,
    },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server message serializes")
    }

    pub fn error(
        code: &str,
        message: impl Into<String>,
        action: Option<String>,
        reference: Option<Value>,
    ) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
            action,
            reference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_actions_with_ref() {
        let (a, r) = parse_frame(
            r#"{"action":"send","group":"chat:x","data":{"t":"hi"},"others":true,"ref":7}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            ClientAction::Send {
                group: Group::parse("chat:x").unwrap(),
                data: json!({"t":"hi"}),
                others: true
            }
        );
        assert_eq!(r, Some(json!(7)));
        assert_eq!(
            parse_frame(r#"{"action":"ping"}"#).unwrap(),
            (ClientAction::Ping, None)
        );
        let (a, _) = parse_frame(r#"{"action":"snapshot"}"#).unwrap();
        assert_eq!(a, ClientAction::Snapshot { region: None });
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        let e = parse_frame("not json").unwrap_err();
        assert_eq!(e.code, "bad_request");
        let e = parse_frame(r#"{"action":"dance","ref":"r1"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.action.as_deref(), e.reference),
            ("unknown_action", Some("dance"), Some(json!("r1")))
        );
        let e = parse_frame(r#"{"action":"join","ref":1}"#).unwrap_err();
        assert_eq!(
            (e.code, e.reference.clone()),
            ("bad_request", Some(json!(1)))
        );
        assert!(e.message.contains("group"), "{}", e.message);
        let e = parse_frame(r#"{"action":"join","group":"admin:x"}"#).unwrap_err();
        assert!(e.message.contains("admin"), "{}", e.message);
        let e = parse_frame(&format!(
            r#"{{"action":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        ))
        .unwrap_err();
        assert_eq!(e.code, "too_large");
        assert_eq!(parse_frame("[1]").unwrap_err().code, "bad_request");
        assert_eq!(
            parse_frame(r#"{"action":"ping","ref":{"a":1}}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        for (frame, field) in [
            (r#"{"action":"auth","token":7}"#, "token"),
            (
                r#"{"action":"history","group":"chat:x","after":-1}"#,
                "after",
            ),
            (
                r#"{"action":"history","group":"chat:x","limit":"ten"}"#,
                "limit",
            ),
            (r#"{"action":"send","group":7,"data":1}"#, "group"),
        ] {
            let e = parse_frame(frame).unwrap_err();
            assert_eq!(e.code, "bad_request");
            assert!(e.message.contains(field), "{frame}: {}", e.message);
        }
        let (a, _) =
            parse_frame(r#"{"action":"history","group":"chat:x","after":3,"limit":2}"#).unwrap();
        assert_eq!(
            a,
            ClientAction::History {
                group: Group::parse("chat:x").unwrap(),
                after: Some(3),
                limit: Some(2)
            }
        );
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let m = ServerMessage::MemberLeft {
            group: "chat:x".into(),
            user: UserId::parse("u1").unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"type":"member.left","group":"chat:x","user":"u1"})
        );
        let m = ServerMessage::error("not_member", "no", Some("send".into()), Some(json!("r")));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"type":"error","code":"not_member","message":"no","action":"send","ref":"r"})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Pong { reference: None }).unwrap(),
            json!({"type":"pong"})
        );
    }
}
