//! Reading the scripts' replies.

use super::{FacilityState, StoreError};
use crate::ids::{FacilityId, RegionId};
use crate::protocol::{FacilityStatus, Status};
use redis::Value;

pub(super) fn take_array<const N: usize>(
    script: &'static str,
    v: Value,
) -> Result<[Value; N], StoreError> {
    let items = as_array(script, v)?;
    let len = items.len();
    items
        .try_into()
        .map_err(|_| StoreError::reply(script, format!("expected {N} items, got {len}")))
}

pub(super) fn as_array(script: &'static str, v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(StoreError::reply(
            script,
            format!("expected an array, got {other:?}"),
        )),
    }
}

pub(super) fn as_string(script: &'static str, v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b.clone()).map_err(|e| StoreError::reply(script, e.to_string()))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(StoreError::reply(
            script,
            format!("expected a string, got {other:?}"),
        )),
    }
}

pub(super) fn as_int(script: &'static str, v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(_) | Value::SimpleString(_) => as_string(script, v)?
            .parse()
            .map_err(|e: std::num::ParseIntError| StoreError::reply(script, e.to_string())),
        other => Err(StoreError::reply(
            script,
            format!("expected an integer, got {other:?}"),
        )),
    }
}

/// `{ facility, region, status, since_ms, version, online_sessions }`
pub(super) fn parse_status(
    script: &'static str,
    v: Value,
) -> Result<(FacilityStatus, Vec<Value>), StoreError> {
    let mut items = as_array(script, v)?;
    if items.len() < 6 {
        return Err(StoreError::reply(
            script,
            format!("status with {} fields", items.len()),
        ));
    }
    let rest = items.split_off(6);
    let bad = |e: crate::ids::IdError| StoreError::reply(script, e.to_string());
    let status = as_string(script, &items[2])?;
    Ok((
        FacilityStatus {
            facility_id: FacilityId::parse(&as_string(script, &items[0])?).map_err(bad)?,
            region: RegionId::parse(&as_string(script, &items[1])?).map_err(bad)?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::reply(script, format!("status {status:?}")))?,
            since_ms: as_int(script, &items[3])?,
            version: as_int(script, &items[4])? as u64,
            online_sessions: as_int(script, &items[5])? as u64,
        },
        rest,
    ))
}

pub(super) fn parse_flips(
    script: &'static str,
    v: Value,
) -> Result<Vec<FacilityStatus>, StoreError> {
    as_array(script, v)?
        .into_iter()
        .map(|f| parse_status(script, f).map(|(s, _)| s))
        .collect()
}

/// `{ facility, region, status, since_ms, version, online_sessions, rev }`
pub(super) fn parse_states(v: Value) -> Result<Vec<FacilityState>, StoreError> {
    as_array("rollup_collect", v)?
        .into_iter()
        .map(|s| {
            let (status, rest) = parse_status("rollup_collect", s)?;
            let rev = rest
                .first()
                .map(|r| as_int("rollup_collect", r))
                .transpose()?
                .unwrap_or(0);
            Ok(FacilityState {
                status,
                rev: rev as u64,
            })
        })
        .collect()
}
