//! ws-message: the WebSocket `$default` route and the one-way `heartbeat` and `visibility`
//! routes — every client frame.
//!
//! `$default` has a route response (two-way communication), so the reply to the caller —
//! `pong`, `joined`, `sent`, `snapshot`, or an `error` frame for bad input — is this
//! function's response body, which API Gateway sends back on the same connection without a
//! management-API call. The one-way routes have none: a heartbeat or visibility frame costs
//! one billed message; only its errors are posted back. Frames for anyone else (the user's
//! other devices, a group) are posted through the management API.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::{Hub, ServerMessage, route_response};

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::dynamodb("DescribeTable", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("GetItem", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("PutItem", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("DeleteItem", Table("CONNECTIONS_TABLE")),
        // The session a socket carries, and whether its page is hidden.
        Call::dynamodb("UpdateItem", Table("CONNECTIONS_TABLE")),
        // Members of a free group (the table), a user's connections and the automatic groups.
        Call::dynamodb("Query", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-user")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-facility")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-region")),
        // Messages sent to groups: the group's head (its newest seq), then the message, the
        // head and the evicted oldest in one transaction; `history` queries the group.
        Call::dynamodb("GetItem", Table("MESSAGES_TABLE")),
        Call::dynamodb("Query", Table("MESSAGES_TABLE")),
        Call::dynamodb("TransactWriteItems", Table("MESSAGES_TABLE")).transacting(&[
            "UpdateItem",
            "PutItem",
            "DeleteItem",
        ]),
        Call::management_api("PostToConnection", Connections("WEBSOCKET_ENDPOINT")),
        Call::management_api("GetConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Closing a socket whose token expired past the grace.
        Call::management_api("DeleteConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Flips of socket heartbeats and of gone connections go to the push queue.
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
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
    let body = match (event.body.as_deref(), event.is_base64_encoded) {
        (Some(b), false) => b,
        (_, true) => {
            let reply = ServerMessage::error(
                "bad_request",
                "binary frames are not supported; send JSON text",
                None,
                None,
            );
            return with_reply(200, &reply);
        }
        (None, false) => "",
    };
    match hub.message(id, body, now_ms).await {
        Ok(Some(reply)) => with_reply(200, &reply),
        // A one-way action: its route has no route response, so nothing goes back.
        Ok(None) => route_response(200, None),
        Err(e) => {
            tracing::error!(connection = %id, error = %e, "message not handled");
            let reply = ServerMessage::error(e.code(), e.public_message(), None, None);
            with_reply(500, &reply)
        }
    }
}

/// The route response: `status`, and the frame for the caller as the body.
fn with_reply(status: u16, reply: &ServerMessage) -> ApiGatewayProxyResponse {
    let mut r = route_response(status, None);
    r.body = Some(Body::Text(reply.to_json()));
    r
}
