// The client matrix's scenario for node-redis and ioredis, run through
// kvproxy by proxy/clients_node_test.go:
//   node matrix.js <host:port> <node-redis|ioredis> [2|3]
// Prints "ok" and exits 0 when every step passed; otherwise the failing
// step's error, exit 1. RESP 3 is node-redis' default; "2" asks for RESP2.
'use strict';
const assert = require('assert/strict');

const [addr, lib, resp] = process.argv.slice(2);
const [host, port] = addr.split(':');
const keys = Array.from({ length: 12 }, (_, i) => `${lib}:k${i}`);

async function nodeRedis() {
  const { createClient } = require('redis');
  const opts = { socket: { host, port: Number(port) } };
  if (resp) opts.RESP = Number(resp);
  const client = createClient(opts);
  client.on('error', () => {});
  await client.connect();
  const sub = client.duplicate();
  sub.on('error', () => {});
  await sub.connect();
  const send = (args) => client.sendCommand(args);
  const close = async () => { await sub.close(); await client.close(); };
  const messages = [];
  await sub.subscribe(`${lib}:ch`, (m) => messages.push(m));
  const multi = await client.multi().set(`{${lib}}t`, '1').incr(`{${lib}}t`).exec();
  assert.equal(String(multi[1]), '2');
  return { send, close, messages };
}

async function ioredis() {
  const Redis = require('ioredis');
  const client = new Redis({ host, port: Number(port), lazyConnect: true });
  await client.connect();
  const sub = client.duplicate();
  const messages = [];
  sub.on('message', (_, m) => messages.push(m));
  await sub.subscribe(`${lib}:ch`);
  const multi = await client.multi().set(`{${lib}}t`, '1').incr(`{${lib}}t`).exec();
  assert.equal(String(multi[1][1]), '2');
  const send = (args) => client.call(...args);
  const close = async () => { sub.disconnect(); client.disconnect(); };
  return { send, close, messages };
}

async function main() {
  const { send, close, messages } = lib === 'ioredis' ? await ioredis() : await nodeRedis();
  assert.equal(String(await send(['SET', `${lib}:a`, 'v'])), 'OK');
  assert.equal(String(await send(['GET', `${lib}:a`])), 'v');
  await send(['MSET', ...keys.flatMap((k, i) => [k, String(i)])]);
  const got = await send(['MGET', ...keys, `${lib}:none`]);
  assert.deepEqual(got.map((v) => (v === null ? null : String(v))), [...keys.map((_, i) => String(i)), null]);
  // A pipeline: commands sent without waiting for each other.
  const piped = await Promise.all(keys.map((k) => send(['INCR', k])));
  assert.deepEqual(piped.map(Number), keys.map((_, i) => i + 1));
  for (let i = 0; i < 100 && messages.length === 0; i++) {
    await send(['PUBLISH', `${lib}:ch`, 'hi']);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(String(messages[0]), 'hi');
  await send(['RPUSH', `${lib}:list`, 'x']);
  assert.deepEqual((await send(['BLPOP', `${lib}:list`, '1'])).map(String), [`${lib}:list`, 'x']);
  let cursor = '0';
  const found = new Set();
  do {
    const [next, page] = await send(['SCAN', cursor, 'MATCH', `${lib}:*`, 'COUNT', '100']);
    cursor = String(next);
    page.forEach((k) => found.add(String(k)));
  } while (cursor !== '0');
  assert.equal(found.size, keys.length + 1, 'every key found by SCAN');
  assert.equal(String(await send(['EVAL', "return redis.call('get', KEYS[1])", '1', `${lib}:a`])), 'v');
  await close();
}

main().then(() => { console.log('ok'); process.exit(0); },
  (err) => { console.error(err && err.stack || err); process.exit(1); });
