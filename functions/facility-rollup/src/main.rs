use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use facility_rollup::{Config, aws_ports, handle, service, warm_ups};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = Config::from_env(&Env::from_process())?;
    let rollup = config
        .pipeline
        .cold_start(
            |sdk| warm_ups(&config, sdk),
            |redis, sdk| service(&config, redis, &aws_ports(&config, sdk)),
        )
        .await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        let rollup = &rollup;
        async move { Ok::<_, Error>(handle(rollup, event.payload, presence::now_ms()).await?) }
    }))
    .await
}
