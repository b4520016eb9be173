use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = heartbeat_consumer::Config::from_env(&Env::from_process())?;
    // Redis (TLS included) and a connection to SQS: once, at cold start, side by side.
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let warm_ups = vec![presence::aws::queue(&sdk, &config.push_queue_url)];
    let (consumer, ()) = tokio::join!(
        heartbeat_consumer::build(config),
        presence::aws::warm_up(warm_ups)
    );
    let consumer = consumer?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let consumer = &consumer;
        async move {
            Ok::<_, Error>(
                heartbeat_consumer::handle(consumer, event.payload, presence::now_ms()).await,
            )
        }
    }))
    .await
}
