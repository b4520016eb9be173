//! The WebSocket API's routes, wired to the ws-* functions' own handlers.

use super::billing::{Function, Meter};
use crate::{Route, WebSocketApiConfig, WebSocketRoutes};
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use presence::hub::Hub;
use std::sync::{Arc, OnceLock};

/// The one-way custom routes of `template.yaml`, integrated with ws-message like `$default`.
pub const ONE_WAY_ROUTES: [&str; 2] = ["heartbeat", "visibility"];

/// The WebSocket routes wired to the real ws-connect, ws-disconnect and ws-message handlers
/// over a [`Hub`] (set once it exists: the hub needs the API's endpoint first): `$default`
/// and the custom routes go to ws-message.
#[derive(Debug, Default)]
pub struct HubRoutes {
    hub: OnceLock<Hub>,
    /// Counts each invocation, when set.
    meter: Option<Arc<Meter>>,
}

impl HubRoutes {
    /// Routes whose invocations `meter` counts (the ws-* functions' Lambda invocations).
    pub fn metered(meter: Arc<Meter>) -> Self {
        Self {
            hub: OnceLock::new(),
            meter: Some(meter),
        }
    }

    /// The API these routes expect, as `template.yaml` defines it: `$default` with a route
    /// response (ws-message's replies are its response bodies), and the one-way custom routes
    /// [`ONE_WAY_ROUTES`]. Limits are `base`'s.
    pub fn api_config(base: WebSocketApiConfig) -> WebSocketApiConfig {
        WebSocketApiConfig {
            default_route_response: true,
            one_way_routes: ONE_WAY_ROUTES.iter().map(|&key| key.to_owned()).collect(),
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
        type Handler<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = ApiGatewayProxyResponse> + Send + 'a>,
        >;
        let (function, handler): (Function, Handler<'_>) = match route {
            Route::Connect => (
                Function::WsConnect,
                Box::pin(ws_connect::handle(hub, event, now)),
            ),
            Route::Disconnect => (
                Function::WsDisconnect,
                Box::pin(ws_disconnect::handle(hub, event, now)),
            ),
            // The custom routes are integrated with ws-message, as `$default` is.
            Route::Default | Route::Custom(_) => (
                Function::WsMessage,
                Box::pin(ws_message::handle(hub, event, now)),
            ),
        };
        match &self.meter {
            Some(meter) => meter.invoke(function, handler).await,
            None => handler.await,
        }
    }
}
