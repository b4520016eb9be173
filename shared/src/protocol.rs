//! Wire formats (docs/architecture.md, "Contracts"): the heartbeat body, the queue message,
//! the status event and the error body. Parsing validates, so a value of these types is always well-formed.

pub use crate::ids::Group;
use crate::ids::{FacilityId, IdError, RegionId, SessionId, UserId};
use serde::{Deserialize, Serialize};

/// The largest heartbeat body accepted over HTTP (413 above it).
pub const MAX_HEARTBEAT_BODY_BYTES: usize = 1024;
/// The largest queue message accepted by the consumer; a real one is about 200 bytes.
pub const MAX_QUEUE_MESSAGE_BYTES: usize = 4096;
/// The queue message version this code writes and reads.
pub const QUEUE_MESSAGE_VERSION: u32 = 1;

/// What a heartbeat says about its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatState {
    /// The tab is open: the session stays online until the deadline.
    #[default]
    Active,
    /// The tab ended the session (logout, page close): offline now.
    Ended,
}

impl HeartbeatState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }
}

/// `POST /v1/heartbeats` body. Identity never comes from here, only from the token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    pub session_id: SessionId,
    #[serde(default)]
    pub state: HeartbeatState,
}

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is {0} bytes; the limit is {MAX_HEARTBEAT_BODY_BYTES}")]
    TooLarge(usize),
    #[error(
        "body is empty; expected JSON {{\"session_id\": ..., \"state\": \"active\"|\"ended\"}}"
    )]
    Empty,
    #[error("body is not valid: {0}")]
    Invalid(String),
}

impl HeartbeatBody {
    pub fn parse(bytes: &[u8]) -> Result<Self, BodyError> {
        if bytes.len() > MAX_HEARTBEAT_BODY_BYTES {
            return Err(BodyError::TooLarge(bytes.len()));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(BodyError::Empty);
        }
        serde_json::from_slice(bytes).map_err(|e| BodyError::Invalid(e.to_string()))
    }
}

/// The heartbeat queue's message body: one heartbeat with its server receive time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueMessage {
    pub v: u32,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub facility_id: FacilityId,
    pub region: RegionId,
    /// Server receive time, ms since the epoch. Ordering and deadlines use this, never a
    /// client clock.
    pub at_ms: i64,
    pub state: HeartbeatState,
}

/// Why a queue message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message is {0} bytes; the limit is {MAX_QUEUE_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("message is not a valid heartbeat: {0}")]
    Invalid(String),
    #[error("message version {0} is not supported (expected {QUEUE_MESSAGE_VERSION})")]
    Version(u32),
    #[error("at_ms {0} is not a plausible time")]
    Time(i64),
}

impl QueueMessage {
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        if body.len() > MAX_QUEUE_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(body.len()));
        }
        let msg: Self =
            serde_json::from_str(body).map_err(|e| MessageError::Invalid(e.to_string()))?;
        if msg.v != QUEUE_MESSAGE_VERSION {
            return Err(MessageError::Version(msg.v));
        }
        // 2001..2286: 13 digits, exactly representable in Lua's doubles and JSON numbers.
        if !(1_000_000_000_000..=9_999_999_999_999).contains(&msg.at_ms) {
            return Err(MessageError::Time(msg.at_ms));
        }
        Ok(msg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("queue message serializes")
    }
}

/// A facility is online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "online" => Some(Self::Online),
            "offline" => Some(Self::Offline),
            _ => None,
        }
    }
}

/// A facility's status at one version: what a flip produces, what clients and the
/// DynamoDB writer hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityStatus {
    pub facility_id: FacilityId,
    pub region: RegionId,
    pub status: Status,
    pub since_ms: i64,
    /// Grows by one per flip; older versions are ignored by every reader.
    pub version: u64,
    pub online_sessions: u64,
}

/// The event pushed to `region:{region}` and `facility:{id}` when a facility flips.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "facility.status")]
pub struct StatusEvent {
    #[serde(flatten)]
    pub status: FacilityStatus,
}

impl StatusEvent {
    /// The groups that receive this event: the one place this is decided.
    pub fn groups(&self) -> [Group; 2] {
        [
            Group::Region(self.status.region.clone()),
            Group::Facility(self.status.facility_id.clone()),
        ]
    }
}

