//! ws-connect: the WebSocket `$connect` route.
//!
//! `?token=<JWT>` is verified (401 refuses the upgrade, nothing is written); the connection
//! is registered in its user's, facility's and region's groups; with `&session_id=` that
//! session is online from now until `$disconnect`.

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::{Hub, HubError, route_response};

pub async fn handle(
    hub: &Hub,
    event: ApiGatewayWebsocketProxyRequest,
    now_ms: i64,
) -> ApiGatewayProxyResponse {
    let id = match presence::hub::connection_id(&event) {
        Ok(id) => id,
        Err(response) => return response,
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
            let code = match &e {
                HubError::Unauthorized(_) => "unauthorized",
                HubError::BadRequest(_) => "bad_request",
                HubError::Unavailable(_) => "unavailable",
            };
            tracing::info!(connection = %id, status = e.status(), error = %e, "connect refused");
            let message = if matches!(e, HubError::Unavailable(_)) {
                "the service is unavailable; retry shortly".to_owned()
            } else {
                e.to_string()
            };
            route_response(e.status(), Some((code, message)))
        }
    }
}
