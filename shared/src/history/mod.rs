//! The facility history read API (function history-read): current statuses of a region,
//! a facility's flip history, who was online at a time, and availability over a range
//! (docs/architecture.md, "HTTP API").
//!
//! Every answer comes from DynamoDB `Query`/`GetItem` calls on the facilities table, never a
//! `Scan`, and reads a bounded number of items whatever the table's size: a history page
//! holds at most `limit` (≤ [`MAX_LIMIT`]) flips, the region listing is the `by-region`
//! index (one status item per facility), the sessions answer is one hour bucket, and
//! availability reads the flips of at most [`MAX_RANGE_MS`] in pages of
//! [`AVAILABILITY_PAGE`] (see [`query_read_units`] for what a busy facility costs).
//!
//! Authorization: on the user routes the caller's token (or the claims of the JWT authorizer)
//! names its region; it may read the facilities of that region only. A facility's region is
//! the one of its status item: a facility without one is 404, one of another region 403.
//!
//! The team's backend reads every region through the same routes under `/v1/admin/`
//! ([`ADMIN_PREFIX`], [`BACKEND_ROUTES`]): same parameters, answers and validation, with IAM
//! authorization (`AuthorizationType: AWS_IAM`). There the caller is the IAM identity API
//! Gateway put in the request context ([`crate::http_api::iam_caller`]), and nothing else: a
//! request without one is 401 whatever token it carries. On the user routes an IAM identity
//! counts for nothing: a token is required, and its region is checked.

use crate::auth::{AuthError, Authenticator, Identity};
use crate::facilities::{FacilityError, FacilityStore, FlipKey};
use crate::ids::{FacilityId, RegionId};
use crate::ingest::Credentials;
use crate::protocol::{ErrorBody, FacilityStatus, Status};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;

mod availability;
mod request;

pub use availability::*;
pub use request::*;

/// Flips per history page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a history page takes.
pub const MAX_LIMIT: usize = 1000;
/// The longest `from..to` range: 31 days.
pub const MAX_RANGE_MS: i64 = 31 * 86_400_000;
/// Flips read per `Query` while computing availability.
pub const AVAILABILITY_PAGE: usize = 1000;
/// A DynamoDB read unit covers 4 KB of a `Query` page (half a unit when eventually consistent).
const READ_UNIT_BYTES: usize = 4096;

/// Why a read was refused. `Display` is the message shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    /// A backend's route (under `/v1/admin/`) without an IAM identity in its context.
    #[error("{}", crate::http_api::NO_IAM_IDENTITY)]
    NoIamIdentity,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the facilities table is unavailable; retry shortly")]
    Unavailable(#[source] FacilityError),
}

impl ReadError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) | Self::NoIamIdentity => 401,
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Unavailable(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) | Self::NoIamIdentity => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Seconds a client should wait before retrying, where that applies.
    pub fn retry_after_s(&self) -> Option<u32> {
        matches!(self, Self::Unavailable(_)).then_some(5)
    }

    /// The JSON error body; no internal detail (table errors stay in the logs).
    pub fn body(&self) -> String {
        ErrorBody::new(self.code(), self.to_string()).to_json()
    }
}

fn bad(message: impl Into<String>) -> ReadError {
    ReadError::BadRequest(message.into())
}

/// A client's value, shortened for an error message.
fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(40).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

fn flip_json(f: &FacilityStatus) -> Value {
    json!({
        "status": f.status.as_str(),
        "since_ms": f.since_ms,
        "version": f.version,
        "online_sessions": f.online_sessions,
    })
}

/// Who a request says it is from: what [`HistoryReader::authenticate`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// A user's token, or the claims of the JWT authorizer: the user routes only.
    pub credentials: Credentials<'a>,
    /// The IAM identity API Gateway authorized the request with
    /// ([`crate::http_api::iam_caller`]): the backend's routes only.
    pub iam: Option<&'a str>,
}

