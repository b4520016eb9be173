//! The history read API (functions/history-read): every route through the function's own
//! handler, on the in-memory facilities table and on the DynamoDB adapter (the emulator),
//! and through the local stack's HTTP API after real heartbeats. The backend's routes under
//! `/v1/admin/` (IAM authorization, every region) too: through the handler with an IAM
//! identity in the request context, and through the local stack with its admin key.

use presence::auth::Authenticator;
use presence::facilities::{FacilityStore, MemoryFacilityStore};
use presence::history::HistoryReader;
use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::protocol::{FacilityStatus, Status};
use presence::sessions::{FacilityState, JournalEntry, Partition, Segment};
use presence_tests::*;
use serde_json::Value;
use std::sync::Arc;

/// The first flip of the seeded facility; one flip every 10 minutes after it.
const T0: i64 = 1_795_400_000_000;
const TEN_MIN: i64 = 600_000;
const FLIPS: i64 = 25;
const SECRET: &[u8] = b"history-read-tests-secret-of-32-bytes!!";

fn fac(id: &str) -> FacilityId {
    FacilityId::parse(id).unwrap()
}

fn status(id: &str, region: &str, status: Status, since_ms: i64, version: u64) -> FacilityStatus {
    FacilityStatus {
        facility_id: fac(id),
        region: RegionId::parse(region).unwrap(),
        status,
        since_ms,
        version,
        online_sessions: u64::from(status == Status::Online),
    }
}

