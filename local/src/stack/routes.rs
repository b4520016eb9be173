//! The WebSocket API's routes, wired to the ws-* functions' own handlers.

use crate::{Route, WebSocketApiConfig, WebSocketRoutes};
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::Hub;
use std::sync::OnceLock;

/// The three WebSocket routes wired to the real ws-connect, ws-disconnect and ws-message
/// handlers over a [`Hub`] (set once it exists: the hub needs the API's endpoint first).
#[derive(Debug, Default)]
pub struct HubRoutes {
    hub: OnceLock<Hub>,
}

impl HubRoutes {
    /// The API these routes expect, as `template.yaml` defines it: `$default` with a route
    /// response (ws-message's replies are its response bodies). Limits are `base`'s.
    pub fn api_config(base: WebSocketApiConfig) -> WebSocketApiConfig {
        WebSocketApiConfig {
            default_route_response: true,
            ..base
        }
    }

    /// Serves `hub` from now on (once; until then every route answers 503).
    pub fn serve(&self, hub: Hub) {
        let _ = self.hub.set(hub);
    }
}

#[async_trait::async_trait]
impl WebSocketRoutes for HubRoutes {
    async fn invoke(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let Some(hub) = self.hub.get() else {
            return presence::hub::route_response(503, Some(("unavailable", "starting".into())));
        };
        let now = presence::now_ms();
        match route {
            Route::Connect => ws_connect::handle(hub, event, now).await,
            Route::Disconnect => ws_disconnect::handle(hub, event, now).await,
            Route::Default => ws_message::handle(hub, event, now).await,
        }
    }
}
