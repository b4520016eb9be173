//! The state every request and connection task of the local WebSocket API shares.

use super::*;

/// State shared by the HTTP handlers and the connection tasks.
pub(crate) struct Shared {
    pub(crate) config: WebSocketApiConfig,
    pub(crate) routes: Arc<dyn WebSocketRoutes>,
    pub(crate) events: EventFactory,
    /// Open connections by id: registered when `$connect` accepts, removed when the connection
    /// starts closing.
    pub(crate) connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// Set once by `shutdown()` (or drop): stops the server and closes every connection.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Accepted connections whose `$disconnect` has not returned yet.
    pub(crate) live: watch::Sender<usize>,
    /// Decides which `$disconnect` events are dropped (`drop_disconnect_rate`).
    pub(crate) dice: Mutex<crate::rng::Rng>,
    /// What API Gateway would bill.
    pub(crate) meter: crate::WebSocketMeter,
}

impl Shared {
    pub(crate) fn new(
        config: WebSocketApiConfig,
        routes: Arc<dyn WebSocketRoutes>,
        domain_name: String,
        port: u16,
    ) -> Arc<Self> {
        Arc::new(Self {
            events: EventFactory {
                stage: config.stage.clone(),
                domain_name,
                port,
            },
            config,
            routes,
            connections: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
            live: watch::Sender::new(0),
            dice: Mutex::new(crate::rng::Rng::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
            )),
            meter: crate::WebSocketMeter::default(),
        })
    }

    /// The registry. Its critical sections cannot panic, so a poisoned lock is still consistent.
    pub(crate) fn registry(&self) -> MutexGuard<'_, HashMap<String, Arc<Connection>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an accepted connection; its billed connection time starts.
    pub(crate) fn register(&self, connection: Arc<Connection>) {
        let connected_at_ms = connection.info.connected_at_ms;
        let replaced = self
            .registry()
            .insert(connection.info.id.clone(), connection);
        self.meter.opened(connected_at_ms);
        if let Some(old) = replaced {
            // Ids are unique; should one repeat, its first connection ends here.
            self.meter
                .closed(old.info.connected_at_ms, crate::ids::now_ms());
        }
    }

    pub(crate) fn lookup(&self, id: &str) -> Option<Arc<Connection>> {
        self.registry().get(id).cloned()
    }

    /// Forgets a connection (once: later calls return `None`); its billed connection time
    /// ends.
    pub(crate) fn deregister(&self, id: &str) -> Option<Arc<Connection>> {
        let removed = self.registry().remove(id);
        if let Some(connection) = &removed {
            self.meter
                .closed(connection.info.connected_at_ms, crate::ids::now_ms());
        }
        removed
    }

    pub(crate) fn live_guard(self: &Arc<Self>) -> LiveGuard {
        self.live.send_modify(|count| *count += 1);
        LiveGuard(self.clone())
    }

    /// Invokes an integration in its own task, so that a panicking handler becomes a 502 (as a
    /// failed Lambda invocation does in API Gateway) instead of taking the connection down.
    pub(crate) async fn invoke(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let routes = self.routes.clone();
        let route_key = route.route_key().to_owned();
        match tokio::spawn(async move { routes.invoke(route, event).await }).await {
            Ok(response) => response,
            Err(join_error) => {
                error!(route = %route_key, %join_error, "integration failed");
                let mut response = ApiGatewayProxyResponse::default();
                response.status_code = 502;
                response
            }
        }
    }

    pub(crate) async fn disconnect(&self, info: &ConnectionInfo, code: u16, reason: &str) {
        let rate = self.config.drop_disconnect_rate;
        if rate > 0.0 {
            let roll = self
                .dice
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unit();
            if roll < rate {
                tracing::debug!(connection = %info.id, "$disconnect dropped (best effort, as in API Gateway)");
                return;
            }
        }
        let event = self.events.disconnect(info, code, reason);
        self.invoke(Route::Disconnect, event).await;
    }
}

/// Counts an accepted connection as live until dropped (after its `$disconnect`).
#[derive(Debug)]
pub(crate) struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0
            .live
            .send_modify(|count| *count = count.saturating_sub(1));
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}
