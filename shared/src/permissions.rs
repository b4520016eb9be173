//! The AWS calls a function makes, as data: each function crate declares its own in a
//! constant `AWS_CALLS` next to its wiring, and `tests/permissions.rs` checks that list twice:
//! against the code (every SDK call reachable from the function's `main`, found by reading
//! the source, must be declared, and every declared call must be reachable) and against the
//! function's policy in `template.yaml` (it must grant exactly what the calls need, on the
//! resources the function's environment names). docs/deploy.md, "Permissions".
//!
//! Nothing here runs in Lambda: the constants only cost a few bytes of read-only data.

/// An AWS service a function calls through the AWS SDK for Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Sqs,
    DynamoDb,
    SecretsManager,
    /// The API Gateway management API (`@connections`) of a WebSocket API.
    ApiGatewayManagement,
}

impl Service {
    /// Every service, for lookups by SDK crate.
    pub const ALL: [Service; 4] = [
        Service::Sqs,
        Service::DynamoDb,
        Service::SecretsManager,
        Service::ApiGatewayManagement,
    ];

    /// The SDK crate whose `Client` calls this service.
    pub const fn sdk_crate(self) -> &'static str {
        match self {
            Service::Sqs => "aws_sdk_sqs",
            Service::DynamoDb => "aws_sdk_dynamodb",
            Service::SecretsManager => "aws_sdk_secretsmanager",
            Service::ApiGatewayManagement => "aws_sdk_apigatewaymanagement",
        }
    }

    /// The service of an SDK crate (`aws_sdk_sqs` ...).
    pub fn from_sdk_crate(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.sdk_crate() == name)
    }
}

/// What a call acts on, named by the environment variable that tells the function which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum On {
    /// The SQS queue whose URL is in this variable.
    Queue(&'static str),
    /// The DynamoDB table named by this variable.
    Table(&'static str),
    /// A secondary index (second field) of the table named by this variable.
    Index(&'static str, &'static str),
    /// The Secrets Manager secret (ARN or name) in this variable. Called only when it is set;
    /// a secret encrypted with a customer-managed KMS key needs `kms:Decrypt` on that key too.
    Secret(&'static str),
    /// The connections of the WebSocket management endpoint
    /// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`) in this variable.
    Connections(&'static str),
}

impl On {
    /// The environment variable that names the resource.
    pub const fn variable(self) -> &'static str {
        match self {
            On::Queue(v) | On::Table(v) | On::Index(v, _) | On::Secret(v) | On::Connections(v) => v,
        }
    }
}

/// One API operation a function's code calls, and what it calls it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub service: Service,
    /// The operation as the API reference names it (`PutItem`); the SDK's method is its
    /// snake case (`put_item`).
    pub operation: &'static str,
    pub on: On,
    /// False for a request the code builds but never sends (a warm-up future the shared
    /// start-up code makes for every endpoint and then drops): the code scan sees it, so it is
    /// declared, and the template must not grant it.
    pub sent: bool,
    /// For a transaction (`TransactWriteItems`): the operations of its items (`PutItem`,
    /// `UpdateItem`, `DeleteItem`, `ConditionCheckItem`), whose IAM actions it needs (there
    /// is no action of the transaction itself). See [`Call::transacting`].
    pub items: &'static [&'static str],
}

impl Call {
    pub const fn new(service: Service, operation: &'static str, on: On) -> Self {
        Self {
            service,
            operation,
            on,
            sent: true,
            items: &[],
        }
    }

    /// This request is built but never sent (see [`Call::sent`]); say where it is dropped.
    pub const fn never_sent(self) -> Self {
        Self {
            sent: false,
            ..self
        }
    }

