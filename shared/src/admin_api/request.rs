//! The admin API's routes and request bodies: matched, percent-decoded and validated (a 400
//! names the field, unknown fields are refused) before anything changes.

use super::{AdminError, MAX_BODY_BYTES, PATH_PREFIX, bad, shown};
use crate::hub::MAX_DATA_BYTES;
use crate::ids::{IdError, UserId};
use crate::protocol::Group;
use serde_json::{Map, Value};

/// A route and its path parameters by name, as sent.
pub type Matched<'a> = (Route, Vec<(&'static str, &'a str)>);

/// The six routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Publish,
    Disconnect,
    Remove,
    Ban,
    Unban,
    Presence,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Publish,
        Route::Disconnect,
        Route::Remove,
        Route::Ban,
        Route::Unban,
        Route::Presence,
    ];

    pub fn method(self) -> &'static str {
        match self {
            Self::Publish | Self::Disconnect | Self::Remove | Self::Ban => "POST",
            Self::Unban => "DELETE",
            Self::Presence => "GET",
        }
    }

    /// The path as API Gateway's route declares it.
    pub fn path(self) -> &'static str {
        match self {
            Self::Publish => "/v1/admin/publish",
            Self::Disconnect => "/v1/admin/users/{user}/disconnect",
            Self::Remove => "/v1/admin/groups/{group}/remove",
            Self::Ban => "/v1/admin/groups/{group}/ban",
            Self::Unban => "/v1/admin/groups/{group}/ban/{user}",
            Self::Presence => "/v1/admin/groups/{group}/presence",
        }
    }

    /// API Gateway's route key, `POST /v1/admin/publish`.
    pub fn key(self) -> String {
        format!("{} {}", self.method(), self.path())
    }

    /// The route whose path `path` fits (whatever the method), with its path parameters by
    /// name, as sent (still URL-encoded, if they were). `None`: no route has this path.
    pub fn of_path(path: &str) -> Option<Matched<'_>> {
        let rest = path.strip_prefix(PATH_PREFIX)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let param = |s: &str| !s.is_empty();
        Some(match segments.as_slice() {
            ["publish"] => (Self::Publish, vec![]),
            ["users", u, "disconnect"] if param(u) => (Self::Disconnect, vec![("user", *u)]),
            ["groups", g, "remove"] if param(g) => (Self::Remove, vec![("group", *g)]),
            ["groups", g, "ban"] if param(g) => (Self::Ban, vec![("group", *g)]),
            ["groups", g, "ban", u] if param(g) && param(u) => {
                (Self::Unban, vec![("group", *g), ("user", *u)])
            }
            ["groups", g, "presence"] if param(g) => (Self::Presence, vec![("group", *g)]),
            _ => return None,
        })
    }

    /// The route a request of `method` to `path` is for: 404 when no route has the path,
    /// 405 when the method is not the route's.
    pub fn of<'a>(method: &str, path: &'a str) -> Result<Matched<'a>, AdminError> {
        let Some((route, params)) = Self::of_path(path) else {
            return Err(AdminError::NotFound(format!(
                "no admin route {method} {}; the routes are {}",
                shown(path),
                Self::ALL.map(Route::key).join(", ")
            )));
        };
        if !method.eq_ignore_ascii_case(route.method()) {
            return Err(AdminError::MethodNotAllowed {
                message: format!("{} takes {}, not {method}", route.path(), route.method()),
                allow: route.method(),
            });
        }
        Ok((route, params))
    }
}

/// A validated admin request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `POST /v1/admin/publish`: to a group (`{group, data, from?}`), or to a user's devices
    /// (`{user, data}`, stored in `user:{user}`).
    Publish {
        group: Group,
        from: Option<UserId>,
        data: Value,
    },
    Disconnect {
        user: UserId,
    },
    Remove {
        group: Group,
        user: UserId,
    },
    Ban {
        group: Group,
        user: UserId,
        seconds: Option<u64>,
    },
    Unban {
        group: Group,
        user: UserId,
    },
    Presence {
        group: Group,
    },
}

/// Decodes a URL-encoded path segment (`chat%3Aops`); one already decoded (API Gateway's HTTP
/// APIs pass the path decoded) is unchanged, as no identifier contains `%`.
pub(super) fn percent_decode(name: &str, s: &str) -> Result<String, AdminError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "{name} in the path: bad percent-escape in {}",
                        shown(s)
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{name} in the path is not UTF-8")))
}

/// A path parameter as API Gateway passes it in `pathParameters`: URL-decoded (`None` when it
/// does not decode).
pub fn decode_path_parameter(raw: &str) -> Option<String> {
    percent_decode("parameter", raw).ok()
}

pub(super) fn user_error(field: &str, raw: &str, e: &IdError) -> AdminError {
    bad(format!(
        "{field} must be 1-{} characters of {}, got {}",
        e.max,
        e.allowed,
        shown(raw)
    ))
}

pub(super) fn parse_user(field: &str, raw: &str) -> Result<UserId, AdminError> {
    UserId::parse(raw).map_err(|e| user_error(field, raw, &e))
}

