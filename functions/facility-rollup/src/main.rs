use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use facility_rollup::{Config, aws_ports, handle, service, warm_ups};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;
use presence::sessions::RedisConnection;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = Config::from_env(&Env::from_process())?;
    // The SDK configuration, Redis (TLS included) and connections to SQS and DynamoDB:
    // once, at cold start, side by side.
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let (redis, ()) = tokio::join!(
        RedisConnection::connect(&config.redis),
        presence::aws::warm_up(warm_ups(&config, &sdk))
    );
    let rollup = service(&config, redis?, &aws_ports(&config, &sdk));
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        let rollup = &rollup;
        async move { Ok::<_, Error>(handle(rollup, event.payload, presence::now_ms()).await?) }
    }))
    .await
}
