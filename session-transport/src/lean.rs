//! `LeanFramed`: varint-delimited frames over a plain TCP stream that hold
//! no buffer while the connection is idle.
//!
//! tokio-util's `Framed` keeps a read buffer and an 8 KiB write buffer for the
//! connection's whole life: over 12 KiB per idle session. Here the read
//! buffer is reserved only when the socket is readable and released as soon as
//! every complete frame is taken out of it (the frames, slices of it, keep
//! the allocation alive only while the session uses them); the write buffer
//! is released once flushed. A partial frame keeps exactly its own bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use crate::{FrameCodec, TransportError};

/// A framed TCP stream with buffers only while data is moving.
#[derive(Debug)]
pub(crate) struct LeanFramed {
    io: TcpStream,
    codec: FrameCodec,
    read: BytesMut,
    write: BytesMut,
    /// How much to reserve for one read.
    read_chunk: usize,
    /// Flush before accepting more once this much is buffered.
    write_boundary: usize,
    /// The last read filled the room it had: more is likely waiting.
    filled: bool,
    eof: bool,
}

/// What a fresh read buffer reserves: a login or a heartbeat fits.
const FIRST_READ: usize = 256;

impl LeanFramed {
    pub(crate) fn new(
        io: TcpStream,
        codec: FrameCodec,
        read_chunk: usize,
        write_boundary: usize,
    ) -> Self {
        Self {
            io,
            codec,
            read: BytesMut::new(),
            write: BytesMut::new(),
            read_chunk: read_chunk.max(64),
            write_boundary: write_boundary.max(1),
            filled: false,
            eof: false,
        }
    }

    pub(crate) fn codec(&self) -> &FrameCodec {
        &self.codec
    }

    pub(crate) fn codec_mut(&mut self) -> &mut FrameCodec {
        &mut self.codec
    }

    pub(crate) fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.io
    }

    /// Whether every written frame has been flushed.
    pub(crate) fn write_is_empty(&self) -> bool {
        self.write.is_empty()
    }

    /// The socket and what was read from it but not yet decoded.
    pub(crate) fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.io, self.read)
    }

    /// Gives the read buffer back when nothing is left in it.
    fn release_read(&mut self) {
        if self.read.is_empty() && self.read.capacity() != 0 {
            self.read = BytesMut::new();
        }
    }
}

impl Stream for LeanFramed {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                match this.codec.decode(&mut this.read) {
                    Ok(Some(frame)) => {
                        this.release_read();
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Some(Err(error))),
                }
            }
            if this.eof {
                return Poll::Ready(if this.read.is_empty() {
                    None
                } else {
                    // The stream ended inside a frame.
                    Some(Err(TransportError::PeerClosed))
                });
            }
            // Reserve only once the socket has something to read.
            if let Err(error) = ready!(this.io.poll_read_ready(cx)) {
                return Poll::Ready(Some(Err(error.into())));
            }
            if this.read.capacity() - this.read.len() < 64 {
                // A fresh buffer starts small: most reads on a session are
                // one small frame (a login, a heartbeat). A read that fills
                // it shows a burst, and the buffer grows by whole chunks.
                let want = if this.read.is_empty() && !this.filled {
                    FIRST_READ.min(this.read_chunk)
                } else {
                    this.read_chunk
                };
                this.read.reserve(want);
            }
            let room = this.read.capacity() - this.read.len();
            match this.io.try_read_buf(&mut this.read) {
                Ok(0) => this.eof = true,
                Ok(n) => this.filled = n == room,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => this.release_read(),
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
        }
    }
}

impl LeanFramed {
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        while !self.write.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.write.advance(n);
        }
        // Idle connections keep no write buffer.
        self.write = BytesMut::new();
        Poll::Ready(Ok(()))
    }
}

impl Sink<Bytes> for LeanFramed {
    type Error = TransportError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        if this.write.len() >= this.write_boundary {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, frame: Bytes) -> Result<(), TransportError> {
        let this = self.get_mut();
        this.codec.encode(frame, &mut this.write)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_flush(cx)).map_err(Into::into))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_shutdown(cx)).map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback connection: the client's end, and the server's framed
    /// with frames up to `max_frame_len` and 4 KiB read chunks.
    async fn connected(max_frame_len: usize) -> (TcpStream, LeanFramed) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let codec = FrameCodec::new(max_frame_len);
        let framed = LeanFramed::new(server.unwrap().0, codec, 4096, 4096);
        (client.unwrap(), framed)
    }

    #[tokio::test]
    async fn frames_flow_both_ways_and_idle_connections_hold_no_buffers() {
        let (mut client, mut framed) = connected(1024).await;

        // Two frames and half a third in one write, the rest later.
        client.write_all(b"\x03abc\x02de\x04fg").await.unwrap();
        assert_eq!(framed.next().await.unwrap().unwrap(), "abc");
        assert_eq!(framed.next().await.unwrap().unwrap(), "de");
        let third = tokio::spawn(async move {
            let frame = framed.next().await.unwrap().unwrap();
            (framed, frame)
        });
        tokio::task::yield_now().await;
        client.write_all(b"hi").await.unwrap();
        let (mut framed, frame) = third.await.unwrap();
        assert_eq!(frame, "fghi");
        assert_eq!(framed.read.capacity(), 0, "no read buffer once drained");

        framed.send(Bytes::from_static(b"out")).await.unwrap();
        assert_eq!(framed.write.capacity(), 0, "no write buffer once flushed");
        let mut got = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got, b"\x03out");

        drop(client);
        assert!(
            framed.next().await.is_none(),
            "a clean end after the peer closed"
        );
    }

    #[tokio::test]
    async fn a_fresh_read_buffer_starts_small_and_a_burst_grows_it() {
        let (mut client, mut framed) = connected(1 << 20).await;

        // Half of a small frame: it waits in a buffer of the small size.
        // (Polled by hand until the bytes are in: no timer involved.)
        client.write_all(b"\x0aabcde").await.unwrap();
        while framed.read.len() < 6 {
            assert!(
                framed.next().now_or_never().is_none(),
                "the frame is incomplete"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(&framed.read[..], b"\x0aabcde");
        assert!(
            framed.read.capacity() <= FIRST_READ,
            "{}",
            framed.read.capacity()
        );
        client.write_all(b"fghij").await.unwrap();
        assert_eq!(framed.next().await.unwrap().unwrap(), "abcdefghij");

        // A 20 KB frame and a small one behind it, in one write.
        let big = vec![7u8; 20_000];
        let mut burst = BytesMut::new();
        FrameCodec::new(1 << 20)
            .encode(Bytes::from(big.clone()), &mut burst)
            .unwrap();
        burst.extend_from_slice(b"\x02ok");
        client.write_all(&burst).await.unwrap();
        assert_eq!(framed.next().await.unwrap().unwrap(), big);
        assert_eq!(framed.next().await.unwrap().unwrap(), "ok");
    }
}
