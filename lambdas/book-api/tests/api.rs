//! The API's handler, called directly with committed API Gateway events (HTTP API v2, REST v1,
//! base64 bodies) and with built requests, against DynamoDB on the emulator; and the local
//! server (the `book-api` binary) over HTTP. After every request, the book and its outbox row
//! are both present or both absent.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use book_api::Api;
use books_common::testing::{create_table, sdk_config};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::Value;

type Item = HashMap<String, AttributeValue>;

struct World {
    ddb: aws_sdk_dynamodb::Client,
    books: String,
    events: String,
    api: Api,
}

impl World {
    async fn new() -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(&sdk_config());
        let books = create_table(&ddb, "books", "name", None).await;
        let events = create_table(&ddb, "events", "pk", Some("sk")).await;
        let api = Api::new(ddb.clone(), &books, &events);
        Self {
            ddb,
            books,
            events,
            api,
        }
    }

    async fn scan(&self, table: &str) -> Vec<Item> {
        self.ddb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .send()
            .await
            .expect("scan")
            .items
            .unwrap_or_default()
    }

    async fn call(&self, request: Request) -> (StatusCode, Value) {
        let response = self.api.handle(request).await;
        let status = response.status();
        let body = response.body().as_ref();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).expect("the API answers JSON")
        };
        (status, json)
    }

    async fn fixture(&self, name: &str) -> (StatusCode, Value) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("fixture");
        let request = lambda_http::request::from_str(&text).expect("an API Gateway event");
        self.call(request).await
    }

    async fn send(&self, method: Method, body: &str) -> (StatusCode, Value) {
        let request = lambda_http::http::Request::builder()
            .method(method)
            .uri("/book")
            .body(Body::from(body))
            .expect("request");
        self.call(request).await
    }

    /// Books and outbox rows: (book names, (event type, book name) per row).
    async fn state(&self) -> (Vec<String>, Vec<(String, String)>) {
        let mut books: Vec<String> = self
            .scan(&self.books)
            .await
            .iter()
            .map(|b| b["name"].as_s().expect("name").clone())
            .collect();
        books.sort();
        let mut rows: Vec<(String, String)> = self
            .scan(&self.events)
            .await
            .iter()
            .map(|r| {
                let data = r["eventData"].as_m().expect("eventData is a map");
                (
                    r["eventType"].as_s().expect("eventType").clone(),
                    data["name"].as_s().expect("name").clone(),
                )
            })
            .collect();
        rows.sort();
        (books, rows)
    }
}

fn added(name: &str) -> (String, String) {
    ("BookAdded".into(), name.into())
}

#[tokio::test]
async fn post_writes_the_book_and_its_outbox_row_in_one_transaction() {
    let w = World::new().await;
    let (status, body) = w.fixture("apigw-http-post-book.json").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let event_id = body["eventId"].as_str().expect("eventId").to_owned();
    assert_eq!(body["name"], "Team Topologies");

    let books = w.scan(&w.books).await;
    assert_eq!(books.len(), 1);
    assert_eq!(books[0]["year"], AttributeValue::N("2019".into()));
    assert_eq!(
        books[0]["authors"],
        AttributeValue::L(vec![
            AttributeValue::S("Manuel Pais".into()),
            AttributeValue::S("Matthew Skelton".into())
        ])
    );
    let rows = w.scan(&w.events).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["pk"], AttributeValue::S(event_id));
    assert_eq!(row["sk"], AttributeValue::S("BookAdded".into()));
    assert_eq!(row["eventType"], AttributeValue::S("BookAdded".into()));
    let data = row["eventData"]
        .as_m()
        .expect("eventData is a map, not a JSON string");
    assert_eq!(data["name"], AttributeValue::S("Team Topologies".into()));
    assert_eq!(data["year"], AttributeValue::N("2019".into()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let expires: u64 = row["expiresAt"]
        .as_n()
        .expect("TTL")
        .parse()
        .expect("number");
    assert!(expires > now + 6 * 24 * 3600 && expires <= now + 7 * 24 * 3600 + 5);

    // The same book again: 409, and nothing written.
    let (status, body) = w.fixture("apigw-http-post-book.json").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["field"], "name");
    assert_eq!(
        w.state().await,
        (
            vec!["Team Topologies".into()],
            vec![added("Team Topologies")]
        )
    );
}

#[tokio::test]
async fn base64_bodies_from_api_gateway_are_decoded() {
    for fixture in [
        "apigw-http-post-book-base64.json",
        "apigw-rest-post-book-base64.json",
    ] {
        let w = World::new().await;
        let (status, body) = w.fixture(fixture).await;
        assert_eq!(status, StatusCode::CREATED, "{fixture}: {body}");
        assert_eq!(
            w.state().await,
            (
                vec!["Team Topologies".into()],
                vec![added("Team Topologies")]
            )
        );
    }
}

