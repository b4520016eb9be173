//! DynamoDB tables made exactly as `template.yaml` declares them, on a local emulator: the
//! template is the one definition of their keys and indexes, for the local stack, the tests
//! and the benchmarks alike.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use serde_norway::Value;

/// The SAM template, as deployed.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// Why a table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("template.yaml: {0}")]
    Template(String),
    #[error("create table {table}: {detail}")]
    Create { table: String, detail: String },
}

/// The template's resource `logical_id` (e.g. `FacilitiesTable`) created as `table_name`.
/// A table that exists already is left as it is.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    logical_id: &str,
    table_name: &str,
) -> Result<(), TableError> {
    let template: Value =
        serde_norway::from_str(TEMPLATE).map_err(|e| TableError::Template(e.to_string()))?;
    let props = &template["Resources"][logical_id]["Properties"];
    if props.is_null() {
        return Err(TableError::Template(format!("no resource {logical_id}")));
    }
    let mut request = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props["KeySchema"])?));
    for a in seq(&props["AttributeDefinitions"])? {
        let kind = match text(&a["AttributeType"])? {
            "S" => ScalarAttributeType::S,
            "N" => ScalarAttributeType::N,
            "B" => ScalarAttributeType::B,
            other => return Err(TableError::Template(format!("attribute type {other}"))),
        };
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(&a["AttributeName"])?)
                .attribute_type(kind)
                .build()
                .map_err(|e| TableError::Template(e.to_string()))?,
        );
    }
    if !props["GlobalSecondaryIndexes"].is_null() {
        for g in seq(&props["GlobalSecondaryIndexes"])? {
            let kind = ProjectionType::from(text(&g["Projection"]["ProjectionType"])?);
            let mut projection = Projection::builder().projection_type(kind);
            if let Value::Sequence(extra) = &g["Projection"]["NonKeyAttributes"] {
                for a in extra {
                    projection = projection.non_key_attributes(text(a)?);
                }
            }
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(&g["IndexName"])?)
                    .set_key_schema(Some(key_schema(&g["KeySchema"])?))
                    .projection(projection.build())
                    .build()
                    .map_err(|e| TableError::Template(e.to_string()))?,
            );
        }
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(TableError::Create {
            table: table_name.to_owned(),
            detail: presence::aws::describe_sdk_error(&e),
        }),
    }
}

/// Both tables of the stack.
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    connections: &str,
    facilities: &str,
    messages: &str,
) -> Result<(), TableError> {
    create_table(client, "ConnectionsTable", connections).await?;
    create_table(client, "FacilitiesTable", facilities).await?;
    create_table(client, "MessagesTable", messages).await
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, TableError> {
    seq(v)?
        .iter()
        .map(|k| {
            let kind = match text(&k["KeyType"])? {
                "HASH" => KeyType::Hash,
                "RANGE" => KeyType::Range,
                other => return Err(TableError::Template(format!("key type {other}"))),
            };
            KeySchemaElement::builder()
                .attribute_name(text(&k["AttributeName"])?)
                .key_type(kind)
                .build()
                .map_err(|e| TableError::Template(e.to_string()))
        })
        .collect()
}

fn seq(v: &Value) -> Result<&Vec<Value>, TableError> {
    v.as_sequence()
        .ok_or_else(|| TableError::Template(format!("expected a list, found {v:?}")))
}

fn text(v: &Value) -> Result<&str, TableError> {
    v.as_str()
        .ok_or_else(|| TableError::Template(format!("expected a string, found {v:?}")))
}
