use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;
use presence::sessions::RedisConnection;
use session_expiry::{Config, aws_ports, handle, service, summary, warm_ups, window};

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = Config::from_env(&Env::from_process())?;
    // The SDK configuration, Redis (TLS included) and a connection to SQS: once, at cold
    // start, side by side.
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let (redis, ()) = tokio::join!(
        RedisConnection::connect(&config.redis),
        presence::aws::warm_up(warm_ups(&config, &sdk))
    );
    let sweeper = service(&config, redis?, &aws_ports(&config, &sdk));
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        let (sweeper, config) = (&sweeper, &config);
        async move {
            let now = presence::now_ms();
            let window = window(config.sweep_window, now, event.context.deadline as i64);
            let report = handle(sweeper, event.payload, window, &presence::now_ms).await;
            Ok::<_, Error>(summary(&report))
        }
    }))
    .await
}
