//! Builds the Lambda events API Gateway sends to the `$connect`, `$default` and `$disconnect`
//! integrations (compare the `example-apigw-websocket-request*.json` fixtures of
//! `aws_lambda_events`).

use std::collections::HashMap;

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::query_map::QueryMap;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Route;
use crate::ids::{format_request_time, new_id, now_ms};

/// The `requestContext.apiId` of every event (a real one is 10 lowercase characters).
pub(crate) const API_ID: &str = "local";

/// What an event needs to know about its connection; fixed at `$connect`.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    pub(crate) id: String,
    pub(crate) connected_at_ms: i64,
    pub(crate) source_ip: String,
    pub(crate) user_agent: Option<String>,
}

/// A data frame received from a client.
#[derive(Debug)]
pub(crate) enum Inbound {
    Text(String),
    Binary(Vec<u8>),
}

/// The per-API parts of every event.
#[derive(Debug)]
pub(crate) struct EventFactory {
    pub(crate) stage: String,
    /// `host:port` of the API, as `requestContext.domainName`.
    pub(crate) domain_name: String,
    pub(crate) port: u16,
}

impl EventFactory {
    /// `$connect`: the upgrade request's headers and query string, as the authorizer and the
    /// connect handler see them in API Gateway.
    pub(crate) fn connect(
        &self,
        conn: &ConnectionInfo,
        request_headers: &HeaderMap,
        query: Option<&str>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut event = self.base(conn, &Route::Connect);
        let mut headers = request_headers.clone();
        // API Gateway sits behind a load balancer and adds these; handlers read the client
        // address from X-Forwarded-For, so provide them when the client did not.
        insert_if_absent(&mut headers, "x-forwarded-for", &conn.source_ip);
        insert_if_absent(&mut headers, "x-forwarded-port", &self.port.to_string());
        insert_if_absent(&mut headers, "x-forwarded-proto", "http");
        event.multi_value_headers = headers.clone();
        event.headers = headers;
        let (single, multi) = query_maps(query);
        event.query_string_parameters = single;
        event.multi_value_query_string_parameters = multi;
        event
    }

    /// `$default` or a custom route: one data message. Text goes as is; binary goes
    /// base64-encoded with `isBase64Encoded: true`, like API Gateway does.
    pub(crate) fn message(
        &self,
        conn: &ConnectionInfo,
        route: &Route,
        inbound: Inbound,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut event = self.base(conn, route);
        event.request_context.message_id = Some(new_id());
        match inbound {
            Inbound::Text(text) => {
                event.body = Some(text);
                event.is_base64_encoded = false;
            }
            Inbound::Binary(bytes) => {
                event.body = Some(STANDARD.encode(bytes));
                event.is_base64_encoded = true;
            }
        }
        event
    }

    /// `$disconnect`, with the close code and reason (API Gateway's real event carries only a
    /// few headers, no query string and no body).
    pub(crate) fn disconnect(
        &self,
        conn: &ConnectionInfo,
        status_code: u16,
        reason: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut event = self.base(conn, &Route::Disconnect);
        let mut headers = HeaderMap::new();
        insert_if_absent(&mut headers, "host", &self.domain_name);
        insert_if_absent(&mut headers, "x-forwarded-for", &conn.source_ip);
        event.multi_value_headers = headers.clone();
        event.headers = headers;
        event.request_context.disconnect_status_code = Some(i64::from(status_code));
        event.request_context.disconnect_reason = Some(reason.to_owned());
        event
    }

    fn base(&self, conn: &ConnectionInfo, route: &Route) -> ApiGatewayWebsocketProxyRequest {
        let now = now_ms();
        let request_id = new_id();
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        let ctx = &mut event.request_context;
        ctx.route_key = Some(route.route_key().to_owned());
        ctx.event_type = Some(route.event_type().to_owned());
        ctx.connection_id = Some(conn.id.clone());
        ctx.connected_at = conn.connected_at_ms;
        ctx.domain_name = Some(self.domain_name.clone());
        ctx.stage = Some(self.stage.clone());
        ctx.apiid = Some(API_ID.to_owned());
        ctx.extended_request_id = Some(request_id.clone());
        ctx.request_id = Some(request_id);
        ctx.request_time = Some(format_request_time(now));
        ctx.request_time_epoch = now;
        ctx.message_direction = Some("IN".to_owned());
        ctx.identity.source_ip = Some(conn.source_ip.clone());
        ctx.identity.user_agent = conn.user_agent.clone();
        event.is_base64_encoded = false;
        event
    }
}