pub(super) fn parse_group(field: &str, raw: &str) -> Result<Group, AdminError> {
    Group::parse(raw).map_err(|e| bad(format!("{field} {}: {e}", shown(raw))))
}

/// A group members are removed from or banned from: a chat group (the automatic ones follow
/// identity and have no members to remove).
pub(super) fn chat_group(raw: &str) -> Result<Group, AdminError> {
    let group = parse_group("group", raw)?;
    if group.is_automatic() {
        return Err(bad(format!(
            "group {}: user:, facility: and region: groups follow identity; only chat groups \
             have members to remove or ban",
            shown(raw)
        )));
    }
    Ok(group)
}

/// The body as a JSON object with only the `allowed` fields (`expected` describes it).
pub(super) fn object(
    body: &[u8],
    allowed: &[&str],
    expected: &str,
) -> Result<Map<String, Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!("body is empty; expected JSON {expected}")));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("body is not valid JSON ({e}); expected {expected}")))?;
    let Value::Object(map) = value else {
        return Err(bad(format!("body must be a JSON object {expected}")));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field {}; this route takes {}",
            shown(k),
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// A route without a body: nothing, or an empty JSON object.
pub(super) fn no_body(body: &[u8]) -> Result<(), AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if m.is_empty() => Ok(()),
        _ => Err(bad("this route takes no body")),
    }
}

/// A string field (`None` when absent; `null` counts as absent only where `nullable`).
pub(super) fn string<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    nullable: bool,
) -> Result<Option<&'a str>, AdminError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) if nullable => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{name} must be a string, not {other}"))),
    }
}

pub(super) fn required_user(map: &Map<String, Value>) -> Result<UserId, AdminError> {
    let raw = string(map, "user", false)?.ok_or_else(|| bad("user is required"))?;
    parse_user("user", raw)
}

impl Request {
    /// Validates a request of `method` to `path` (its path as API Gateway passes it, without
    /// the stage) with `body`.
    pub fn parse(method: &str, path: &str, body: &[u8]) -> Result<Self, AdminError> {
        let (route, params) = Route::of(method, path)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(AdminError::TooLarge(body.len()));
        }
        let param = |name: &str| -> Result<String, AdminError> {
            let raw = params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or_default();
            percent_decode(name, raw)
        };
        Ok(match route {
            Route::Publish => {
                let expected = "{\"group\": ..., \"data\": ..., \"from\"?: ...} or {\"user\": ..., \"data\": ...}";
                let map = object(body, &["group", "user", "data", "from"], expected)?;
                let data = map.get("data").cloned().ok_or_else(|| {
                    bad(format!(
                        "data is required (any JSON value); expected {expected}"
                    ))
                })?;
                let size = data.to_string().len();
                if size > MAX_DATA_BYTES {
                    return Err(bad(format!(
                        "data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}"
                    )));
                }
                let from = string(&map, "from", true)?;
                match (string(&map, "group", false)?, string(&map, "user", false)?) {
                    (Some(_), Some(_)) => {
                        return Err(bad("give either group or user, not both"));
                    }
                    (None, None) => {
                        return Err(bad(format!(
                            "group or user is required; expected {expected}"
                        )));
                    }
                    (Some(group), None) => Request::Publish {
                        group: parse_group("group", group)?,
                        from: from.map(|f| parse_user("from", f)).transpose()?,
                        data,
                    },
                    (None, Some(user)) => {
                        if from.is_some() {
                            return Err(bad(
                                "from is taken with group only: a message to a user comes from \
                                 the backend (from null)",
                            ));
                        }
                        Request::Publish {
                            group: Group::User(parse_user("user", user)?),
                            from: None,
                            data,
                        }
                    }
                }
            }
            Route::Disconnect => {
                let user = parse_user("user", &param("user")?)?;
                no_body(body)?;
                Request::Disconnect { user }
            }
            Route::Remove => {
                let group = chat_group(&param("group")?)?;
                let map = object(body, &["user"], "{\"user\": ...}")?;
                Request::Remove {
                    group,
                    user: required_user(&map)?,
                }
            }
            Route::Ban => {
                let group = chat_group(&param("group")?)?;
                let map = object(
                    body,
                    &["user", "seconds"],
                    "{\"user\": ..., \"seconds\"?: ...}",
                )?;
                let user = required_user(&map)?;
                // The hub bounds it (1..=MAX_BAN_SECONDS) before it changes anything.
                let seconds = match map.get("seconds") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        bad(format!(
                            "seconds must be a whole number of seconds, or absent for a ban \
                             until lifted; got {v}"
                        ))
                    })?),
                };
                Request::Ban {
                    group,
                    user,
                    seconds,
                }
            }
            Route::Unban => {
                let group = chat_group(&param("group")?)?;
                let user = parse_user("user", &param("user")?)?;
                no_body(body)?;
                Request::Unban { group, user }
            }
            Route::Presence => {
                let group = parse_group("group", &param("group")?)?;
                no_body(body)?;
                Request::Presence { group }
            }
        })
    }
}
