use aws_lambda_events::event::sqs::SqsEvent;
use heartbeat_consumer::{Config, handle, service, warm_ups};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = Config::from_env(&Env::from_process())?;
    let consumer = config
        .cold_start(
            |sdk| warm_ups(&config, sdk),
            |redis, sdk| service(&config, redis, &config.session_ports(sdk)),
        )
        .await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let consumer = &consumer;
        async move { Ok::<_, Error>(handle(consumer, event.payload, presence::now_ms()).await) }
    }))
    .await
}
