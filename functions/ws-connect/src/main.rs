use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;
use presence::hub::setup::{WsFunction, build_reading_secret};

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    // Configuration, the token secret, Redis, the AWS clients and their connections: once,
    // at cold start.
    let hub = build_reading_secret(Env::from_process(), WsFunction::Connect).await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest>| {
            let hub = &hub;
            async move {
                Ok::<_, Error>(ws_connect::handle(hub, event.payload, presence::now_ms()).await)
            }
        },
    ))
    .await
}