/// Who reads, authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// A user's token: its own region only.
    User(Identity),
    /// The team's backend (its IAM identity, the caller's ARN): every region.
    Backend(String),
}

impl Reader {
    /// Whether this reader may read the facilities of `region`.
    pub fn may_read(&self, region: &RegionId) -> bool {
        match self {
            Self::User(identity) => identity.region == *region,
            Self::Backend(_) => true,
        }
    }
}

/// The history read service.
#[derive(Clone)]
pub struct HistoryReader {
    auth: Authenticator,
    facilities: Arc<dyn FacilityStore>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl HistoryReader {
    pub fn new(auth: Authenticator, facilities: Arc<dyn FacilityStore>) -> Self {
        Self { auth, facilities }
    }

    pub fn identify(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        match credentials {
            Credentials::Authorizer(claims) => self.auth.from_claims(claims),
            Credentials::Bearer(header) => self.auth.verify_bearer(header),
        }
    }

    /// Who reads a route of `access`: on the user routes the token (or the authorizer's
    /// claims), never the IAM identity; on the backend's, the IAM identity, never a token.
    pub fn authenticate(&self, access: Access, caller: Caller<'_>) -> Result<Reader, ReadError> {
        match access {
            Access::User => Ok(Reader::User(self.identify(caller.credentials)?)),
            Access::Backend => caller
                .iam
                .filter(|arn| !arn.is_empty())
                .map(|arn| Reader::Backend(arn.to_owned()))
                .ok_or(ReadError::NoIamIdentity),
        }
    }

    /// Authenticates, validates and answers one `GET` of `path` with its query pairs: the
    /// reader (who asked) and the answer.
    pub async fn answer(
        &self,
        caller: Caller<'_>,
        path: &str,
        query: &[(String, String)],
    ) -> Result<(Reader, Value), ReadError> {
        let reader = self.authenticate(Access::of_path(path), caller)?;
        let route = Route::parse(path, query)?;
        let value = self.read(&reader, route).await?;
        Ok((reader, value))
    }

    /// Answers a validated route for `reader`.
    pub async fn read(&self, reader: &Reader, route: Route) -> Result<Value, ReadError> {
        let store = &self.facilities;
        match route {
            Route::Region { region } => {
                if !reader.may_read(&region) {
                    return Err(ReadError::Forbidden(format!(
                        "region {region} is not yours: a token reads its own region only"
                    )));
                }
                let mut all = store
                    .region(&region)
                    .await
                    .map_err(ReadError::Unavailable)?;
                all.sort_by(|a, b| a.facility_id.cmp(&b.facility_id));
                let facilities: Vec<Value> = all
                    .iter()
                    .map(|f| {
                        let mut v = flip_json(f);
                        v["facility_id"] = json!(f.facility_id);
                        v
                    })
                    .collect();
                Ok(json!({ "region": region, "facilities": facilities }))
            }
            Route::History {
                facility,
                range,
                limit,
                cursor,
            } => {
                self.authorize(reader, &facility).await?;
                let page = store
                    .flips_page(&facility, range.from_ms, range.to_ms - 1, cursor, limit)
                    .await
                    .map_err(ReadError::Unavailable)?;
                Ok(json!({
                    "facility_id": facility,
                    "flips": page.flips.iter().map(flip_json).collect::<Vec<_>>(),
                    "cursor": page.next.map(encode_cursor),
                }))
            }
            Route::Sessions { facility, at_ms } => {
                self.authorize(reader, &facility).await?;
                let mut segments = store
                    .online_at(&facility, at_ms)
                    .await
                    .map_err(ReadError::Unavailable)?;
                segments.sort_by(|a, b| {
                    (a.start_ms, a.session_id.as_str()).cmp(&(b.start_ms, b.session_id.as_str()))
                });
                let sessions: Vec<Value> = segments
                    .iter()
                    .map(|s| {
                        json!({
                            "session_id": s.session_id,
                            "user_id": s.user_id,
                            "started_ms": s.start_ms,
                            // Only finished segments are stored: always set today; live
                            // sessions (which would be null) are in Redis, not here.
                            "ended_ms": s.end_ms,
                            "reason": s.reason,
                        })
                    })
                    .collect();
                Ok(json!({ "facility_id": facility, "at": at_ms, "sessions": sessions }))
            }
            Route::Availability { facility, range } => {
                let current = self.authorize(reader, &facility).await?;
                let before = store
                    .flip_before(&facility, range.from_ms)
                    .await
                    .map_err(ReadError::Unavailable)?;
                // With no flip kept before `from` (history expires), a current status older
                // than `from` is the status then too.
                let at_start = before
                    .map(|f| f.status)
                    .or((current.since_ms < range.from_ms).then_some(current.status));
                let mut acc = Availability::new(range, at_start);
                let mut after = None;
                loop {
                    let page = store
                        .flips_page(
                            &facility,
                            range.from_ms,
                            range.to_ms - 1,
                            after,
                            AVAILABILITY_PAGE,
                        )
                        .await
                        .map_err(ReadError::Unavailable)?;
                    for f in &page.flips {
                        acc.flip(f.since_ms, f.status);
                    }
                    match page.next {
                        Some(next) if !page.flips.is_empty() && Some(next) != after => {
                            after = Some(next)
                        }
                        _ => break,
                    }
                }
                let r = acc.finish();
                Ok(json!({
                    "facility_id": facility,
                    "from": range.from_ms,
                    "to": range.to_ms,
                    "online_share": r.online_share,
                    "flips": r.flips,
                    "longest_offline_ms": r.longest_offline_ms,
                }))
            }
        }
    }

    /// The facility's status item must exist (404) and be in a region the reader may read
    /// (403). Returns the status item.
    async fn authorize(
        &self,
        reader: &Reader,
        facility: &FacilityId,
    ) -> Result<FacilityStatus, ReadError> {
        let status = self
            .facilities
            .status(facility)
            .await
            .map_err(ReadError::Unavailable)?
            .ok_or_else(|| ReadError::NotFound(format!("facility {facility} is not known")))?;
        if !reader.may_read(&status.region) {
            return Err(ReadError::Forbidden(format!(
                "facility {facility} is not in your region"
            )));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const T: i64 = 1_795_431_600_000;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let range = Range {
            from_ms: T,
            to_ms: T + 10_000,
        };
        let key = FlipKey {
            since_ms: T + 5,
            version: 7,
        };
        assert_eq!(decode_cursor(&encode_cursor(key), range).unwrap(), key);
        for bad in ["!!", "Zm9v", "", &URL_SAFE_NO_PAD.encode("FLIP#12#1")] {
            assert!(decode_cursor(bad, range).is_err(), "{bad}");
        }
        let outside = FlipKey {
            since_ms: T + 10_000,
            version: 1,
        };
        assert!(decode_cursor(&encode_cursor(outside), range).is_err());
    }

    #[test]
    fn parameters_are_validated() {
        let p = "/v1/facilities/er/history";
        let ok = Route::parse(p, &q(&[("from", "1795431600000"), ("to", "1795431700000")]));
        assert!(
            matches!(ok, Ok(Route::History { limit: 100, .. })),
            "{ok:?}"
        );
        let msg = |path: &str, pairs: &[(&str, &str)]| match Route::parse(path, &q(pairs)) {
            Err(ReadError::BadRequest(m)) => m,
            other => panic!("{pairs:?}: {other:?}"),
        };
        assert!(msg(p, &[("from", "17954316"), ("to", "1795431700000")]).starts_with("from"));
        assert!(msg(p, &[("from", "1795431600000")]).starts_with("to is required"));
        assert!(msg(p, &[("from", "1795431700000"), ("to", "1795431600000")]).contains("before"));
        assert!(msg(p, &[("from", "1795431600000"), ("to", "1798431600000")]).contains("31 days"));
        let r = [("from", "1795431600000"), ("to", "1795431700000")];
        assert!(msg(p, &[r[0], r[1], ("limit", "0")]).starts_with("limit"));
        assert!(msg(p, &[r[0], r[1], ("limit", "1001")]).starts_with("limit"));
        assert!(msg(p, &[r[0], r[1], ("limit", "+5")]).starts_with("limit"));
        assert!(msg(p, &[r[0], r[1], ("cursor", "%%%")]).starts_with("cursor"));
        assert!(msg(p, &[r[0], r[1], ("page", "2")]).contains("unknown parameter"));
        assert!(msg(p, &[r[0], r[1], ("from", "1795431600000")]).contains("more than once"));
        assert!(msg("/v1/facilities/er/sessions", &[]).starts_with("at is required"));
        assert!(
            msg("/v1/facilities/a%20b/sessions", &[("at", "1795431600000")]).contains("facility")
        );
        assert!(matches!(
            Route::parse("/v1/facilities/er/nothing", &[]),
            Err(ReadError::NotFound(_))
        ));
    }

    #[test]
    fn backend_routes_are_the_user_routes_under_admin() {
        let r = q(&[("from", "1795431600000"), ("to", "1795431700000")]);
        for kind in ["history", "availability"] {
            assert_eq!(
                Route::parse(&format!("/v1/admin/facilities/er/{kind}"), &r).unwrap(),
                Route::parse(&format!("/v1/facilities/er/{kind}"), &r).unwrap()
            );
        }
        assert_eq!(
            Route::parse("/v1/admin/regions/north/facilities", &[]).unwrap(),
            Route::Region {
                region: RegionId::parse("north").unwrap()
            }
        );
        // The same validation.
        assert!(matches!(
            Route::parse("/v1/admin/facilities/er/sessions", &[]),
            Err(ReadError::BadRequest(m)) if m.starts_with("at is required")
        ));
        for path in [
            "/v1/admin/nothing",
            "/v1/admin/v1/regions/north/facilities",
            "/v1/admin/groups/chat:ops/presence",
            "/v2/regions/north/facilities",
            "/regions/north/facilities",
        ] {
            assert!(
                matches!(Route::parse(path, &[]), Err(ReadError::NotFound(_))),
                "{path}"
            );
        }
        assert_eq!(
            Access::of_path("/v1/admin/regions/north/facilities"),
            Access::Backend
        );
        assert_eq!(
            Access::of_path("/v1/regions/north/facilities"),
            Access::User
        );
        assert_eq!(
            Access::of_path("/v1/regions/admin/facilities"),
            Access::User
        );

        // The declared routes, as the local stack matches them.
        let m = route_of_path("/v1/admin/facilities/st-olav-icu/sessions").unwrap();
        assert_eq!(
            m,
            RoutePath {
                access: Access::Backend,
                template: "/v1/admin/facilities/{facility}/sessions",
                param: ("facility", "st-olav-icu"),
            }
        );
        let m = route_of_path("/v1/regions/north/facilities").unwrap();
        assert_eq!(
            (m.access, m.template, m.param),
            (
                Access::User,
                "/v1/regions/{region}/facilities",
                ("region", "north")
            )
        );
        for path in [
            "/v1/admin/facilities/er/history/",
            "/v1/admin/facilities//history",
            "/v1/admin/facilities/er/nothing",
            "/v1/admin/publish",
            "/v1/admin/groups/chat:ops/presence",
            "/v1/heartbeats",
        ] {
            assert_eq!(route_of_path(path), None, "{path}");
        }
        for (user, backend) in USER_ROUTES.iter().zip(BACKEND_ROUTES) {
            assert_eq!(
                backend,
                format!("{ADMIN_PREFIX}{}", user.strip_prefix("/v1/").unwrap())
            );
        }
    }

    #[test]
    fn each_access_takes_its_own_credentials_only() {
        let secret = b"history-unit-tests-secret-of-32-bytes!";
        let reader = HistoryReader::new(
            Authenticator::hs256(secret),
            Arc::new(crate::facilities::MemoryFacilityStore::new()),
        );
        let identity = Identity {
            user: crate::ids::UserId::parse("ann").unwrap(),
            facility: FacilityId::parse("icu").unwrap(),
            region: RegionId::parse("north").unwrap(),
        };
        let token = crate::auth::DevTokenSigner::new(secret).sign(&identity, 4_102_444_800);
        let bearer = format!("Bearer {token}");
        let arn = "arn:aws:iam::123456789012:user/backend";
        let both = Caller {
            credentials: Credentials::Bearer(Some(&bearer)),
            iam: Some(arn),
        };
        // A user route: the token, whatever IAM identity comes with it.
        assert_eq!(
            reader.authenticate(Access::User, both).unwrap(),
            Reader::User(identity.clone())
        );
        let iam_only = Caller {
            credentials: Credentials::Bearer(None),
            iam: Some(arn),
        };
        assert!(matches!(
            reader.authenticate(Access::User, iam_only),
            Err(ReadError::Unauthorized(_))
        ));
        // A backend route: the IAM identity; a token alone is 401.
        assert_eq!(
            reader.authenticate(Access::Backend, both).unwrap(),
            Reader::Backend(arn.into())
        );
        let token_only = Caller {
            credentials: Credentials::Bearer(Some(&bearer)),
            iam: None,
        };
        let e = reader
            .authenticate(Access::Backend, token_only)
            .unwrap_err();
        assert!(matches!(e, ReadError::NoIamIdentity));
        assert_eq!((e.status(), e.code()), (401, "unauthorized"));
        let user = Reader::User(identity);
        let west = RegionId::parse("west").unwrap();
        assert!(!user.may_read(&west));
        assert!(Reader::Backend(arn.into()).may_read(&west));
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query(Some("at=17&x=a%2Fb")).unwrap(),
            q(&[("at", "17"), ("x", "a/b")])
        );
        assert!(parse_query(Some("at=%zz")).is_err());
    }

    #[test]
    fn availability_counts_online_time_and_the_longest_offline_stretch() {
        let range = Range {
            from_ms: 0,
            to_ms: 1000,
        };
        // Online from before the range; offline 100..400, online 400..900, offline 900..1000.
        let mut a = Availability::new(range, Some(Status::Online));
        a.flip(100, Status::Offline);
        a.flip(400, Status::Online);
        a.flip(900, Status::Offline);
        let r = a.finish();
        assert_eq!((r.flips, r.longest_offline_ms), (3, 300));
        assert!((r.online_share - 0.6).abs() < 1e-9, "{r:?}");
        // Unknown at the start counts as offline.
        let mut a = Availability::new(range, None);
        a.flip(250, Status::Online);
        let r = a.finish();
        assert_eq!((r.flips, r.longest_offline_ms), (1, 250));
        assert!((r.online_share - 0.75).abs() < 1e-9);
        let r = Availability::new(range, Some(Status::Online)).finish();
        assert_eq!((r.online_share, r.flips, r.longest_offline_ms), (1.0, 0, 0));
    }

    /// The read-unit figure docs/architecture.md quotes: availability over 31 days of a busy
    /// facility (a flip every 10 minutes, flip items of ~200 bytes) reads 4 464 flips in
    /// pages of 1 000.
    #[test]
    fn availability_of_a_busy_month_reads_about_110_units() {
        let flips = 31 * 24 * 6;
        assert_eq!(flips, 4464);
        let pages: Vec<usize> = (0..flips)
            .collect::<Vec<_>>()
            .chunks(AVAILABILITY_PAGE)
            .map(|c| c.len() * 200)
            .collect();
        assert_eq!(pages.len(), 5);
        // 892 800 bytes: 219 blocks of 4 KB when each page is rounded up (218 in one piece),
        // half a unit each, eventually consistent.
        assert_eq!(query_read_units(pages), 109.5);
        // Plus the status GetItem (strongly consistent, 1 unit) and the flip before (½).
    }
}
