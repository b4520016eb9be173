use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = heartbeat_consumer::Config::from_env(&Env::from_process())?;
    let consumer = heartbeat_consumer::build(config).await?;
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
