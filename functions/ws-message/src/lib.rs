//! ws-message: the WebSocket `$default` route — every client frame.
//!
//! Replies (and `error` frames for bad input) are posted to the caller through the
//! management API; the route's own response carries nothing to the client.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::{Hub, ServerMessage, route_response};

pub async fn handle(
    hub: &Hub,
    event: ApiGatewayWebsocketProxyRequest,
    now_ms: i64,
) -> ApiGatewayProxyResponse {
    let id = match presence::hub::connection_id(&event) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let body = match (event.body.as_deref(), event.is_base64_encoded) {
        (Some(b), false) => b,
        (_, true) => {
            let reply = ServerMessage::error(
                "bad_request",
                "binary frames are not supported; send JSON text",
                None,
                None,
            );
            hub.deliver(&[id.to_owned()], &reply.to_json(), now_ms)
                .await;
            return route_response(200, None);
        }
        (None, false) => "",
    };
    match hub.message(id, body, now_ms).await {
        Ok(()) => route_response(200, None),
        Err(e) => {
            tracing::error!(connection = %id, error = %e, "message not handled");
            let reply = ServerMessage::error(
                "unavailable",
                "the service is unavailable; retry shortly",
                None,
                None,
            );
            hub.deliver(&[id.to_owned()], &reply.to_json(), now_ms)
                .await;
            route_response(500, None)
        }
    }
}
