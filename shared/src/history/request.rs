//! A read request: its route, query parameters, time range and cursor, validated.

use super::*;

/// A half-open time range `[from_ms, to_ms)`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Whose routes a path is on, as its prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `/v1/regions/...`, `/v1/facilities/...`: a user's token (or the claims of the JWT
    /// authorizer), which reads its own region only.
    User,
    /// The same routes under `/v1/admin/` ([`ADMIN_PREFIX`]): the team's backend, with IAM
    /// authorization (an IAM identity in the request context), which reads every region.
    Backend,
}

/// The backend's routes are the user routes' paths with `/v1/` replaced by this.
pub const ADMIN_PREFIX: &str = "/v1/admin/";

/// The user routes, as API Gateway declares them (`template.yaml`).
pub const USER_ROUTES: [&str; 4] = [
    "/v1/regions/{region}/facilities",
    "/v1/facilities/{facility}/history",
    "/v1/facilities/{facility}/sessions",
    "/v1/facilities/{facility}/availability",
];

/// The backend's routes (IAM authorization), as API Gateway declares them: [`USER_ROUTES`]
/// under [`ADMIN_PREFIX`].
pub const BACKEND_ROUTES: [&str; 4] = [
    "/v1/admin/regions/{region}/facilities",
    "/v1/admin/facilities/{facility}/history",
    "/v1/admin/facilities/{facility}/sessions",
    "/v1/admin/facilities/{facility}/availability",
];

impl Access {
    /// Whose route `path` is: [`Access::Backend`] under [`ADMIN_PREFIX`], else
    /// [`Access::User`]. [`Route::parse`] reads the same prefix, so a path parsed as one of
    /// the backend's routes is always [`Access::Backend`].
    pub fn of_path(path: &str) -> Access {
        split(path).0
    }

    /// The routes of this access, as API Gateway declares them.
    pub fn routes(self) -> [&'static str; 4] {
        match self {
            Self::User => USER_ROUTES,
            Self::Backend => BACKEND_ROUTES,
        }
    }
}

/// The access of `path` and its segments after `/v1/` (or after [`ADMIN_PREFIX`]); `None`
/// when it is under neither.
fn split(path: &str) -> (Access, Option<std::str::Split<'_, char>>) {
    if let Some(rest) = path.strip_prefix(ADMIN_PREFIX) {
        return (Access::Backend, Some(rest.split('/')));
    }
    (
        Access::User,
        path.strip_prefix("/v1/").map(|rest| rest.split('/')),
    )
}

/// A request path matched against the declared routes, before any validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath<'a> {
    pub access: Access,
    /// The route as API Gateway declares it: `/v1/admin/facilities/{facility}/history`.
    pub template: &'static str,
    /// Its path parameter (`region` or `facility`) and the value sent, as sent.
    pub param: (&'static str, &'a str),
}

/// The declared route (of [`USER_ROUTES`] and [`BACKEND_ROUTES`]) whose path `path` is,
/// exactly (no trailing `/`), as API Gateway matches it; `None` when none is. A parameter is
/// any non-empty segment (its value is validated by [`Route::parse`]).
pub fn route_of_path(path: &str) -> Option<RoutePath<'_>> {
    let (access, Some(segments)) = split(path) else {
        return None;
    };
    let segments: Vec<&str> = segments.collect();
    let (index, param) = match segments.as_slice() {
        ["regions", region, "facilities"] if !region.is_empty() => (0, ("region", *region)),
        ["facilities", id, kind] if !id.is_empty() => {
            let index = match *kind {
                "history" => 1,
                "sessions" => 2,
                "availability" => 3,
                _ => return None,
            };
            (index, ("facility", *id))
        }
        _ => return None,
    };
    Some(RoutePath {
        access,
        template: access.routes()[index],
        param,
    })
}

/// What a request asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/regions/{region}/facilities` (and `/v1/admin/regions/{region}/facilities`)
    Region { region: RegionId },
    /// `GET /v1/facilities/{facility}/history?from=&to=&limit=&cursor=` (and under
    /// `/v1/admin/`)
    History {
        facility: FacilityId,
        range: Range,
        limit: usize,
        cursor: Option<FlipKey>,
    },
    /// `GET /v1/facilities/{facility}/sessions?at=`
    Sessions { facility: FacilityId, at_ms: i64 },
    /// `GET /v1/facilities/{facility}/availability?from=&to=`
    Availability { facility: FacilityId, range: Range },
}

/// Decodes a raw query string (`a=1&b=%2F`) into its pairs, in order.
pub fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, ReadError> {
    let Some(raw) = raw.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, ReadError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        bad(format!("query string: bad percent-escape in {}", shown(s)))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad("query string: not UTF-8"))
}

