use lambda_http::{Error, Request, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    let config = heartbeat_ingest::Config::from_env(&Env::from_process())?;
    let ingest = heartbeat_ingest::build(config).await;
    lambda_http::run(service_fn(|req: Request| {
        let ingest = &ingest;
        async move { Ok::<_, Error>(heartbeat_ingest::handle(ingest, req, presence::now_ms()).await) }
    }))
    .await
}
