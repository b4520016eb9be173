//! ws-connect: the WebSocket `$connect` route.
//!
//! `?token=<JWT>` is verified (401 refuses the upgrade, nothing is written); the connection
//! is registered in its user's, facility's and region's groups; with `&session_id=` that
//! session is online from now until `$disconnect`.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::{Hub, route_response};

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::dynamodb("DescribeTable", Table("CONNECTIONS_TABLE")),
        // Register; remove again when the session could not start.
        Call::dynamodb("PutItem", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("DeleteItem", Table("CONNECTIONS_TABLE")),
        // The user's other connections and groups: a first device announces member.online.
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-user")),
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
        // At cold start, only when JWT_SECRET_ARN is set.
        Call::secrets_manager("GetSecretValue", Secret("JWT_SECRET_ARN")),
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
    let query = &event.query_string_parameters;
    match hub
        .connect(id, query.first("token"), query.first("session_id"), now_ms)
        .await
    {
        Ok(c) => {
            tracing::info!(connection = %c.id, user = %c.user, facility = %c.facility, "connected");
            route_response(200, None)
        }
        Err(e) => {
            tracing::info!(connection = %id, status = e.status(), error = %e, "connect refused");
            route_response(e.status(), Some((e.code(), e.public_message())))
        }
    }
}
