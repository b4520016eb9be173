//! ws-disconnect: the WebSocket `$disconnect` route.
//!
//! Removes the connection (never the user's memberships) and ends the session bound to it.
//! Idempotent: API Gateway may deliver it late, or a push may have found the connection gone
//! first.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::{Hub, route_response};

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::dynamodb("DescribeTable", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("DeleteItem", Table("CONNECTIONS_TABLE")),
        // The user's other connections and groups: the last device gone (member.offline).
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-user")),
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
        // Built by the shared warm-up list (presence::hub::setup) and dropped unsent.
        Call::management_api("GetConnection", Connections("WEBSOCKET_ENDPOINT")).never_sent(),
        // The partition ledger (facilities table), when a partition starts an epoch.
        Call::dynamodb("UpdateItem", Table("FACILITIES_TABLE")),
    ]
};

pub async fn handle(
    hub: &Hub,
    event: ApiGatewayWebsocketProxyRequest,
    now_ms: i64,
) -> ApiGatewayProxyResponse {
    let id = match presence::hub::connection_id(&event) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match hub.disconnect(id, now_ms).await {
        Ok(removed) => {
            tracing::info!(connection = %id, known = removed.is_some(), code = ?event.request_context.disconnect_status_code, "disconnected");
            route_response(200, None)
        }
        Err(e) => {
            // The connection item still expires by TTL; the session by its deadline.
            tracing::error!(connection = %id, error = %e, "disconnect not recorded");
            route_response(500, Some(("unavailable", "disconnect not recorded".into())))
        }
    }
}