#[tokio::test]
async fn delete_removes_the_book_and_writes_book_removed() {
    let w = World::new().await;
    assert_eq!(
        w.fixture("apigw-http-post-book.json").await.0,
        StatusCode::CREATED
    );
    let (status, body) = w.fixture("apigw-http-delete-book.json").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let removed = ("BookRemoved".to_owned(), "Team Topologies".to_owned());
    assert_eq!(
        w.state().await,
        (vec![], vec![added("Team Topologies"), removed.clone()])
    );

    // Unknown book: 404, and no outbox row.
    let (status, body) = w.fixture("apigw-http-delete-book.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["field"], "name");
    assert_eq!(
        w.state().await,
        (vec![], vec![added("Team Topologies"), removed])
    );
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_field_and_write_nothing() {
    let w = World::new().await;
    let cases = [
        (Method::POST, "", None),
        (Method::POST, "{not json", None),
        (Method::POST, r#"["a"]"#, None),
        (
            Method::POST,
            r#"{"authors": ["A"], "year": 2019}"#,
            Some("name"),
        ),
        (
            Method::POST,
            r#"{"name": "N", "authors": "A", "year": 2019}"#,
            Some("authors"),
        ),
        (
            Method::POST,
            r#"{"name": "N", "authors": ["A"], "year": "2019"}"#,
            Some("year"),
        ),
        (
            Method::POST,
            r#"{"name": 42, "authors": ["A"], "year": 2019}"#,
            Some("name"),
        ),
        (Method::DELETE, "", None),
        (Method::DELETE, r#"{}"#, Some("name")),
        (Method::DELETE, r#"{"name": ["x"]}"#, Some("name")),
    ];
    for (method, body, field) in cases {
        let (status, answer) = w.send(method.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {body}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
        assert_eq!(
            answer.get("field").and_then(Value::as_str),
            field,
            "{method} {body}: {answer}"
        );
    }
    assert_eq!(w.state().await, (vec![], vec![]));
}

#[tokio::test]
async fn other_routes_and_failures() {
    let w = World::new().await;
    let get = lambda_http::http::Request::builder()
        .method(Method::GET)
        .uri("/book")
        .body(Body::Empty)
        .expect("request");
    let response = w.api.handle(get).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST, DELETE");
    let elsewhere = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/books/x")
        .body(Body::Empty)
        .expect("request");
    assert_eq!(
        w.api.handle(elsewhere).await.status(),
        StatusCode::NOT_FOUND
    );

    // A table that does not exist: 500, and the body says nothing of the cause.
    let broken = Api::new(w.ddb.clone(), "no-such-books-table", &w.events);
    let request = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/book")
        .body(Body::from(
            r#"{"name": "N", "authors": ["A"], "year": 2019}"#,
        ))
        .expect("request");
    let response = broken.handle(request).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("JSON");
    assert_eq!(body, serde_json::json!({"error": "internal error"}));
    assert_eq!(w.state().await, (vec![], vec![]));
}

/// Kills the local server when the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_local_server_serves_the_same_handler() {
    let w = World::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _server = Server(
        std::process::Command::new(env!("CARGO_BIN_EXE_book-api"))
            .env("BOOK_API_LISTEN", format!("127.0.0.1:{port}"))
            .env("BOOKS_TABLE", &w.books)
            .env("EVENTS_TABLE", &w.events)
            .env("AWS_ENDPOINT_URL", books_common::testing::endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .spawn()
            .expect("book-api starts"),
    );
    let url = format!("http://127.0.0.1:{port}/book");
    let http = reqwest::Client::new();
    let input = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("input.json"))
        .expect("the seed's input.json");
    let end = Instant::now() + Duration::from_secs(30);
    let created = loop {
        match http.post(&url).body(input.clone()).send().await {
            Ok(r) => break r,
            Err(e) => assert!(Instant::now() < end, "server not up: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(created.status().as_u16(), 201);
    let body: Value = created.json().await.expect("JSON");
    assert!(body["eventId"].is_string());
    let bad = http.post(&url).body("{}").send().await.expect("request");
    assert_eq!(bad.status().as_u16(), 400);
    // A body beyond the local server's limit is refused before the handler.
    let huge = http
        .post(&url)
        .body(format!(r#"{{"name": "{}"}}"#, "x".repeat(100 * 1024)))
        .send()
        .await
        .expect("request");
    assert_eq!(huge.status().as_u16(), 413);
    let deleted = http
        .delete(&url)
        .body(r#"{"name": "Team Topologies"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status().as_u16(), 204);
    let removed = ("BookRemoved".to_owned(), "Team Topologies".to_owned());
    assert_eq!(
        w.state().await,
        (vec![], vec![added("Team Topologies"), removed])
    );
}

#[tokio::test]
async fn the_outbox_row_carries_the_requests_trace() {
    let w = World::new().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/book")
        .header("traceparent", traceparent)
        .body(Body::from(
            r#"{"name": "Dune", "authors": ["Frank Herbert"], "year": 1965}"#,
        ))
        .expect("request");
    let (status, body) = w.call(request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Without a valid header: a new trace, still a valid traceparent.
    let request = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/book")
        .header("traceparent", "not a trace")
        .body(Body::from(
            r#"{"name": "Emma", "authors": ["Jane Austen"], "year": 1815}"#,
        ))
        .expect("request");
    let (status, _) = w.call(request).await;
    assert_eq!(status, StatusCode::CREATED);

    let rows = w.scan(&w.events).await;
    let trace_of = |name: &str| {
        rows.iter()
            .find(|r| {
                r["eventData"].as_m().expect("map")["name"].as_s().ok() == Some(&name.to_owned())
            })
            .and_then(|r| r.get("traceparent"))
            .and_then(|t| t.as_s().ok())
            .cloned()
            .expect("a traceparent attribute")
    };
    assert_eq!(trace_of("Dune"), traceparent);
    let fresh = trace_of("Emma");
    assert_ne!(fresh, traceparent);
    assert_eq!(
        books_common::trace::from_traceparent(&fresh).as_deref(),
        Some(fresh.as_str()),
        "a valid W3C traceparent"
    );
}
