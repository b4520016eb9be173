use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = facility_rollup::Config::from_env(&Env::from_process())?;
    let rollup = facility_rollup::build(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent>| {
        let rollup = &rollup;
        async move {
            Ok::<_, Error>(
                facility_rollup::handle(rollup, event.payload, presence::now_ms()).await?,
            )
        }
    }))
    .await
}