/// Facility `icu` (region `north`): `FLIPS` flips, online first, alternating every 10 min;
/// `er` (north) with one flip; `bergen` (west). Two finished sessions at `icu`.
async fn seed(store: &dyn FacilityStore) {
    let mut entries = Vec::new();
    for i in 0..FLIPS {
        let s = if i % 2 == 0 {
            Status::Online
        } else {
            Status::Offline
        };
        entries.push(JournalEntry::Flip(status(
            "icu",
            "north",
            s,
            T0 + i * TEN_MIN,
            i as u64 + 1,
        )));
    }
    entries.push(JournalEntry::Flip(status(
        "er",
        "north",
        Status::Online,
        T0,
        1,
    )));
    for (session, start, end) in [
        ("tab-1", T0, T0 + 20 * 60_000),
        ("tab-2", T0 + 5 * 60_000, T0 + 30 * 60_000),
    ] {
        entries.push(JournalEntry::Segment(Segment {
            session_id: SessionId::parse(session).unwrap(),
            user_id: UserId::parse("nurse-ann").unwrap(),
            facility_id: fac("icu"),
            region: RegionId::parse("north").unwrap(),
            start_ms: start,
            end_ms: end,
            reason: "ended".into(),
        }));
    }
    store
        .append_history(&entries, T0 + FLIPS * TEN_MIN)
        .await
        .unwrap();
    let last = FLIPS - 1;
    let icu_now = if last % 2 == 0 {
        Status::Online
    } else {
        Status::Offline
    };
    for (i, s) in [
        status(
            "icu",
            "north",
            icu_now,
            T0 + last * TEN_MIN,
            last as u64 + 1,
        ),
        status("er", "north", Status::Online, T0, 1),
        status("bergen", "west", Status::Offline, T0, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let state = FacilityState { status: s, rev: 1 };
        assert!(
            store
                .put_status(Partition(i as u16), &state, T0 + FLIPS * TEN_MIN)
                .await
                .unwrap()
        );
    }
}

struct Api {
    reader: HistoryReader,
    token: String,
}

impl Api {
    fn new(store: Arc<dyn FacilityStore>) -> Self {
        Self {
            reader: HistoryReader::new(Authenticator::hs256(SECRET), store),
            token: token(SECRET, "nurse-ann", "icu", "north"),
        }
    }

    /// `GET uri` with the test token (or `token`), through history-read's handler.
    async fn get_as(&self, token: Option<&str>, uri: &str) -> (u16, Value) {
        let mut req = lambda_http::http::Request::builder()
            .method("GET")
            .uri(format!("https://api.example{uri}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp =
            history_read::handle(&self.reader, req.body(lambda_http::Body::Empty).unwrap()).await;
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        (status, body)
    }

    async fn get(&self, uri: &str) -> (u16, Value) {
        self.get_as(Some(&self.token.clone()), uri).await
    }

    /// `GET uri` as API Gateway passes a request it authorized with IAM: the caller's identity
    /// in `requestContext.authorizer.iam`, no token.
    async fn get_signed(&self, uri: &str) -> (u16, Value) {
        use lambda_http::RequestExt;
        use lambda_http::request::RequestContext;
        let ctx = serde_json::from_value(serde_json::json!({
            "http": {"method": "GET", "path": uri, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.20"},
            "authorizer": {"iam": {
                "accessKey": "AKIAIOSFODNN7EXAMPLE", "accountId": "123456789012",
                "callerId": "AIDAJQABLZS4A3QDU576Q",
                "userArn": "arn:aws:iam::123456789012:user/presence-backend",
                "userId": "AIDAJQABLZS4A3QDU576Q"
            }}
        }))
        .unwrap();
        let req = lambda_http::http::Request::builder()
            .method("GET")
            .uri(format!("https://api.example{uri}"))
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV2(ctx));
        let resp = history_read::handle(&self.reader, req).await;
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        (status, body)
    }

    /// A 400 whose message names `what`.
    async fn bad(&self, uri: &str, what: &str) {
        let (code, body) = self.get(uri).await;
        assert_eq!(code, 400, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(what),
            "{uri}: {message:?} should name {what:?}"
        );
    }
}

/// Every route, its pagination and its refusals, against `store`.
async fn check_routes(store: Arc<dyn FacilityStore>) {
    seed(store.as_ref()).await;
    let api = Api::new(store);

    // The region's facilities: its own region only.
    let (code, body) = api.get("/v1/regions/north/facilities").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["region"], "north");
    let ids: Vec<&str> = body["facilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["facility_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["er", "icu"]);
    let icu = &body["facilities"][1];
    assert_eq!(icu["status"], "online");
    assert_eq!(icu["version"], FLIPS);
    assert_eq!(icu["since_ms"], T0 + (FLIPS - 1) * TEN_MIN);
    assert_eq!(icu["online_sessions"], 1);

    // History, paged 10 at a time, oldest first, across the whole range.
    let (from, to) = (T0, T0 + FLIPS * TEN_MIN);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut uri = format!("/v1/facilities/icu/history?from={from}&to={to}&limit=10");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let (code, body) = api.get(&uri).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["facility_id"], "icu");
        let flips = body["flips"].as_array().unwrap();
        assert!(flips.len() <= 10);
        seen.extend(flips.iter().map(|f| f["version"].as_u64().unwrap()));
        pages += 1;
        match body["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(body["cursor"].is_null());
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, (1..=FLIPS as u64).collect::<Vec<_>>());
    assert!(pages >= 3, "25 flips in pages of 10: {pages} pages");
    // `to` is exclusive; the default limit is 100.
    let (_, body) = api
        .get(&format!(
            "/v1/facilities/icu/history?from={}&to={}",
            T0 + TEN_MIN,
            T0 + 3 * TEN_MIN
        ))
        .await;
    let flips = body["flips"].as_array().unwrap();
    assert_eq!(flips.len(), 2, "{body}");
    assert_eq!(flips[0]["status"], "offline");
    assert_eq!(flips[0]["since_ms"], T0 + TEN_MIN);
    assert!(body["cursor"].is_null());

    // Who was online at a time: the finished segments covering it.
    let (code, body) = api
        .get(&format!(
            "/v1/facilities/icu/sessions?at={}",
            T0 + 10 * 60_000
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["at"], T0 + 10 * 60_000);
    let sessions = body["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tab-1", "tab-2"]);
    assert_eq!(sessions[0]["user_id"], "nurse-ann");
    assert_eq!(sessions[0]["started_ms"], T0);
    assert_eq!(sessions[0]["ended_ms"], T0 + 20 * 60_000);
    assert_eq!(sessions[0]["reason"], "ended");
    let (_, body) = api
        .get(&format!(
            "/v1/facilities/icu/sessions?at={}",
            T0 + 25 * 60_000
        ))
        .await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1, "{body}");

    // Availability from the middle of an online stretch: online 5 of the first 10 min,
    // offline 10, online 10, offline 5 (to T0 + 35 min).
    let (from, to) = (T0 + 5 * 60_000, T0 + 35 * 60_000);
    let (code, body) = api
        .get(&format!(
            "/v1/facilities/icu/availability?from={from}&to={to}"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["from"].as_i64(), body["to"].as_i64()),
        (Some(from), Some(to))
    );
    assert_eq!(body["flips"], 3, "{body}");
    assert_eq!(body["longest_offline_ms"], TEN_MIN);
    let share = body["online_share"].as_f64().unwrap();
    assert!((share - 0.5).abs() < 1e-9, "{body}");
    // The whole history: 12 online stretches of 10 min, and the last one running to `to`.
    let (from, to) = (T0 - TEN_MIN, T0 + 30 * TEN_MIN);
    let (code, body) = api
        .get(&format!(
            "/v1/facilities/icu/availability?from={from}&to={to}"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["flips"], FLIPS);
    let online = 12 * TEN_MIN + (to - (T0 + 24 * TEN_MIN));
    let share = body["online_share"].as_f64().unwrap();
    assert!(
        (share - online as f64 / (to - from) as f64).abs() < 1e-9,
        "{body}"
    );
    // Unknown before the first flip counts as offline: the first 10 minutes.
    assert_eq!(body["longest_offline_ms"], TEN_MIN);

    // Refusals.
    let h = "/v1/facilities/icu/history";
    let r = format!("from={T0}&to={}", T0 + TEN_MIN);
    api.bad(&format!("{h}?from=abc&to={}", T0 + 1), "from")
        .await;
    api.bad(&format!("{h}?from={T0}&to=12"), "to").await;
    api.bad(&format!("{h}?to={T0}"), "from is required").await;
    api.bad(&format!("{h}?from={T0}&to={T0}"), "from").await;
    api.bad(&format!("{h}?from={}&to={T0}", T0 + 1), "before")
        .await;
    api.bad(
        &format!("{h}?from={T0}&to={}", T0 + 32 * 86_400_000),
        "31 days",
    )
    .await;
    api.bad(&format!("{h}?{r}&limit=0"), "limit").await;
    api.bad(&format!("{h}?{r}&limit=1001"), "limit").await;
    api.bad(&format!("{h}?{r}&limit=ten"), "limit").await;
    api.bad(&format!("{h}?{r}&cursor=not*base64"), "cursor")
        .await;
    api.bad(&format!("{h}?{r}&cursor=Zm9vYmFy"), "cursor").await;
    api.bad(&format!("{h}?{r}&page=2"), "page").await;
    api.bad("/v1/facilities/icu/sessions", "at").await;
    api.bad("/v1/facilities/icu/sessions?at=-1", "at").await;
    api.bad(
        &format!(
            "/v1/facilities/icu/availability?from={T0}&to={}",
            T0 + 40 * 86_400_000
        ),
        "31 days",
    )
    .await;
    // A cursor returned for another range.
    let (_, body) = api
        .get(&format!("{h}?from={T0}&to={}&limit=1", T0 + 5 * TEN_MIN))
        .await;
    let c = body["cursor"].as_str().unwrap().to_owned();
    api.bad(
        &format!(
            "{h}?from={}&to={}&cursor={c}",
            T0 + 2 * TEN_MIN,
            T0 + 5 * TEN_MIN
        ),
        "cursor",
    )
    .await;

    // No token, a bad token: 401.
    let (code, body) = api.get_as(None, &format!("{h}?{r}")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (code, _) = api.get_as(Some("nonsense"), &format!("{h}?{r}")).await;
    assert_eq!(code, 401);
    // Another region: 403, for its listing and for each of its facilities.
    let (code, body) = api.get("/v1/regions/west/facilities").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    for route in [
        format!("/v1/facilities/bergen/history?{r}"),
        format!("/v1/facilities/bergen/sessions?at={T0}"),
        format!("/v1/facilities/bergen/availability?{r}"),
    ] {
        let (code, body) = api.get(&route).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{route}"
        );
    }
    // The backend's routes: every region, with the same answers as a user of that region.
    let (code, body) = api.get_signed("/v1/admin/regions/west/facilities").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["region"], "west");
    assert_eq!(body["facilities"][0]["facility_id"], "bergen", "{body}");
    let (code, body) = api.get_signed("/v1/admin/regions/north/facilities").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["facilities"].as_array().unwrap().len(), 2, "{body}");
    for route in [
        format!("/v1/facilities/bergen/history?{r}"),
        format!("/v1/facilities/bergen/sessions?at={T0}"),
        format!("/v1/facilities/bergen/availability?{r}"),
        format!("/v1/facilities/icu/history?{r}&limit=1"),
        format!("/v1/facilities/icu/sessions?at={}", T0 + 10 * 60_000),
    ] {
        let admin = route.replacen("/v1/", "/v1/admin/", 1);
        let (code, body) = api.get_signed(&admin).await;
        assert_eq!(code, 200, "{admin}: {body}");
        if route.contains("/icu/") {
            assert_eq!(api.get(&route).await, (code, body), "{route}");
        }
    }
    let (_, body) = api
        .get_signed(&format!("/v1/admin/facilities/bergen/history?{r}"))
        .await;
    assert_eq!(body["facility_id"], "bergen");
    let (_, body) = api
        .get_signed(&format!(
            "/v1/admin/facilities/icu/sessions?at={}",
            T0 + 10 * 60_000
        ))
        .await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2, "{body}");
    // The same validation, and 404s.
    for (uri, status, code) in [
        (
            format!("/v1/admin/facilities/icu/history?from={T0}&to={T0}"),
            400,
            "bad_request",
        ),
        (
            format!("/v1/admin/facilities/icu/history?{r}&page=2"),
            400,
            "bad_request",
        ),
        (
            "/v1/admin/facilities/bergen/sessions".into(),
            400,
            "bad_request",
        ),
        (
            "/v1/admin/regions/a%20b/facilities".into(),
            400,
            "bad_request",
        ),
        (
            format!("/v1/admin/facilities/nowhere/history?{r}"),
            404,
            "not_found",
        ),
        (
            "/v1/admin/facilities/bergen/nothing".into(),
            404,
            "not_found",
        ),
    ] {
        let (got, body) = api.get_signed(&uri).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{uri}: {body}"
        );
    }
    // Without an IAM identity a backend route is 401, whatever token comes with it; with one,
    // a user route still wants a token, and checks its region.
    for token in [Some(api.token.clone()), None] {
        let (code, body) = api
            .get_as(token.as_deref(), "/v1/admin/regions/north/facilities")
            .await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains("IAM"),
            "{body}"
        );
    }
    let (code, _) = api.get_signed("/v1/regions/west/facilities").await;
    assert_eq!(code, 401);
    let (code, _) = api
        .get_signed(&format!("/v1/facilities/bergen/history?{r}"))
        .await;
    assert_eq!(code, 401);

    // A facility with no status item: 404.
    let (code, body) = api
        .get(&format!("/v1/facilities/nowhere/history?{r}"))
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Only GET.
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://api.example/v1/regions/north/facilities")
        .body(lambda_http::Body::Empty)
        .unwrap();
    assert_eq!(history_read::handle(&api.reader, req).await.status(), 405);
}

