use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;
use presence::hub::setup::{HubConfig, build};

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let hub = build(HubConfig::from_env(&Env::from_process())?).await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest>| {
            let hub = &hub;
            async move {
                Ok::<_, Error>(ws_message::handle(hub, event.payload, presence::now_ms()).await)
            }
        },
    ))
    .await
}