    /// A transaction whose items are these operations (`PutItem`, `UpdateItem`,
    /// `DeleteItem`, `ConditionCheckItem`): IAM authorizes each item by its own action, so the
    /// declaration says which kinds the code builds (the scan sees the transaction only).
    pub const fn transacting(self, items: &'static [&'static str]) -> Self {
        Self { items, ..self }
    }

    pub const fn sqs(operation: &'static str, on: On) -> Self {
        Self::new(Service::Sqs, operation, on)
    }

    pub const fn dynamodb(operation: &'static str, on: On) -> Self {
        Self::new(Service::DynamoDb, operation, on)
    }

    pub const fn secrets_manager(operation: &'static str, on: On) -> Self {
        Self::new(Service::SecretsManager, operation, on)
    }

    pub const fn management_api(operation: &'static str, on: On) -> Self {
        Self::new(Service::ApiGatewayManagement, operation, on)
    }

    /// The IAM action that allows this call. Most operations are their own action; the
    /// exceptions are the SQS batch calls (allowed by the single-message action) and the
    /// management API (one action, `execute-api:ManageConnections`, told apart by the HTTP
    /// method in the resource, see [`Call::http_method`]).
    pub fn iam_action(&self) -> String {
        match (self.service, self.operation) {
            (Service::Sqs, "SendMessageBatch") => "sqs:SendMessage".into(),
            (Service::Sqs, "DeleteMessageBatch") => "sqs:DeleteMessage".into(),
            (Service::Sqs, "ChangeMessageVisibilityBatch") => "sqs:ChangeMessageVisibility".into(),
            (Service::Sqs, op) => format!("sqs:{op}"),
            (Service::DynamoDb, op) => format!("dynamodb:{op}"),
            (Service::SecretsManager, op) => format!("secretsmanager:{op}"),
            (Service::ApiGatewayManagement, _) => "execute-api:ManageConnections".into(),
        }
    }

    /// Every IAM action this call needs: [`Call::iam_action`], or for a transaction the
    /// actions of its items ([`Call::transacting`]; `TransactGetItems` reads with `GetItem`).
    pub fn iam_actions(&self) -> Vec<String> {
        match (self.service, self.operation) {
            (Service::DynamoDb, "TransactWriteItems") => self
                .items
                .iter()
                .map(|op| format!("dynamodb:{op}"))
                .collect(),
            (Service::DynamoDb, "TransactGetItems") => vec!["dynamodb:GetItem".into()],
            _ => vec![self.iam_action()],
        }
    }

    /// For the management API: the HTTP method of the operation, which is part of the
    /// `execute-api` resource ARN (`.../{stage}/POST/@connections/*`).
    pub fn http_method(&self) -> Option<&'static str> {
        match (self.service, self.operation) {
            (Service::ApiGatewayManagement, "PostToConnection") => Some("POST"),
            (Service::ApiGatewayManagement, "GetConnection") => Some("GET"),
            (Service::ApiGatewayManagement, "DeleteConnection") => Some("DELETE"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions() {
        let q = On::Queue("Q");
        assert_eq!(
            Call::sqs("SendMessageBatch", q).iam_action(),
            "sqs:SendMessage"
        );
        assert_eq!(
            Call::sqs("GetQueueAttributes", q).iam_action(),
            "sqs:GetQueueAttributes"
        );
        assert_eq!(
            Call::dynamodb("Query", On::Index("T", "by-user")).iam_action(),
            "dynamodb:Query"
        );
        let post = Call::management_api("PostToConnection", On::Connections("E"));
        assert_eq!(post.iam_action(), "execute-api:ManageConnections");
        assert_eq!(post.http_method(), Some("POST"));
        assert_eq!(
            Service::from_sdk_crate("aws_sdk_dynamodb"),
            Some(Service::DynamoDb)
        );
        assert_eq!(Service::from_sdk_crate("aws_sdk_kms"), None);
        let transaction = Call::dynamodb("TransactWriteItems", On::Table("T"))
            .transacting(&["UpdateItem", "PutItem"]);
        assert_eq!(
            transaction.iam_actions(),
            ["dynamodb:UpdateItem", "dynamodb:PutItem"]
        );
        assert_eq!(
            Call::dynamodb("GetItem", On::Table("T")).iam_actions(),
            ["dynamodb:GetItem"]
        );
    }
}