fn insert_if_absent(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let name = HeaderName::from_static(name);
    if headers.contains_key(&name) {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `queryStringParameters` (the last value of each key, as API Gateway does) and
/// `multiValueQueryStringParameters` (all of them, in order).
fn query_maps(query: Option<&str>) -> (QueryMap, QueryMap) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return (QueryMap::default(), QueryMap::default());
    };
    let multi: QueryMap = match query.parse() {
        Ok(map) => map,
        Err(never) => match never {},
    };
    let single: HashMap<String, String> = multi
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    (single.into(), multi)
}

/// The `User-Agent` of the upgrade request, for `identity.userAgent` and `GetConnection`.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory() -> EventFactory {
        EventFactory {
            stage: "local".to_owned(),
            domain_name: "127.0.0.1:3001".to_owned(),
            port: 3001,
        }
    }

    fn conn() -> ConnectionInfo {
        ConnectionInfo {
            id: "L0SM9cOFvHcCIhw=".to_owned(),
            connected_at_ms: 1_707_503_007_396,
            source_ip: "127.0.0.1".to_owned(),
            user_agent: Some("test".to_owned()),
        }
    }

    /// The JSON a Lambda would receive has API Gateway's field names, and reads back.
    #[test]
    fn events_serialize_like_api_gateway() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        let connect = factory().connect(&conn(), &headers, Some("token=t&session_id=s1"));
        let json = serde_json::to_value(&connect).unwrap();
        let ctx = &json["requestContext"];
        assert_eq!(ctx["routeKey"], "$connect");
        assert_eq!(ctx["eventType"], "CONNECT");
        assert_eq!(ctx["connectionId"], "L0SM9cOFvHcCIhw=");
        assert_eq!(ctx["connectedAt"], 1_707_503_007_396_i64);
        assert_eq!(ctx["apiId"], "local");
        assert_eq!(ctx["stage"], "local");
        assert_eq!(ctx["domainName"], "127.0.0.1:3001");
        assert_eq!(ctx["messageDirection"], "IN");
        assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
        assert!(ctx["requestTimeEpoch"].as_i64().unwrap() > 0);
        assert_eq!(json["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(json["headers"]["sec-websocket-version"], "13");
        // (aws_lambda_events writes query values as arrays; reading accepts both forms.)
        let back: ApiGatewayWebsocketProxyRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, connect);
        assert_eq!(back.query_string_parameters.first("token"), Some("t"));
        assert_eq!(back.query_string_parameters.first("session_id"), Some("s1"));

        let message = factory().message(&conn(), &Route::Default, Inbound::Binary(vec![1, 2, 3]));
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["requestContext"]["routeKey"], "$default");
        assert_eq!(json["requestContext"]["eventType"], "MESSAGE");
        assert!(json["requestContext"]["messageId"].is_string());
        assert_eq!(json["body"], "AQID");
        assert_eq!(json["isBase64Encoded"], true);

        let custom = factory().message(
            &conn(),
            &Route::Custom("visibility".to_owned()),
            Inbound::Text(r#"{"action":"visibility"}"#.to_owned()),
        );
        let json = serde_json::to_value(&custom).unwrap();
        assert_eq!(json["requestContext"]["routeKey"], "visibility");
        assert_eq!(json["requestContext"]["eventType"], "MESSAGE");
        assert_eq!(json["body"], r#"{"action":"visibility"}"#);
        assert_eq!(json["isBase64Encoded"], false);

        let disconnect = factory().disconnect(&conn(), 1001, "Going away");
        let json = serde_json::to_value(&disconnect).unwrap();
        assert_eq!(json["requestContext"]["routeKey"], "$disconnect");
        assert_eq!(json["requestContext"]["eventType"], "DISCONNECT");
        assert_eq!(json["requestContext"]["disconnectStatusCode"], 1001);
        assert_eq!(json["requestContext"]["disconnectReason"], "Going away");
    }

    #[test]
    fn query_keeps_last_single_value_and_all_multi_values() {
        let (single, multi) = query_maps(Some("token=t&session_id=s1&a=1&a=2&e=x%20y"));
        assert_eq!(single.first("token"), Some("t"));
        assert_eq!(single.first("session_id"), Some("s1"));
        assert_eq!(single.first("a"), Some("2"));
        assert_eq!(single.first("e"), Some("x y"));
        assert_eq!(multi.all("a"), Some(vec!["1", "2"]));
        let (single, _) = query_maps(None);
        assert!(single.is_empty());
    }
}
