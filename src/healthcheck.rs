//! `outbox-relay healthcheck`: probes the running relay's `/healthz` for container health
//! checks that have no shell or curl (a `FROM scratch` image).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The address to probe for a relay listening on `listen`: a wildcard address becomes the
/// loopback address of its family.
#[must_use]
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `path` from `addr` and returns the HTTP status code.
///
/// # Errors
/// A message naming the address when the relay cannot be reached or answers garbage.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let fail = |e: std::io::Error| format!("{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(fail)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: not an HTTP answer: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            // Read the whole request: closing with unread bytes resets the connection, and
            // the client may then see the reset instead of the answer.
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).expect("request");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .expect("answer");
        });
        addr
    }

    #[test]
    fn reports_the_status_code() {
        let ok = serve_once("200 OK");
        assert_eq!(probe(ok, "/healthz", Duration::from_secs(5)), Ok(200));
        let down = serve_once("503 Service Unavailable");
        assert_eq!(probe(down, "/healthz", Duration::from_secs(5)), Ok(503));
    }

    #[test]
    fn an_unreachable_relay_is_an_error_naming_the_address() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let err = probe(closed, "/healthz", Duration::from_secs(1)).expect_err("nothing listens");
        assert!(err.starts_with(&format!("{closed}/healthz")), "{err}");
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9464".parse().expect("addr");
        assert_eq!(probe_address(v4).to_string(), "127.0.0.1:9464");
        let v6: SocketAddr = "[::]:9464".parse().expect("addr");
        assert_eq!(probe_address(v6).to_string(), "[::1]:9464");
        let fixed: SocketAddr = "10.1.2.3:80".parse().expect("addr");
        assert_eq!(probe_address(fixed), fixed);
    }
}
