use lambda_http::{Error, Request, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    // Configuration, the token secret and the SQS connection: once, at cold start.
    let ingest = heartbeat_ingest::build(Env::from_process()).await?;
    lambda_http::run(service_fn(|req: Request| {
        let ingest = &ingest;
        async move { Ok::<_, Error>(heartbeat_ingest::handle(ingest, req, presence::now_ms()).await) }
    }))
    .await
}