#[tokio::test]
async fn history_routes_on_the_memory_table() {
    check_routes(Arc::new(MemoryFacilityStore::new())).await;
}

#[tokio::test]
async fn history_routes_on_dynamodb() {
    let Clients { ddb, .. } = Clients::new().await;
    let table = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &table).await;
    check_routes(dynamo_facilities(&ddb, &table)).await;
}

/// The local stack serves the routes through history-read's handler, on the table the
/// rollup writes: a heartbeat's facility shows up in its region and in its history.
#[tokio::test]
async fn history_routes_on_the_local_stack() {
    let stack = local_stack(&[("ROLLUP_SCHEDULE_SECONDS", "1")]).await;
    let url = stack.http_url.clone();
    let t = token(
        DEV_SECRET.as_bytes(),
        "nurse-ann",
        "st-olav-icu",
        "trondelag",
    );
    let auth = format!("Bearer {t}");
    let start = presence::now_ms();
    let (code, body) = http(
        "POST",
        &format!("{url}/v1/heartbeats"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"session_id":"tab-1"}"#,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    // The consumer flips the facility online; the rollup persists it within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let facilities = loop {
        let (code, body) = http(
            "GET",
            &format!("{url}/v1/regions/trondelag/facilities"),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if !v["facilities"].as_array().unwrap().is_empty() {
            break v["facilities"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no status persisted: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(facilities[0]["facility_id"], "st-olav-icu");
    assert_eq!(facilities[0]["status"], "online");
    let (code, body) = http(
        "GET",
        &format!(
            "{url}/v1/facilities/st-olav-icu/history?from={}&to={}",
            start - 60_000,
            presence::now_ms() + 60_000
        ),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["flips"][0]["status"], "online", "{body}");
    let (code, body) = http(
        "GET",
        &format!("{url}/v1/regions/vestland/facilities"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let billing = stack.billing();
    assert!(billing.invocations("history-read") >= 3, "{billing:#?}");
    stack.shutdown().await;
}

/// The backend's routes on the local stack: `/v1/admin/...` with the admin key (which stands
/// in for IAM authorization) reads facilities of every region through history-read; without
/// the key, with a wrong one or with only a user's token it is 401; the user routes still
/// refuse another region.
#[tokio::test]
async fn backend_reads_every_region_on_the_local_stack() {
    use presence_local::stack::DEFAULT_ADMIN_API_KEY;
    let stack = local_stack(&[("ROLLUP_SCHEDULE_SECONDS", "1")]).await;
    let url = stack.http_url.clone();
    let bearer = |user: &str, facility: &str, region: &str| {
        format!(
            "Bearer {}",
            token(DEV_SECRET.as_bytes(), user, facility, region)
        )
    };
    // A user in trondelag, another in vestland; each sends a heartbeat at their facility.
    let north = bearer("nurse-ann", "adm-olav-icu", "trondelag");
    let west = bearer("porter-bo", "adm-haukeland-ed", "vestland");
    let start = presence::now_ms();
    for auth in [&north, &west] {
        let (code, body) = http(
            "POST",
            &format!("{url}/v1/heartbeats"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            r#"{"session_id":"tab-1"}"#,
        )
        .await;
        assert_eq!(code, 202, "{body}");
    }
    let key = [("x-presence-admin-key", DEFAULT_ADMIN_API_KEY)];
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (code, body) = http("GET", &format!("{url}{path}"), &headers, "").await;
            let v: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
            (code, v)
        }
    };
    let admin = || vec![(key[0].0, key[0].1.to_owned())];
    // The admin key reads both regions once the rollup has persisted the statuses.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for (region, facility) in [
        ("trondelag", "adm-olav-icu"),
        ("vestland", "adm-haukeland-ed"),
    ] {
        loop {
            let (code, body) = get(format!("/v1/admin/regions/{region}/facilities"), admin()).await;
            assert_eq!(code, 200, "{body}");
            assert_eq!(body["region"], region);
            let listed = body["facilities"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["facility_id"] == facility && f["status"] == "online");
            if listed {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{facility} not persisted: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let range = format!("from={}&to={}", start - 60_000, presence::now_ms() + 60_000);
    // A facility of another region than the user's token: the backend reads it...
    let (code, body) = get(
        format!("/v1/admin/facilities/adm-haukeland-ed/history?{range}"),
        admin(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["facility_id"], "adm-haukeland-ed");
    assert_eq!(body["flips"][0]["status"], "online", "{body}");
    let (code, body) = get(
        format!("/v1/admin/facilities/adm-haukeland-ed/availability?{range}"),
        admin(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["flips"], 1, "{body}");
    let (code, body) = get(
        format!("/v1/admin/facilities/adm-olav-icu/sessions?at={start}"),
        admin(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["facility_id"], "adm-olav-icu");
    // ...the user of trondelag may not, on the user routes (403), for the listing and for the
    // facility; nor the other way round.
    let as_user = |auth: &str| vec![("authorization", auth.to_owned())];
    for (auth, path) in [
        (&north, "/v1/regions/vestland/facilities".to_owned()),
        (
            &north,
            format!("/v1/facilities/adm-haukeland-ed/history?{range}"),
        ),
        (
            &north,
            format!("/v1/facilities/adm-haukeland-ed/sessions?at={start}"),
        ),
        (
            &north,
            format!("/v1/facilities/adm-haukeland-ed/availability?{range}"),
        ),
        (&west, "/v1/regions/trondelag/facilities".to_owned()),
        (
            &west,
            format!("/v1/facilities/adm-olav-icu/history?{range}"),
        ),
    ] {
        let (code, body) = get(path.clone(), as_user(auth)).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path}: {body}"
        );
    }
    // A user's own region still reads.
    let (code, _) = get("/v1/regions/vestland/facilities".into(), as_user(&west)).await;
    assert_eq!(code, 200);
    // The admin key counts for nothing on the user routes: no token, 401.
    let (code, _) = get("/v1/regions/vestland/facilities".into(), admin()).await;
    assert_eq!(code, 401);

    // The admin routes without the key, with a wrong one, or with a user's token only: 401,
    // before history-read is invoked.
    let invoked = stack.billing().invocations("history-read");
    let admin_path = format!("/v1/admin/facilities/adm-haukeland-ed/history?{range}");
    for headers in [
        vec![],
        vec![("x-presence-admin-key", "not-the-admin-key".to_owned())],
        as_user(&west),
        as_user(&north),
    ] {
        let (code, body) = get(admin_path.clone(), headers.clone()).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{headers:?}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("x-presence-admin-key"),
            "{body}"
        );
    }
    assert_eq!(stack.billing().invocations("history-read"), invoked);

    // Same validation as the user routes; only GET; unknown routes are 404 without a function.
    for (path, status, code) in [
        (
            "/v1/admin/facilities/adm-haukeland-ed/history?from=1&to=2".to_owned(),
            400,
            "bad_request",
        ),
        (
            "/v1/admin/facilities/adm-haukeland-ed/sessions".to_owned(),
            400,
            "bad_request",
        ),
        (
            format!("/v1/admin/facilities/adm-nowhere/history?{range}"),
            404,
            "not_found",
        ),
        (
            "/v1/admin/regions/vestland/facilities?page=2".to_owned(),
            400,
            "bad_request",
        ),
    ] {
        let (got, body) = get(path.clone(), admin()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let invoked = stack.billing().invocations("history-read");
    for (method, path) in [
        ("POST", "/v1/admin/regions/vestland/facilities"),
        ("DELETE", "/v1/admin/facilities/adm-haukeland-ed/history"),
        ("GET", "/v1/admin/facilities/adm-haukeland-ed/nothing"),
        ("GET", "/v1/admin/regions/vestland/facilities/"),
    ] {
        let (code, body) = http(method, &format!("{url}{path}"), &key, "").await;
        assert_eq!(code, 404, "{method} {path}: {body}");
    }
    assert_eq!(stack.billing().invocations("history-read"), invoked);
    stack.shutdown().await;
}