/// The query parameters of one route: each known name at most once, nothing else.
struct Params<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Params<'a> {
    fn new(pairs: &'a [(String, String)], allowed: &[&str]) -> Result<Self, ReadError> {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in pairs {
            if !allowed.contains(&k.as_str()) {
                let takes = if allowed.is_empty() {
                    "no parameters".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(bad(format!(
                    "unknown parameter {}; this route takes {takes}",
                    shown(k)
                )));
            }
            if !seen.insert(k.as_str()) {
                return Err(bad(format!("parameter {k} is given more than once")));
            }
        }
        Ok(Self { pairs })
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A time in ms since the epoch: exactly 13 digits.
    fn time(&self, name: &str) -> Result<i64, ReadError> {
        let v = self.get(name).ok_or_else(|| {
            bad(format!(
                "{name} is required: a time in ms since the epoch (13 digits)"
            ))
        })?;
        if v.len() != 13 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "{name} must be a time in ms since the epoch (13 digits), got {}",
                shown(v)
            )));
        }
        v.parse()
            .map_err(|_| bad(format!("{name} is out of range: {}", shown(v))))
    }

    fn range(&self) -> Result<Range, ReadError> {
        let (from_ms, to_ms) = (self.time("from")?, self.time("to")?);
        if from_ms >= to_ms {
            return Err(bad(format!("from ({from_ms}) must be before to ({to_ms})")));
        }
        if to_ms - from_ms > MAX_RANGE_MS {
            return Err(bad(format!(
                "from..to spans {} ms; the range may span at most 31 days ({MAX_RANGE_MS} ms)",
                to_ms - from_ms
            )));
        }
        Ok(Range { from_ms, to_ms })
    }

    fn limit(&self) -> Result<usize, ReadError> {
        let Some(v) = self.get("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        v.parse::<usize>()
            .ok()
            .filter(|n| v.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, got {}",
                    shown(v)
                ))
            })
    }
}

/// The opaque cursor of a history page: the base64url (unpadded) of the sort key of the last
/// flip returned.
pub fn encode_cursor(key: FlipKey) -> String {
    URL_SAFE_NO_PAD.encode(key.sort_key())
}

/// Reads a cursor made by [`encode_cursor`]; it must lie in `range` (a cursor belongs to the
/// range it was returned for).
pub fn decode_cursor(cursor: &str, range: Range) -> Result<FlipKey, ReadError> {
    let malformed = || {
        bad(format!(
            "cursor is malformed: pass the cursor of the previous page as it came, got {}",
            shown(cursor)
        ))
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
    let sk = std::str::from_utf8(&raw).map_err(|_| malformed())?;
    let key = FlipKey::parse_sort_key(sk).ok_or_else(malformed)?;
    if key.since_ms < range.from_ms || key.since_ms >= range.to_ms {
        return Err(bad(
            "cursor does not belong to this from..to range: repeat the from and to of the \
             request that returned it",
        ));
    }
    Ok(key)
}

impl Route {
    /// The route of a `GET` to `path` with these query parameters, every value validated. A
    /// backend's path (under [`ADMIN_PREFIX`]) is the route of the user path it repeats:
    /// whose route it is, is [`Access::of_path`]'s.
    pub fn parse(path: &str, query: &[(String, String)]) -> Result<Route, ReadError> {
        let not_found = || ReadError::NotFound(format!("no route GET {}", shown(path)));
        let (_, Some(segments)) = split(path.trim_end_matches('/')) else {
            return Err(not_found());
        };
        let segments: Vec<&str> = segments.collect();
        let facility = |id: &str| {
            FacilityId::parse(id).map_err(|e| bad(format!("path parameter facility: {e}")))
        };
        match segments.as_slice() {
            ["regions", region, "facilities"] => {
                Params::new(query, &[])?;
                let region = RegionId::parse(region)
                    .map_err(|e| bad(format!("path parameter region: {e}")))?;
                Ok(Route::Region { region })
            }
            ["facilities", id, "history"] => {
                let p = Params::new(query, &["from", "to", "limit", "cursor"])?;
                let facility = facility(id)?;
                let range = p.range()?;
                let limit = p.limit()?;
                let cursor = p
                    .get("cursor")
                    .map(|c| decode_cursor(c, range))
                    .transpose()?;
                Ok(Route::History {
                    facility,
                    range,
                    limit,
                    cursor,
                })
            }
            ["facilities", id, "sessions"] => {
                let p = Params::new(query, &["at"])?;
                Ok(Route::Sessions {
                    facility: facility(id)?,
                    at_ms: p.time("at")?,
                })
            }
            ["facilities", id, "availability"] => {
                let p = Params::new(query, &["from", "to"])?;
                Ok(Route::Availability {
                    facility: facility(id)?,
                    range: p.range()?,
                })
            }
            _ => Err(not_found()),
        }
    }
}
