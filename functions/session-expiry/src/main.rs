use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;
use session_expiry::{Config, handle, service, summary, warm_ups, window};

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = Config::from_env(&Env::from_process())?;
    let sweeper = config
        .pipeline
        .cold_start(
            |sdk| warm_ups(&config, sdk),
            |redis, sdk| service(&config, redis, &config.pipeline.session_ports(sdk)),
        )
        .await?;
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
