use lambda_http::{Error, Request, service_fn};
use presence::config::Env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence::telemetry::init();
    // Configuration, Redis, the AWS clients and their connections: once, at cold start.
    let api = admin_api::build(Env::from_process()).await?;
    lambda_http::run(service_fn(|req: Request| {
        let api = &api;
        async move { Ok::<_, Error>(admin_api::handle(api, req, presence::now_ms()).await) }
    }))
    .await
}
