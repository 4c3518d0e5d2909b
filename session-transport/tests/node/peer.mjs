// An independent WebSocket peer for session-transport's tests, built on the
// `ws` package: it speaks subprotocol session.v1 and exchanges binary frames.
//
//   node peer.mjs client URL HEX
//     Connects to URL, sends HEX as one binary message, then again split in
//     two fragments, and pings. Prints each binary message received as a
//     line of hex; once two arrived and the pong too, closes (code 1000) and
//     exits 0.
//
//   node peer.mjs server
//     Listens on 127.0.0.1 (a free port) at /session and prints
//     "listening PORT". To the first binary message it answers with the same
//     bytes, then pings; on the pong it sends a text message, which a
//     session peer must treat as a protocol error. Prints "closed CODE" and
//     exits 0 when the client goes away.
import { WebSocket, WebSocketServer } from 'ws';

const SUBPROTOCOL = 'session.v1';
const [mode, url, hex] = process.argv.slice(2);

function fail(message) {
  console.error(`node peer: ${message}`);
  process.exit(1);
}

setTimeout(() => fail('timed out after 15 s'), 15_000).unref();

if (mode === 'client') {
  if (!url || !hex) fail('usage: node peer.mjs client URL HEX');
  const frame = Buffer.from(hex, 'hex');
  const ws = new WebSocket(url, SUBPROTOCOL);
  let received = 0;
  let ponged = false;
  const maybeClose = () => {
    if (received === 2 && ponged) ws.close(1000, 'done');
  };
  ws.on('open', () => {
    if (ws.protocol !== SUBPROTOCOL) fail(`server chose subprotocol "${ws.protocol}"`);
    ws.send(frame, { binary: true });
    const half = Math.floor(frame.length / 2);
    ws.send(frame.subarray(0, half), { binary: true, fin: false });
    ws.send(frame.subarray(half), { binary: true, fin: true });
    ws.ping();
  });
  ws.on('pong', () => {
    ponged = true;
    maybeClose();
  });
  ws.on('message', (data, isBinary) => {
    if (!isBinary) fail('received a text message');
    console.log(Buffer.from(data).toString('hex'));
    received += 1;
    maybeClose();
  });
  ws.on('close', (code) => {
    if (received !== 2 || !ponged) fail(`closed early with code ${code}`);
    process.exit(0);
  });
  ws.on('error', (error) => fail(error.message));
} else if (mode === 'server') {
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    path: '/session',
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  server.on('listening', () => console.log(`listening ${server.address().port}`));
  server.on('connection', (ws) => {
    if (ws.protocol !== SUBPROTOCOL) fail(`client offered no ${SUBPROTOCOL}`);
    ws.once('message', (data, isBinary) => {
      if (!isBinary) fail('received a text message');
      ws.send(data, { binary: true });
      ws.ping();
    });
    ws.on('pong', () => ws.send('a text message is not a frame'));
    ws.on('close', (code) => {
      console.log(`closed ${code}`);
      server.close();
      process.exit(0);
    });
    ws.on('error', (error) => fail(error.message));
  });
} else {
  fail('usage: node peer.mjs client URL HEX | node peer.mjs server');
}
