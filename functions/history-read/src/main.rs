use lambda_http::{Error, Request, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    // Configuration, the token secret and the DynamoDB connection: once, at cold start.
    let reader = history_read::build(Env::from_process()).await?;
    lambda_http::run(service_fn(|req: Request| {
        let reader = &reader;
        async move { Ok::<_, Error>(history_read::handle(reader, req).await) }
    }))
    .await
}