/// The statuses a server frame carries, as JSON: itself for a `facility.status` event, its
/// `statuses` for a coalesced `facility.statuses` frame, none for anything else. For clients
/// written in Rust (tests, benchmarks, the soak).
pub fn statuses_in(frame: &serde_json::Value) -> Vec<serde_json::Value> {
    match frame["type"].as_str() {
        Some("facility.status") => vec![frame.clone()],
        Some("facility.statuses") => frame["statuses"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A message on the push queue. Status events travel as themselves (their `type` tags them);
/// other pushes are `{"type": "deliver", "to": {...}, "data": ..., "except": "conn-id"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PushMessage {
    Status(StatusEvent),
    Deliver(Delivery),
    Member(MemberPresence),
}

/// `{"type": "member.presence", "user": ..., "online": bool}`: a user's first device connected
/// (ws-connect), or their last one went and the grace ended (session-expiry). ws-push
/// announces `member.online`/`member.offline` to the other members of their chat groups,
/// if it still holds then (a device of the user is connected, or none is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "member.presence")]
pub struct MemberPresence {
    pub user: UserId,
    pub online: bool,
}

/// A generic push: `data` (any JSON, sent as the frame) to a connection, a user's devices or
/// a group, optionally without one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "deliver")]
pub struct Delivery {
    pub to: Target,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<String>,
}

/// Who a push goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Connection(String),
    User(UserId),
    Group(Group),
    /// Every connection (`"to": "all"`): only for `resync` after a Redis data loss.
    All,
}

impl PushMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("push message serializes")
    }
}

/// The JSON error body of every HTTP error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error body serializes")
    }
}

impl From<IdError> for BodyError {
    fn from(e: IdError) -> Self {
        BodyError::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_body_defaults_to_active_and_rejects_extras() {
        let b = HeartbeatBody::parse(br#"{"session_id":"tab-1"}"#).unwrap();
        assert_eq!(b.state, HeartbeatState::Active);
        let b = HeartbeatBody::parse(br#"{"session_id":"tab-1","state":"ended"}"#).unwrap();
        assert_eq!(b.state, HeartbeatState::Ended);
        assert!(matches!(HeartbeatBody::parse(b""), Err(BodyError::Empty)));
        let e = HeartbeatBody::parse(br#"{"session_id":"tab-1","user_id":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("user_id"), "{e}");
        let e = HeartbeatBody::parse(br#"{"session_id":"a/b"}"#).unwrap_err();
        assert!(e.to_string().contains("session_id"), "{e}");
        let e = HeartbeatBody::parse(br#"{"session_id":"a","state":"asleep"}"#).unwrap_err();
        assert!(e.to_string().contains("asleep"), "{e}");
        let big = format!(r#"{{"session_id":"{}"}}"#, " ".repeat(2000));
        assert!(matches!(
            HeartbeatBody::parse(big.as_bytes()),
            Err(BodyError::TooLarge(_))
        ));
    }

    #[test]
    fn queue_message_round_trips_and_validates() {
        let m = QueueMessage {
            v: 1,
            session_id: SessionId::parse("s1").unwrap(),
            user_id: UserId::parse("u1").unwrap(),
            facility_id: FacilityId::parse("f1").unwrap(),
            region: RegionId::parse("r1").unwrap(),
            at_ms: 1_763_900_000_000,
            state: HeartbeatState::Active,
        };
        assert_eq!(QueueMessage::parse(&m.to_json()).unwrap(), m);
        let v2 = m.to_json().replace("\"v\":1", "\"v\":2");
        assert!(matches!(
            QueueMessage::parse(&v2),
            Err(MessageError::Version(2))
        ));
        let old = m.to_json().replace("1763900000000", "12");
        assert!(matches!(
            QueueMessage::parse(&old),
            Err(MessageError::Time(12))
        ));
        assert!(matches!(
            QueueMessage::parse("{"),
            Err(MessageError::Invalid(_))
        ));
    }

    #[test]
    fn status_event_has_the_documented_shape() {
        let e = StatusEvent {
            status: FacilityStatus {
                facility_id: FacilityId::parse("f1").unwrap(),
                region: RegionId::parse("r1").unwrap(),
                status: Status::Online,
                since_ms: 5,
                version: 3,
                online_sessions: 2,
            },
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"facility.status","facility_id":"f1","region":"r1",
                "status":"online","since_ms":5,"version":3,"online_sessions":2})
        );
        let back: PushMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, PushMessage::Status(e.clone()));
        assert_eq!(
            e.groups().map(|g| g.to_string()),
            ["region:r1".to_owned(), "facility:f1".to_owned()]
        );
    }
}
