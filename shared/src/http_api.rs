//! What the HTTP API functions (heartbeat-ingest, history-read, admin-api) share: the claims
//! of an API Gateway JWT authorizer, the IAM caller of a route with IAM authorization, and the
//! JSON response every route answers with.

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

/// The IAM caller of a request API Gateway authorized with `AWS_IAM`
/// (`requestContext.authorizer.iam`): its ARN, else its caller id or access key. `None` when
/// the request carries no IAM identity (the route is not IAM-authorized).
pub fn iam_caller(ctx: &ApiGatewayV2httpRequestContext) -> Option<String> {
    let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
    [&iam.user_arn, &iam.caller_id, &iam.access_key]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
}

/// What a request to a route under `/v1/admin/` without an IAM identity is told.
pub const NO_IAM_IDENTITY: &str = "the admin API takes requests signed with AWS credentials (SigV4) \
    through routes with IAM authorization; this request carries no IAM identity";

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_caller_is_the_iam_identity() {
        let ctx = |authorizer: Value| -> ApiGatewayV2httpRequestContext {
            serde_json::from_value(json!({
                "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4"},
                "authorizer": authorizer
            }))
            .unwrap()
        };
        let signed = ctx(json!({"iam": {
            "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AIDA",
            "userArn": "arn:aws:iam::123456789012:user/backend", "userId": "AIDA"
        }}));
        assert_eq!(
            iam_caller(&signed).as_deref(),
            Some("arn:aws:iam::123456789012:user/backend")
        );
        let jwt = ctx(json!({"jwt": {"claims": {"sub": "x"}, "scopes": null}}));
        assert_eq!(iam_caller(&jwt), None);
        assert!(authorizer_claims(&jwt).is_some());
        assert_eq!(authorizer_claims(&signed), None);
        assert_eq!(iam_caller(&ctx(Value::Null)), None);
        assert_eq!(iam_caller(&ctx(json!({"iam": {}}))), None);
    }
}
