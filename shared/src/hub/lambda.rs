//! API Gateway WebSocket event helpers shared by the four functions.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

/// The connection id of a WebSocket event, or the 400 response a route gives without one
/// (boxed: a response is large, and the id is what nearly every event has).
pub fn connection_id(
    event: &ApiGatewayWebsocketProxyRequest,
) -> Result<&str, Box<ApiGatewayProxyResponse>> {
    event
        .request_context
        .connection_id
        .as_deref()
        .ok_or_else(|| {
            Box::new(route_response(
                400,
                Some(("bad_request", "event lacks a connection id".into())),
            ))
        })
}

/// A WebSocket route's response: the status (a non-2xx at `$connect` refuses the upgrade)
/// with a JSON error body when it failed.
pub fn route_response(status: u16, error: Option<(&str, String)>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(status);
    if let Some((code, message)) = error {
        r.body = Some(aws_lambda_events::encodings::Body::Text(
            crate::protocol::ErrorBody::new(code, message).to_json(),
        ));
        r.headers.insert(
            "content-type",
            "application/json".parse().expect("static header"),
        );
    }
    r
}
