use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = facility_rollup::Config::from_env(&Env::from_process())?;
    // Redis (TLS included) and connections to SQS and DynamoDB: once, at cold start.
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let warm_ups = vec![
        presence::aws::queue(&sdk, &config.push_queue_url),
        presence::aws::table(&sdk, &config.facilities_table),
    ];
    let (rollup, ()) = tokio::join!(
        facility_rollup::build(&config),
        presence::aws::warm_up(warm_ups)
    );
    let rollup = rollup?;
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
