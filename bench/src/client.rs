//! The clients the load uses: one HTTP/1.1 keep-alive connection (hyper, no pool, so the
//! connection count is exactly what was asked), gRPC channels, and the few API calls the set-up
//! needs (log in, create an order, log out).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proto::orders::v1::GetOrderRequest;
use proto::orders::v1::order_service_client::OrderServiceClient;
use tokio::net::TcpStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// Deadline of connecting, for every client here.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A response, body read in full.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One HTTP/1.1 connection, kept alive and reopened after a failure.
pub struct HttpConnection {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConnection {
    /// Connects lazily, on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())
                .expect("BUG: a socket address is a valid Host header"),
            sender: None,
        }
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
                .await
                .context("connect timed out")??;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // Ends when the connection closes; the next request reconnects.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .expect("BUG: the sender was set just above");
        sender.ready().await?;
        Ok(sender)
    }

    /// Sends `request` (its Host header is set here) and reads the whole response. After a
    /// transport error the connection is dropped and the next call opens a new one.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> anyhow::Result<HttpResponse> {
        request.headers_mut().insert(HOST, self.host.clone());
        let result = async {
            let response = self.sender().await?.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(HttpResponse { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer_header(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")
}

/// `authorization: Bearer <token>` gRPC metadata.
pub fn bearer_metadata(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    format!("Bearer {token}")
        .parse()
        .context("token is not a metadata value")
}

/// A GET without body.
pub fn get(path: &str, authorization: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    request(Method::GET, path, authorization, None)
}

/// A request with an optional bearer and an optional `(content type, body)`.
pub fn request(
    method: Method,
    path: &str,
    authorization: Option<&HeaderValue>,
    body: Option<(&'static str, String)>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        builder = builder.header(AUTHORIZATION, value.clone());
    }
    let body = match body {
        Some((content_type, body)) => {
            builder = builder.header(CONTENT_TYPE, content_type);
            Full::new(Bytes::from(body))
        }
        None => Full::new(Bytes::new()),
    };
    builder
        .body(body)
        .expect("BUG: a path and static headers make a valid request")
}

/// An HTTP/2 channel of its own (one TCP connection) to a gRPC server, connected now.
pub async fn grpc_channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// `GetOrder(id)` with a bearer.
pub async fn get_order(
    client: &mut OrderServiceClient<Channel>,
    id: &str,
    authorization: &MetadataValue<Ascii>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(GetOrderRequest { id: id.to_owned() });
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    client.get_order(request).await.map(drop)
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn encode(value: &str) -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The platform's HTTP API, through the gateway, as the set-up and the revocation scenario use it.
pub struct Api {
    connection: HttpConnection,
}

impl Api {
    pub fn new(gateway: SocketAddr) -> Self {
        Self {
            connection: HttpConnection::new(gateway),
        }
    }

    /// Password grant: a new session; returns its access token.
    pub async fn login(&mut self, username: &str, password: &str) -> anyhow::Result<String> {
        json_string(
            &self.password_grant(username, password).await?,
            "access_token",
        )
    }

    /// Password grant: a new session; returns its refresh token.
    pub async fn login_for_refresh(
        &mut self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        json_string(
            &self.password_grant(username, password).await?,
            "refresh_token",
        )
    }

    /// `POST /oauth/token` with `grant_type=password`; returns the response body.
    async fn password_grant(&mut self, username: &str, password: &str) -> anyhow::Result<Bytes> {
        let form = form_encode(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]);
        let response = self
            .connection
            .send(request(
                Method::POST,
                "/oauth/token",
                None,
                Some(("application/x-www-form-urlencoded", form)),
            ))
            .await?;
        if response.status != StatusCode::OK {
            bail!(
                "login answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(response.body)
    }

    /// `POST /v1/orders`; returns the new order's id.
    pub async fn create_order(&mut self, token: &str) -> anyhow::Result<String> {
        let body = r#"{"item":"loadgen","quantity":1}"#.to_owned();
        let response = self
            .connection
            .send(request(
                Method::POST,
                "/v1/orders",
                Some(&bearer_header(token)?),
                Some(("application/json", body)),
            ))
            .await?;
        if response.status != StatusCode::CREATED {
            bail!(
                "creating an order answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        json_string(&response.body, "id")
    }

    /// `POST /v1/logout` with `token`; returns the status.
    pub async fn logout(&mut self, token: &str) -> anyhow::Result<StatusCode> {
        let response = self
            .connection
            .send(request(
                Method::POST,
                "/v1/logout",
                Some(&bearer_header(token)?),
                None,
            ))
            .await?;
        Ok(response.status)
    }

    /// `GET /v1/orders/{id}`; returns the status.
    pub async fn get_order(&mut self, id: &str, token: &str) -> anyhow::Result<StatusCode> {
        let response = self
            .connection
            .send(get(
                &format!("/v1/orders/{id}"),
                Some(&bearer_header(token)?),
            ))
            .await?;
        Ok(response.status)
    }
}

/// The string member `field` of a JSON object.
pub fn json_string(body: &[u8], field: &str) -> anyhow::Result<String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).context("the response is not JSON")?;
    value
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the response has no string `{field}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("grant_type", "password"), ("password", "a b&c=d/é")]),
            "grant_type=password&password=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn json_fields() {
        assert_eq!(
            json_string(
                br#"{"access_token":"abc","expires_in":300}"#,
                "access_token"
            )
            .unwrap(),
            "abc"
        );
        assert!(json_string(br#"{"expires_in":300}"#, "access_token").is_err());
        assert!(json_string(b"<html>", "id").is_err());
    }
}
