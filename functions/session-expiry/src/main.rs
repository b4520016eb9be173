use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = session_expiry::Config::from_env(&Env::from_process())?;
    // Redis (TLS included) and a connection to SQS: once, at cold start, side by side.
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let warm_ups = vec![presence::aws::queue(&sdk, &config.push_queue_url)];
    let (sweeper, ()) = tokio::join!(
        session_expiry::build(&config),
        presence::aws::warm_up(warm_ups)
    );
    let sweeper = sweeper?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        let (sweeper, config) = (&sweeper, &config);
        async move {
            let window = session_expiry::window(
                config.sweep_window,
                presence::now_ms(),
                event.context.deadline as i64,
            );
            let report =
                session_expiry::handle(sweeper, event.payload, window, &presence::now_ms).await;
            Ok::<_, Error>(session_expiry::summary(&report))
        }
    }))
    .await
}
