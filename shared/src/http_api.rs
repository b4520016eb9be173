//! What the two HTTP API functions (heartbeat-ingest, history-read) share: the claims of an
//! API Gateway JWT authorizer, and the JSON response every route answers with.

use aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use aws_lambda_events::http;
use serde_json::{Map, Value};

/// Claims from an API Gateway JWT authorizer, when one is configured on the route (`None`
/// without one, or when it passed no claims).
pub fn authorizer_claims(ctx: &ApiGatewayV2httpRequestContext) -> Option<Map<String, Value>> {
    let claims = &ctx.authorizer.as_ref()?.jwt.as_ref()?.claims;
    if claims.is_empty() {
        return None;
    }
    Some(
        claims
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A JSON response that is never cached, with `Retry-After` when given.
pub fn json_response(
    status: u16,
    body: String,
    retry_after_s: Option<u32>,
) -> http::Response<String> {
    let mut b = http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if let Some(s) = retry_after_s {
        b = b.header("retry-after", s.to_string());
    }
    b.body(body).expect("static headers are valid")
}
