//! The WebSocket protocol: client actions in, server messages out (docs/architecture.md,
//! "WebSocket API").

use crate::ids::Group;
use crate::ids::{RegionId, SessionId, UserId};
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
    match serde_json::from_value::<ClientAction>(Value::Object(obj)) {
        Ok(a) => Ok((a, reference)),
        Err(e) => Err(fail(
            "bad_request",
            format!("{action}: {e}"),
            Some(action),
            reference,
        )),
    }
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
    #[serde(rename = "message")]
    Message {
        group: String,
        from: UserId,
        data: Value,
    },
    /// The sender's acknowledgement of a `send`.
    #[serde(rename = "sent")]
    Sent {
        group: String,
        delivered: usize,
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
