//! What the DynamoDB adapters (facilities, connections, ledger) share: attribute values,
//! reading every item of a paginated read, and conditional writes.

use crate::port::PortError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// One item as the SDK returns it.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Reads every item of a paginated `Query` or `Scan` (all pages, collected) with `read`; the
/// first failure, of a page or of an item, is the answer.
pub fn read_all<T, E, R>(
    items: Vec<Result<Item, SdkError<E, R>>>,
    read: impl Fn(&Item) -> Result<T, PortError>,
) -> Result<Vec<T>, PortError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    items
        .into_iter()
        .map(|item| read(&item.map_err(|e| PortError::from_sdk(&e))?))
        .collect()
}

/// The outcome of a conditional write: `true` when written, `false` when its condition
/// refused it (`refused` tells that error apart), an error otherwise.
pub fn written<O, E, R>(
    result: Result<O, SdkError<E, R>>,
    refused: impl Fn(&E) -> bool,
) -> Result<bool, PortError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(&refused) => Ok(false),
        Err(e) => Err(PortError::from_sdk(&e)),
    }
}
