//! `Endpoint`: a parsed `tcp://`, `tls://`, `ws://` or `wss://` URL.

use std::fmt;
use std::str::FromStr;

use crate::{DEFAULT_WS_PATH, TransportError, TransportKind};

/// Where a client connects: the kind of transport, the host, the port and,
/// for WebSocket, the path.
///
/// | URL | port | path |
/// |---|---|---|
/// | `tcp://host:port` | required | none |
/// | `tls://host:port` | required | none |
/// | `ws://host[:port][/path]` | 80 by default | [`DEFAULT_WS_PATH`] when absent |
/// | `wss://host[:port][/path]` | 443 by default | [`DEFAULT_WS_PATH`] when absent |
///
/// IPv6 addresses go in brackets (`tcp://[::1]:7700`). The host is also the
/// TLS server name. User names, passwords and fragments are refused.
///
/// ```
/// use session_transport::{Endpoint, TransportKind};
///
/// let endpoint: Endpoint = "ws://127.0.0.1:7701".parse()?;
/// assert_eq!(endpoint.kind(), TransportKind::Ws);
/// assert_eq!(endpoint.path(), "/session");
/// assert_eq!(endpoint.to_string(), "ws://127.0.0.1:7701/session");
/// # Ok::<(), session_transport::TransportError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    kind: TransportKind,
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// Parses a URL; see the type's documentation for the accepted forms.
    pub fn parse(url: &str) -> Result<Self, TransportError> {
        let invalid = |reason| TransportError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host:port"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => TransportKind::Tcp,
            "tls" => TransportKind::Tls,
            "ws" => TransportKind::Ws,
            "wss" => TransportKind::Wss,
            _ => return Err(invalid("the scheme must be tcp, tls, ws or wss")),
        };
        if rest.contains('#') {
            return Err(invalid("fragments are not allowed"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid("user names and passwords are not allowed"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("brackets hold an IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("unexpected characters after ']'"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        if !authority.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(invalid(
                "the host is a name, an IPv4 address or an IPv6 address in brackets",
            ));
        }
        let port = match port {
            Some(port) => match port.parse::<u16>() {
                // Digits only (`u16::from_str` takes a leading '+'), and
                // not 0, which nothing can be connected to.
                Ok(number) if number != 0 && port.bytes().all(|b| b.is_ascii_digit()) => number,
                _ => return Err(invalid("the port is not a number from 1 to 65535")),
            },
            None => match kind {
                TransportKind::Ws => 80,
                TransportKind::Wss => 443,
                TransportKind::Tcp | TransportKind::Tls => {
                    return Err(invalid("tcp and tls URLs need a port"));
                }
            },
        };
        let path = match kind {
            TransportKind::Tcp | TransportKind::Tls if path.is_empty() || path == "/" => {
                String::new()
            }
            TransportKind::Tcp | TransportKind::Tls => {
                return Err(invalid("tcp and tls URLs have no path"));
            }
            TransportKind::Ws | TransportKind::Wss if path.is_empty() => DEFAULT_WS_PATH.to_owned(),
            TransportKind::Ws | TransportKind::Wss if path.starts_with('?') => {
                format!("{DEFAULT_WS_PATH}{path}")
            }
            TransportKind::Ws | TransportKind::Wss => path.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("the path contains spaces or control characters"));
        }
        Ok(Self {
            kind,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The kind of transport the scheme names.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The host name or IP address, without brackets; also the TLS server
    /// name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The WebSocket path with its query, if any; empty for TCP and TLS.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = TransportError;

    fn from_str(url: &str) -> Result<Self, TransportError> {
        Self::parse(url)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.kind, self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn reason(url: &str) -> &'static str {
        match Endpoint::parse(url) {
            Err(TransportError::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn parses_the_four_kinds() {
        let tcp = parse("tcp://127.0.0.1:7700");
        assert_eq!(
            (tcp.kind(), tcp.host(), tcp.port(), tcp.path()),
            (TransportKind::Tcp, "127.0.0.1", 7700, "")
        );
        let tls = parse("TLS://example.com:7443/");
        assert_eq!(
            (tls.kind(), tls.host(), tls.port()),
            (TransportKind::Tls, "example.com", 7443)
        );
        let ws = parse("ws://[::1]:7701/custom?token=1");
        assert_eq!(
            (ws.kind(), ws.host(), ws.port(), ws.path()),
            (TransportKind::Ws, "::1", 7701, "/custom?token=1")
        );
        assert_eq!(ws.authority(), "[::1]:7701");
        let wss = parse("wss://example.com");
        assert_eq!(
            (wss.kind(), wss.port(), wss.path()),
            (TransportKind::Wss, 443, "/session")
        );
        assert_eq!(parse("ws://h?x=1").path(), "/session?x=1");
        assert_eq!(parse("ws://h:80/").path(), "/");
    }

    #[test]
    fn displays_what_it_parsed() {
        for url in [
            "tcp://h:1",
            "tls://[::1]:2",
            "ws://h:80/session",
            "wss://h:443/a?b",
        ] {
            assert_eq!(parse(url).to_string(), url);
        }
    }

    #[test]
    fn refuses_what_it_cannot_connect_to() {
        assert_eq!(reason("127.0.0.1:7700"), "expected scheme://host:port");
        assert_eq!(
            reason("http://h:1"),
            "the scheme must be tcp, tls, ws or wss"
        );
        assert_eq!(reason("tcp://h"), "tcp and tls URLs need a port");
        assert_eq!(reason("tcp://h:1/x"), "tcp and tls URLs have no path");
        assert_eq!(reason("tcp://:1"), "the host is empty");
        for port in ["99999", "", "+7700", "0", "-1", " 1"] {
            assert_eq!(
                reason(&format!("tcp://h:{port}")),
                "the port is not a number from 1 to 65535",
                "{port}"
            );
        }
        for host in ["::1", "a b", "a:b:c", "h\u{7f}", "ex%41mple", "é.com"] {
            assert_eq!(
                reason(&format!("tcp://{host}:1")),
                "the host is a name, an IPv4 address or an IPv6 address in brackets",
                "{host}"
            );
        }
        assert_eq!(
            reason("tcp://[not-ipv6]:1"),
            "brackets hold an IPv6 address"
        );
        assert_eq!(reason("ws://[127.0.0.1]/"), "brackets hold an IPv6 address");
        assert_eq!(
            reason("ws://u:p@h/"),
            "user names and passwords are not allowed"
        );
        assert_eq!(reason("ws://h/#x"), "fragments are not allowed");
        assert_eq!(reason("ws://[::1/"), "unclosed '[' in the host");
        assert_eq!(reason("ws://[::1]x/"), "unexpected characters after ']'");
        assert_eq!(
            reason("ws://h/a b"),
            "the path contains spaces or control characters"
        );
    }
}
